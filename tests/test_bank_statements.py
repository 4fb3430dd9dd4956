"""Bank statements read from the real sample files: camt.053, MT940 and the cartola."""

from __future__ import annotations

import zipfile
from datetime import date
from pathlib import Path

import pytest

from receivables.bank_movements import BankMovement, Direction, StatementError
from receivables.bank_statements import (
    StatementFormat,
    read_bank_statement,
    sniff_format,
)
from receivables.rut import normalise_rut, ruts_in

BANK = Path(__file__).resolve().parents[2] / "shared" / "data" / "bank"


def facts(movement: BankMovement) -> tuple[object, ...]:
    return (
        movement.booking_date,
        movement.amount_minor,
        movement.currency,
        movement.direction.value,
        movement.returned,
    )


def test_camt053_reads_each_entry_with_its_direction_reversal_and_payer() -> None:
    movements = read_bank_statement(BANK / "oca_test-camt053.xml")

    assert [facts(m) for m in movements] == [
        (date(2014, 1, 5), 75425, "EUR", "debit", False),
        (date(2014, 1, 5), 56405, "EUR", "debit", True),
        (date(2014, 1, 5), 10000, "EUR", "debit", True),
        (date(2014, 1, 5), 140531, "EUR", "credit", False),
    ]
    credit = movements[3]
    assert credit.transaction_id == "NL77ABNA0574908765:INNDNL2U20140105000217200000708"
    assert credit.payer_name == "3rd party Media"
    assert credit.remittance == "#RD PARTY MEDIA CUSNO 90782 4210773"
    assert [m.place for m in movements[1:3]] == [
        "entry 2, detail 1",
        "entry 2, detail 2",
    ]


def test_camt053_one_credit_split_in_two_details_is_two_movements_with_ids_of_their_own() -> (
    None
):
    movements = read_bank_statement(BANK / "oca_test-camt053-txdtls.xml")

    assert [facts(m) for m in movements] == [
        (date(2017, 3, 22), 218700, "CHF", "credit", False),
        (date(2017, 3, 22), 129600, "CHF", "credit", False),
    ]
    assert [m.transaction_id for m in movements] == [
        "CH1111000000123456789:123456CHCAFEBABE/1",
        "CH1111000000123456789:123456CHCAFEBABE/2",
    ]
    assert movements[0].value_date == date(2017, 3, 23)
    assert movements[0].remittance == "302388292000011111111111111 ?REJECT?0"


def test_mt940_ing_reads_returns_wrapped_references_and_counterparty_names() -> None:
    movements = read_bank_statement(BANK / "oca_test-ing.940")

    assert [(m.amount_minor, m.direction.value, m.returned) for m in movements] == [
        (156, "credit", False),
        (157, "debit", False),
        (157, "credit", True),
        (114, "debit", False),
        (145, "credit", False),
        (1275, "debit", True),
        (3200, "credit", False),
        (11900, "debit", False),
    ]
    # The reference 00000000001005 is wrapped after its eleventh digit in the file.
    assert movements[0].transaction_id == "NL77INGB0574908765:00000000001005"
    assert movements[0].payer_name == "ING BANK NV INZAKE WEB"
    returned = movements[2]
    assert returned.payer_name == "J.Janssen"
    assert returned.remittance == "Factuurnr 123456 Klantnr 00123 20120123456789"
    assert {m.booking_date for m in movements} == {date(2014, 2, 20)}


def test_mt940_sns_reads_free_text_and_gives_unreferenced_lines_stable_ids() -> None:
    first = read_bank_statement(BANK / "oca_test-sns.940")
    again = read_bank_statement(BANK / "oca_test-sns.940")

    assert len(first) == 8
    assert [m.transaction_id for m in first] == [m.transaction_id for m in again]
    assert len({m.transaction_id for m in first}) == 8
    assert first[1].transaction_id == "NL05SNSB0908244436:228ohu/972795"
    assert first[0].payer_name == "gerrits glas en schilderwerk"
    assert "Factuur 17227/248/20" in first[0].remittance
    assert facts(first[5]) == (date(2017, 12, 28), 0, "EUR", "credit", False)


def test_mt940_rabobank_reads_the_ordering_party_and_its_remittance() -> None:
    movements = read_bank_statement(BANK / "oca_test-rabo.swi")

    assert [facts(m) for m in movements] == [
        (date(2014, 1, 2), 40000, "EUR", "credit", False),
        (date(2014, 1, 1), 3461, "EUR", "debit", False),
    ]
    assert movements[0].payer_name == "R. SMITH"
    assert movements[0].remittance == "Test money paid by other partner:"
    assert movements[0].account == "NL34RABO0142623393"


def test_cartola_xlsx_named_xls_reads_cargos_as_debits_and_abonos_as_credits() -> None:
    movements = read_bank_statement(BANK / "bancochile_cartola_sample_xlsx-format.xls")

    assert len(movements) == 10
    credits = [m for m in movements if m.direction is Direction.CREDIT]
    assert [(m.booking_date, m.amount_minor, m.payer_name) for m in credits] == [
        (date(2026, 1, 3), 190578, "Farmacia Cruz Verde"),
        (date(2026, 1, 5), 78462, "Farmacia Cruz Verde"),
    ]
    assert facts(movements[0]) == (date(2026, 1, 1), 197700, "CLP", "debit", False)
    assert movements[0].account == "00-123-45678-90"
    assert movements[0].place == "row 28"


def test_cartola_csv_gives_the_same_movements_as_its_workbook() -> None:
    from_csv = read_bank_statement(
        BANK / "bancochile_cartola_sample_movements_DERIVED.csv"
    )
    from_xlsx = read_bank_statement(BANK / "bancochile_cartola_sample_xlsx-format.xls")

    assert [facts(m) for m in from_csv] == [facts(m) for m in from_xlsx]
    assert from_csv[1].place == "row 3"


def test_a_legacy_binary_xls_is_refused_saying_to_save_it_as_xlsx_or_csv() -> None:
    with pytest.raises(StatementError) as refused:
        read_bank_statement(BANK / "bancochile_cartola_binary_sample.xls")

    assert "legacy binary Excel workbook" in str(refused.value)
    assert "as .xlsx or CSV" in str(refused.value)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("oca_test-camt053.xml", StatementFormat.CAMT053),
        ("oca_test-rabo.swi", StatementFormat.MT940),
        ("oca_test-sns.940", StatementFormat.MT940),
        ("bancochile_cartola_sample_movements_DERIVED.csv", StatementFormat.CARTOLA),
    ],
)
def test_the_format_is_sniffed_from_content(
    name: str, expected: StatementFormat
) -> None:
    path = BANK / name
    assert sniff_format(path, path.read_bytes()) is expected


def test_an_unknown_file_is_refused_naming_the_formats_read(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")

    with pytest.raises(StatementError, match=r"notes.txt file: is none of the formats"):
        read_bank_statement(path)


def test_a_bad_amount_names_file_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "cartola.csv"
    path.write_text(
        "Fecha,Descripción,Canal o Sucursal,Cargos (CLP),Abonos (CLP),Saldo (CLP)\n"
        "03/01/2026,Pago,Internet,,19x,100\n"
    )

    with pytest.raises(StatementError) as refused:
        read_bank_statement(path)

    assert str(refused.value).startswith("cartola.csv row 2, column Abonos: '19x'")


def test_a_broken_mt940_line_names_its_file_line(tmp_path: Path) -> None:
    path = tmp_path / "bank.940"
    path.write_text(":20:X\n:25:CL123\n:60F:C260101CLP0,\n:61:26010X\n:86:x\n")

    with pytest.raises(StatementError, match=r"bank.940 line 4, field :61:"):
        read_bank_statement(path)


def test_a_rut_is_normalised_and_its_check_digit_verified() -> None:
    assert normalise_rut("76.086.428-5") == "76086428-5"
    assert normalise_rut("76.086.428-4") is None
    assert ruts_in("Transf. 12.345.678-5 y 12.345.678-9 fact 1234") == ["12345678-5"]


MT940_SAME_REFERENCE_TWICE = """\
:20:STMT20261203
:25:CL0012345678CLP
:28C:3/1
:60F:C261202CLP0,
:61:2612031203C100000,NTRFNONREF//DUP001
:86:/NAME/JOSE PEREZ/REMI/USTD//Pago Fact 2026
:61:2612031203C10000,NTRFNONREF//DUP001
:86:/NAME/PEQUENO CLIENTE/REMI/USTD//Pago Fact 123
:62F:C261203CLP110000,
-
"""

CAMT053_SAME_REFERENCE_TWICE = """\
<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>
<Stmt><Id>S1</Id><Acct><Id><Othr><Id>00-123-45678-90</Id></Othr></Id></Acct>
<Ntry><Amt Ccy="CLP">100000</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>
<BookgDt><Dt>2026-12-01</Dt></BookgDt><AcctSvcrRef>R9</AcctSvcrRef>
<NtryDtls><TxDtls><RmtInf><Ustrd>Factura 2026</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>
<Ntry><Amt Ccy="CLP">10000</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>
<BookgDt><Dt>2026-12-01</Dt></BookgDt><AcctSvcrRef>R9</AcctSvcrRef>
<NtryDtls><TxDtls><RmtInf><Ustrd>Factura 123</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>
</Stmt></BkToCstmrStmt></Document>
"""

CARTOLA_HEADER = (
    "Fecha,Descripción,Canal o Sucursal,Cargos (CLP),Abonos (CLP),Saldo (CLP)\n"
)


def test_mt940_reference_repeated_in_one_file_gives_the_later_movement_a_suffix(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dupref.940"
    path.write_text(MT940_SAME_REFERENCE_TWICE)

    movements = read_bank_statement(path)

    assert [m.transaction_id for m in movements] == [
        "CL0012345678CLP:DUP001",
        "CL0012345678CLP:DUP001/2",
    ]
    assert [m.transaction_id for m in read_bank_statement(path)] == [
        m.transaction_id for m in movements
    ]


def test_camt053_reference_repeated_across_entries_gives_the_later_one_a_suffix(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dupref.xml"
    path.write_text(CAMT053_SAME_REFERENCE_TWICE)

    movements = read_bank_statement(path)

    assert [m.transaction_id for m in movements] == [
        "00-123-45678-90:R9",
        "00-123-45678-90:R9/2",
    ]


def test_cartola_rows_identical_in_everything_get_distinct_ids(tmp_path: Path) -> None:
    path = tmp_path / "cartola.csv"
    row = "04/12/2026,Pago factura 1234,Internet,,100.000,0\n"
    path.write_text(CARTOLA_HEADER + row + row)

    movements = read_bank_statement(path)

    assert len({m.transaction_id for m in movements}) == 2


def test_overlapping_cartolas_give_each_movement_one_id_whatever_else_the_day_holds(
    tmp_path: Path,
) -> None:
    yesterday = tmp_path / "yesterday.csv"
    yesterday.write_text(
        CARTOLA_HEADER + "04/12/2026,Pago factura 0000001234,Internet,,100.000,0\n"
    )
    today = tmp_path / "today.csv"
    today.write_text(
        CARTOLA_HEADER
        + "04/12/2026,Pago factura 2026,Internet,,100.000,0\n"
        + "04/12/2026,Pago  FACTURA 0000001234,Internet,,100.000,0\n"
        + "05/12/2026,Pago factura 12345,Internet,,50.000,0\n"
    )

    (seen_yesterday,) = read_bank_statement(yesterday)
    new_payment, same_payment, next_day = read_bank_statement(today)

    assert same_payment.transaction_id == seen_yesterday.transaction_id
    assert new_payment.transaction_id != seen_yesterday.transaction_id
    assert (
        len(
            {
                new_payment.transaction_id,
                same_payment.transaction_id,
                next_day.transaction_id,
            }
        )
        == 3
    )


def test_cartola_xlsx_and_its_csv_give_the_same_transaction_ids() -> None:
    from_csv = read_bank_statement(
        BANK / "bancochile_cartola_sample_movements_DERIVED.csv"
    )
    from_xlsx = read_bank_statement(BANK / "bancochile_cartola_sample_xlsx-format.xls")

    assert [m.transaction_id for m in from_csv] == [m.transaction_id for m in from_xlsx]


MT940_CUT_INSIDE_THE_LAST_INFORMATION = """\
:20:STMT20261201
:25:CL0012345678CLP
:28C:1/1
:60F:C261130CLP1000000,
:61:2612011201C400000,NTRFNONREF//BCH0001
:86:/NAME/COMERCIAL ANDES SPA/REMI/USTD//Factura 0000001234
:61:2612011201C10000,NTRFNONREF//BCH0003
:86:/NAME/NUNOA Y OHIGGINS/REMI/USTD//Fact 123
"""


def test_mt940_cut_before_its_closing_balance_is_refused_naming_the_statement(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cut.940"
    path.write_text(MT940_CUT_INSIDE_THE_LAST_INFORMATION)

    with pytest.raises(StatementError) as refused:
        read_bank_statement(path)

    message = str(refused.value)
    assert message.startswith("cut.940 statement STMT20261201 1/1")
    assert "no closing balance" in message
    assert "download the complete statement again" in message


def test_mt940_whose_movements_do_not_add_up_to_the_closing_balance_is_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "short.940"
    path.write_text(
        MT940_CUT_INSIDE_THE_LAST_INFORMATION + ":62F:C261201CLP1610000,\n-\n"
    )

    with pytest.raises(StatementError) as refused:
        read_bank_statement(path)

    assert "1000000 + 410000 is 1410000, not the closing 1610000" in str(refused.value)


def test_camt053_statement_opened_but_never_closed_is_refused(tmp_path: Path) -> None:
    complete = (BANK / "oca_test-camt053.xml").read_text()
    path = tmp_path / "camt.xml"
    path.write_text(complete.replace("<Cd>CLBD</Cd>", "<Cd>ITBD</Cd>"))

    with pytest.raises(StatementError) as refused:
        read_bank_statement(path)

    assert "statement 1234Test/1: has no closing balance (CLBD)" in str(refused.value)
    assert "download the complete statement again" in str(refused.value)


def test_cartola_xlsx_whose_rows_do_not_add_up_to_its_totals_is_refused(
    tmp_path: Path,
) -> None:
    original = BANK / "bancochile_cartola_sample_xlsx-format.xls"
    path = tmp_path / "cartola.xlsx"
    with (
        zipfile.ZipFile(original) as source,
        zipfile.ZipFile(path, "w") as copy,
    ):
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.startswith("xl/worksheets/"):
                data = data.replace(b">269040<", b">269041<")
            copy.writestr(item, data)

    with pytest.raises(StatementError, match="Total Abonos"):
        read_bank_statement(path)


def test_cartola_amount_beyond_what_the_store_keeps_names_row_and_column(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cartola.csv"
    path.write_text(
        CARTOLA_HEADER
        + '01/12/2026,Pago factura 12345,Internet,,"99.999.999.999.999.999.999",0\n'
    )

    with pytest.raises(StatementError) as refused:
        read_bank_statement(path)

    message = str(refused.value)
    assert message.startswith("cartola.csv row 2, column Abonos:")
    assert "above the largest amount accepted" in message


def test_mt940_amount_beyond_what_the_store_keeps_names_its_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "big.940"
    path.write_text(
        ":20:X\n:25:CL123\n:60F:C260101CLP0,\n"
        ":61:2601010101C99999999999999999999,NTRFNONREF//B1\n:86:x\n"
        ":62F:C260101CLP99999999999999999999,\n"
    )

    with pytest.raises(StatementError, match=r"big.940 line 4, field :61:: .*above"):
        read_bank_statement(path)


def test_camt053_amount_beyond_what_the_store_keeps_names_its_entry(
    tmp_path: Path,
) -> None:
    path = tmp_path / "big.xml"
    path.write_text(CAMT053_SAME_REFERENCE_TWICE.replace(">100000<", ">1E+999999999<"))

    with pytest.raises(StatementError, match=r"big.xml entry 1, Amt: .*digits"):
        read_bank_statement(path)


CARTOLA_CSV = BANK / "bancochile_cartola_sample_movements_DERIVED.csv"


def test_a_utf16_cartola_with_its_mark_reads_as_the_utf8_one(tmp_path: Path) -> None:
    utf16 = tmp_path / "cartola-unicode.csv"
    utf16.write_bytes(CARTOLA_CSV.read_text(encoding="utf-8").encode("utf-16"))

    assert read_bank_statement(utf16) == read_bank_statement(CARTOLA_CSV)


def test_utf16_without_its_mark_is_refused_naming_the_encoding(tmp_path: Path) -> None:
    unmarked = tmp_path / "cartola.csv"
    unmarked.write_bytes(CARTOLA_CSV.read_text(encoding="utf-8").encode("utf-16-le"))

    with pytest.raises(StatementError) as refused:
        read_bank_statement(unmarked)

    assert "UTF-16 text without a byte-order mark" in str(refused.value)
    assert "save it again as CSV in UTF-8" in str(refused.value)


def test_a_day_that_is_not_in_the_calendar_says_so(tmp_path: Path) -> None:
    lines = CARTOLA_CSV.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace("01/01/2026", "31/02/2026")
    cartola = tmp_path / "cartola.csv"
    cartola.write_text("\n".join(lines) + "\n", encoding="utf-8")

    with pytest.raises(StatementError) as refused:
        read_bank_statement(cartola)

    assert "cartola.csv row 2" in str(refused.value)
    assert "'31/02/2026' is not a calendar date" in str(refused.value)


def test_a_missing_file_is_named_as_missing(tmp_path: Path) -> None:
    with pytest.raises(StatementError) as refused:
        read_bank_statement(tmp_path / "cartloa.csv")

    assert "cartloa.csv file: does not exist" in str(refused.value)
    assert "bank's site" not in str(refused.value)


def test_a_format_named_against_the_content_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StatementError) as refused:
        read_bank_statement(CARTOLA_CSV, StatementFormat.MT940)

    assert "reads as cartola, not as mt940" in str(refused.value)
    assert "leave --format out" in str(refused.value)
