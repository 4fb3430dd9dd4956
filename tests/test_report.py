"""The KPI report: self-contained HTML with a chart and a table each, CSV, terminal text."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from receivables.kpis import AGING_BUCKETS, GroupBy, KpiReport
from receivables.money import Money
from receivables.report import (
    CSV_COLUMNS,
    days_text,
    headline_text,
    headlines,
    money,
    nice_ticks,
    percent,
    whole_days,
    write_csv_export,
    write_html_report,
)
from receivables.store import Customer, make_engine, session_scope
from tests.test_kpis import (
    AS_OF,
    CUSTOMER_NAME,
    FEBRUARY_END,
    JANUARY_END,
    MARCH_END,
    TENANT,
    build_aging_portfolio,
    build_bank_lines,
    build_commitment_portfolio,
    build_contact_portfolio,
    build_month_end_portfolio,
    import_ibm,
    kpis_of,
    pay,
    store_invoice,
)

CHART_IDS = ("aging-0", "aging-series-0", "dso", "recovery", "funnel")
SVG_NAMESPACE = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Engine]:
    """A migrated SQLite store with the aging, contact and commitment portfolios of test_kpis."""
    engine = make_engine(sqlite_url)
    build_aging_portfolio(engine)
    build_contact_portfolio(engine)
    build_commitment_portfolio(engine)
    yield engine
    engine.dispose()


class PageReader(HTMLParser):
    """Collects the tables of a page (caption, rows of cell texts) and every tag seen."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._caption: str | None = None
        self._rows: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self._rows, self._caption = [], ""
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("td", "th", "caption"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._rows and self._cell is not None:
            self._rows[-1].append("".join(self._cell))
        elif tag == "caption" and self._cell is not None:
            self._caption = "".join(self._cell)
        elif tag == "table" and self._rows is not None:
            self.tables[self._caption or ""] = self._rows
            self._rows = None
        if tag in ("td", "th", "caption"):
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def read_page(path: Path) -> tuple[str, PageReader]:
    """The page's text and what the parser found in it."""
    page = path.read_text(encoding="utf-8")
    reader = PageReader()
    reader.feed(page)
    return page, reader


def report_of(engine: Engine, group_by: GroupBy | None = None) -> KpiReport:
    """The test tenant's KPIs at AS_OF over the first quarter of 2026."""
    return kpis_of(engine, AS_OF, (date(2026, 1, 1), AS_OF), group_by)


# --- the HTML page ---


def test_every_chart_is_an_svg_with_title_axis_labels_and_a_data_table(
    store: Engine, tmp_path: Path
) -> None:
    kpis = report_of(store)

    page, reader = read_page(write_html_report(kpis, tmp_path / "r.html", title="Q1"))

    svgs = re.findall(r"<svg\b.*?</svg>", page, flags=re.DOTALL)
    ids = {}
    for svg in svgs:
        root = ElementTree.fromstring(svg)  # each chart is well-formed SVG on its own
        title = root.find(f"{SVG_NAMESPACE}title")
        assert root.get("role") == "img" and title is not None and title.text
        ids[title.get("id", "").removesuffix("-title")] = root
    # Two aging charts per currency (CLP and USD), then DSO, recovery and the funnel.
    assert set(ids) == {*CHART_IDS, "aging-1", "aging-series-1"}
    for chart_id in ("dso", "recovery"):
        words = [t.text for t in ids[chart_id].iter(f"{SVG_NAMESPACE}text")]
        assert len(words) > 6, f"{chart_id} has no axis labels or ticks"
    figures = page.count("<figure>")
    assert figures == len(svgs)
    assert all("<table>" in part for part in page.split("<figure>")[1:])
    assert {
        "Aging of the open balance, CLP",
        "Days sales outstanding (countback)",
    } <= set(reader.tables)


def test_tables_under_the_charts_carry_the_figures(
    store: Engine, tmp_path: Path
) -> None:
    kpis = report_of(store)

    _, reader = read_page(write_html_report(kpis, tmp_path / "r.html", title="Q1"))

    aging = reader.tables["Aging of the open balance, CLP"]
    clp = kpis.overall.aging[0]
    assert [row[:3] for row in aging[1:]] == [
        [b.label, money(b.amount_minor, "CLP"), str(b.count)] for b in clp.buckets
    ]
    funnel = reader.tables["Contacts by channel and outcome"]
    by_channel = {row[0]: row for row in funnel[1:]}
    for channel in kpis.overall.channels:
        assert by_channel[channel.channel][1:3] == [
            str(channel.planned),
            str(channel.sent),
        ]
    dso = reader.tables["Days sales outstanding (countback)"]
    assert dso[-1][2] == days_text(kpis.overall.dso[-1].days)


def test_the_report_names_customers_by_code_never_by_name(
    store: Engine, tmp_path: Path
) -> None:
    kpis = report_of(store, group_by="customer")

    page, _ = read_page(write_html_report(kpis, tmp_path / "r.html", title="Q1"))
    exported = write_csv_export(kpis, tmp_path / "r.csv").read_text(encoding="utf-8")

    for text in (page, exported):
        assert CUSTOMER_NAME not in text
        assert escape(CUSTOMER_NAME) not in text
        assert "O'Higgins" not in text and "O&#x27;Higgins" not in text
    assert "C-A01" in page and "customer=C-A01" in exported


def test_the_page_loads_nothing_from_anywhere(store: Engine, tmp_path: Path) -> None:
    kpis = report_of(store)

    page, reader = read_page(write_html_report(kpis, tmp_path / "r.html", title="Q1"))

    tags = {tag for tag, _ in reader.tags}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed"}
    assert not [attrs for _, attrs in reader.tags if "src" in attrs or "href" in attrs]
    assert "url(" not in page and "@import" not in page
    # The only address is the SVG namespace, a name that is never fetched.
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) == {
        "http://www.w3.org/2000/svg"
    }


def test_the_page_gives_its_generation_time_in_the_zone_of_its_dates(
    store: Engine, tmp_path: Path
) -> None:
    generated = datetime(2026, 12, 4, 23, 56, tzinfo=UTC)
    kpis = dataclasses.replace(report_of(store), generated_at=generated)

    page, _ = read_page(write_html_report(kpis, tmp_path / "r.html", title="Q1"))

    assert (
        "dates in America/Santiago · generated 2026-12-04 20:56 America/Santiago"
        in page
    )
    assert " UTC" not in page


def test_promises_disputes_and_rule_decisions_are_figures_not_placeholders(
    store: Engine, tmp_path: Path
) -> None:
    kpis = report_of(store)

    page, reader = read_page(write_html_report(kpis, tmp_path / "r.html", title="Q1"))

    assert "not recorded yet" not in page
    promises = reader.tables["Payment promises"]
    # January to March: P3 and P8 (recorded in February) join March's eight; P8 was kept.
    assert promises[1] == ["Promises", "10", "4", "3", "1", "2", "57,1%"]
    assert reader.tables["Payment promises: amounts of the promises kept and broken"][
        1:
    ] == [["CLP", "300.000 CLP", "500.000 CLP"], ["USD", "0,00 USD", "10,00 USD"]]
    disputes = reader.tables["Disputes by category"]
    assert disputes[1][:8] == [
        "purchase order pending",
        "CLP",
        "3",
        "600.000 CLP",
        "1",
        "2",
        "7,2 days",
        "3,0 days",
    ]
    by_rule = reader.tables["Contacts deferred or suppressed, by the rule that decided"]
    # The deferral of 27 February counts too: the period starts in January.
    assert by_rule[1:3] == [
        ["deferred", "CL-B-01", "3"],
        ["deferred", "(no rule named)", "1"],
    ]
    cards = {h.label: h for h in headlines(kpis)}
    assert (cards["Promises kept"].value, cards["Disputes opened"].value) == (
        "57,1%",
        "7",
    )
    assert cards["Contacts deferred by a contact rule"].value == "5"
    assert (
        cards["Contacts deferred by a contact rule"].detail == "1 suppressed by a rule"
    )


def test_a_comparison_puts_both_reports_side_by_side(
    store: Engine, tmp_path: Path
) -> None:
    kpis = report_of(store)
    february = kpis_of(store, date(2026, 2, 28), (date(2026, 1, 1), date(2026, 2, 28)))

    page, reader = read_page(
        write_html_report(
            kpis,
            tmp_path / "r.html",
            title="Q1",
            compare=february,
            compare_label="February",
        )
    )

    table = reader.tables["This report and February, side by side"]
    assert table[0] == ["Figure", "This report", "February"]
    rows = {row[0]: row[1:] for row in table[1:]}
    for label in ("Contacts sent", "Recovered within 15 days after due, CLP"):
        mine = next(h for h in headlines(kpis) if h.label == label)
        theirs = next(h for h in headlines(february) if h.label == label)
        assert rows[label][0].startswith(mine.value)
        assert rows[label][1].startswith(theirs.value)
    assert rows["Tasks created"] == [
        f"{r.overall.tasks.opened} ({r.overall.tasks.done} done, "
        f"{r.overall.tasks.cancelled} cancelled, {r.overall.tasks.escalated} escalated)"
        for r in (kpis, february)
    ]
    assert "CLP (February)" in page  # the comparison's recovery curve is drawn too
    tasks = reader.tables["Tasks created in the period and their deadlines"]
    assert [row[0] for row in tasks[1:]] == ["This report", "February"]


def test_an_empty_store_still_draws_every_chart_saying_there_is_nothing(
    sqlite_url: str, tmp_path: Path
) -> None:
    engine = make_engine(sqlite_url)
    try:
        kpis = report_of(engine)
    finally:
        engine.dispose()

    page, _ = read_page(write_html_report(kpis, tmp_path / "r.html", title="Empty"))

    for chart_id in CHART_IDS:
        assert f'id="{chart_id}-title"' in page
    assert f"nothing open at {AS_OF}" in page


def chart_svg(page: str, chart_id: str) -> ElementTree.Element:
    """The chart whose title has this id, parsed as SVG."""
    found = re.search(
        rf'<svg\b[^>]*aria-labelledby="{chart_id}-title.*?</svg>', page, flags=re.DOTALL
    )
    assert found, f"no chart {chart_id}"
    return ElementTree.fromstring(found.group(0))


def test_aging_at_each_month_end_is_a_column_per_month_with_its_table(
    engine: Engine, tmp_path: Path
) -> None:
    build_month_end_portfolio(engine)
    kpis = report_of(engine)

    page, reader = read_page(write_html_report(kpis, tmp_path / "r.html", title="Q1"))

    chart = chart_svg(page, "aging-series-0")
    words = [t.text for t in chart.iter(f"{SVG_NAMESPACE}text")]
    assert {"2026-01-31", "2026-02-28", "2026-03-31", "Month end"} <= set(words)
    tips = [t.text for t in chart.iter(f"{SVG_NAMESPACE}title")][1:]
    # One coloured piece per bucket with money in it: two, three, then two (see
    # test_kpis for why each invoice sits where it does).
    assert tips == [
        "2026-01-31, current: 2.000 CLP",
        "2026-01-31, 31-60: 1.000 CLP",
        "2026-02-28, current: 4.000 CLP",
        "2026-02-28, 1-30: 2.000 CLP",
        "2026-02-28, 31-60: 600 CLP",
        "2026-03-31, 1-30: 2.500 CLP",
        "2026-03-31, 31-60: 2.000 CLP",
    ]
    table = reader.tables["Aging of the open balance at each month end, CLP"]
    assert table[0][:7] == ["Month end", *AGING_BUCKETS]
    # Month end, current to 90+, then (past "no due date") open and over 30 days,
    # each as amount and invoices.
    clp = [
        f"{amount} CLP" for amount in ("0", "600", "1.000", "2.000", "2.500", "4.000")
    ]
    nil, c600, c1k, c2k, c2k5, c4k = clp
    assert [row[:6] + row[7:] for row in table[1:]] == [
        ["2026-01-31", c2k, nil, c1k, nil, nil, "3.000 CLP", "2", c1k, "1"],
        ["2026-02-28", c4k, c2k, c600, nil, nil, "6.600 CLP", "3", c600, "1"],
        ["2026-03-31", nil, c2k5, c2k, nil, nil, "4.500 CLP", "2", c2k, "1"],
    ]
    usd = reader.tables["Aging of the open balance at each month end, USD"]
    assert [row[4] for row in usd[1:]] == ["5,00 USD", "0,00 USD", "0,00 USD"]


def test_a_portfolio_settled_by_the_report_date_still_shows_how_it_aged(
    engine: Engine, tmp_path: Path
) -> None:
    store_invoice(
        engine, "S1", issued=date(2026, 1, 5), due=date(2026, 1, 20), amount=1_000
    )
    pay(engine, "S1", 1_000, date(2026, 2, 10))
    store_invoice(
        engine, "S2", issued=date(2026, 2, 1), due=date(2026, 2, 10), amount=3_000
    )
    pay(engine, "S2", 3_000, date(2026, 3, 20))
    kpis = report_of(engine)

    page, reader = read_page(write_html_report(kpis, tmp_path / "r.html", title="Q1"))

    assert kpis.overall.aging == ()
    assert f"nothing open at {AS_OF}; the month ends below" in page
    columns = chart_svg(page, "aging-series-0").iter(f"{SVG_NAMESPACE}rect")
    tips = [title.text for r in columns for title in r.iter(f"{SVG_NAMESPACE}title")]
    # Each invoice was 1-30 days late at one month end and paid by the next.
    assert tips == ["2026-01-31, 1-30: 1.000 CLP", "2026-02-28, 1-30: 3.000 CLP"]
    table = reader.tables["Aging of the open balance at each month end, CLP"]
    assert [(row[0], row[7]) for row in table[1:]] == [
        ("2026-01-31", "1.000 CLP"),
        ("2026-02-28", "3.000 CLP"),
        ("2026-03-31", "0 CLP"),
    ]


# --- CSV and terminal ---


def test_csv_export_parses_into_one_figure_per_row(
    store: Engine, tmp_path: Path
) -> None:
    kpis = report_of(store, group_by="segment")

    path = write_csv_export(kpis, tmp_path / "kpis.csv")

    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        rows = list(reader)
    figures = {}
    for row in rows:
        dimension = dict(
            pair.split("=", 1) for pair in row["dimension"].split(";") if pair
        )
        key = (row["metric"], tuple(sorted(dimension.items())))
        assert key not in figures, f"{key} appears twice"
        figures[key] = row
        if row["value"]:
            Decimal(row["value"])  # every figure given is a number
    for aging in kpis.overall.aging:
        cur = aging.currency
        got = figures[("open_balance", (("currency", cur),))]
        assert Decimal(got["value"]) == Money(aging.open_minor, cur).to_decimal()
        assert got["unit"] == cur
    email = next(f for f in kpis.overall.channels if f.channel == "email")
    sent = figures[("contacts", (("channel", "email"), ("outcome", "sent")))]
    assert int(sent["value"]) == email.sent
    assert figures[("promises_kept", ())]["value"] == str(kpis.overall.promises.kept)
    broken = figures[("promises_broken_amount", (("currency", "CLP"),))]
    assert (broken["value"], broken["unit"]) == ("500000", "CLP")
    po = (("category", "purchase_order_pending"), ("currency", "CLP"))
    assert figures[("disputes_median_days_to_resolution", po)]["value"] == "3.00"
    rule = (("outcome", "suppressed"), ("rule", "CL-B-05"))
    assert figures[("contacts_by_rule", rule)]["value"] == "1"
    assert figures[("promises_kept", (("segment", "b2b-large"),))]["value"] == "2"
    series = [row for row in rows if row["metric"] == "aging_series_amount"]
    assert len(series) == 2 * len(AGING_BUCKETS) * len({p.on for p in kpis.overall.dso})
    assert not any(row["unit"] == "not recorded yet" for row in rows)


def test_csv_export_has_a_row_per_month_end_and_bucket(
    engine: Engine, tmp_path: Path
) -> None:
    build_month_end_portfolio(engine)
    kpis = report_of(engine)

    path = write_csv_export(kpis, tmp_path / "kpis.csv")

    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    amounts = {
        (row["dimension"], row["value"])
        for row in rows
        if row["metric"] == "aging_series_amount" and Decimal(row["value"])
    }
    assert amounts == {
        (f"currency=CLP;date={JANUARY_END};bucket=current", "2000"),
        (f"currency=CLP;date={JANUARY_END};bucket=31-60", "1000"),
        (f"currency=USD;date={JANUARY_END};bucket=61-90", "5.00"),
        (f"currency=CLP;date={FEBRUARY_END};bucket=current", "4000"),
        (f"currency=CLP;date={FEBRUARY_END};bucket=1-30", "2000"),
        (f"currency=CLP;date={FEBRUARY_END};bucket=31-60", "600"),
        (f"currency=CLP;date={MARCH_END};bucket=1-30", "2500"),
        (f"currency=CLP;date={MARCH_END};bucket=31-60", "2000"),
    }
    over_30 = [
        (row["dimension"], row["value"], row["unit"])
        for row in rows
        if row["metric"].startswith("over_30_series") and "CLP" in row["dimension"]
    ]
    assert over_30 == [
        (f"currency=CLP;date={JANUARY_END}", "1000", "CLP"),
        (f"currency=CLP;date={JANUARY_END}", "1", "invoices"),
        (f"currency=CLP;date={FEBRUARY_END}", "600", "CLP"),
        (f"currency=CLP;date={FEBRUARY_END}", "1", "invoices"),
        (f"currency=CLP;date={MARCH_END}", "2000", "CLP"),
        (f"currency=CLP;date={MARCH_END}", "1", "invoices"),
    ]


def test_headline_text_gives_the_key_figures_for_the_terminal(store: Engine) -> None:
    kpis = report_of(store)

    text = headline_text(kpis)

    clp = kpis.overall.aging[0]
    assert f"tenant {TENANT} at {AS_OF}" in text
    assert money(clp.open_minor, "CLP") in text
    assert days_text(kpis.overall.dso_as_of[0].days) in text
    assert "Promises kept" in text and "Disputes opened" in text
    assert "Contacts deferred by a contact rule" in text
    assert CUSTOMER_NAME not in text


def test_headline_text_by_segment_gives_each_segment_s_figures(store: Engine) -> None:
    kpis = report_of(store, group_by="segment")

    text = headline_text(kpis)

    ungrouped = headline_text(report_of(store))
    assert text.startswith(ungrouped) and len(kpis.groups) >= 2
    grouped = text[len(ungrouped) :]
    assert f"By segment ({len(kpis.groups)}):" in grouped
    blocks = re.split(r"\n  (?! )", grouped)[1:]  # one per group, opened by its key
    assert [block.splitlines()[0] for block in blocks] == [g.key for g in kpis.groups]
    for block, group in zip(blocks, kpis.groups, strict=True):
        for aging in group.figures.aging:
            assert money(aging.open_minor, aging.currency) in block
        assert f"Contacts sent {group.figures.contacts_sent}" in " ".join(block.split())
    assert CUSTOMER_NAME not in text


@pytest.mark.parametrize("top", [0.4, 7, 26.3, 99, 100, 5_119.85, 1e6 + 1])
def test_axis_ticks_are_round_even_steps_that_cover_the_top(top: float) -> None:
    ticks = nice_ticks(top)

    steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
    assert ticks[0] == 0 and ticks[-1] >= top and ticks[-2] < top
    assert len(steps) == 1 and 3 <= len(ticks) <= 12


# --- the real IBM portfolio ---


def test_ibm_report_shows_every_chart_and_no_customer_name(
    sqlite_url: str, shared_dir: Path, tmp_path: Path
) -> None:
    import_ibm(sqlite_url, shared_dir)
    engine = make_engine(sqlite_url)
    try:
        kpis = kpis_of(
            engine, date(2013, 6, 30), (date(2012, 7, 1), date(2013, 6, 30)), "customer"
        )
        with session_scope(engine) as session:
            names = [c.name for c in session.exec(select(Customer)).all()]
    finally:
        engine.dispose()

    page, reader = read_page(
        write_html_report(kpis, tmp_path / "ibm.html", title="IBM")
    )
    exported = write_csv_export(kpis, tmp_path / "ibm.csv").read_text(encoding="utf-8")

    for chart_id in CHART_IDS:
        assert f'id="{chart_id}-title"' in page
    assert len(re.findall(r"<svg\b", page)) == len(CHART_IDS)
    assert names and not [n for n in names if n in page or n in exported]
    groups = reader.tables["KPIs by customer code"]
    assert len(groups) - 1 == len(kpis.groups)


def test_shares_and_days_take_a_decimal_comma_like_the_amounts_beside_them() -> None:
    assert (percent(0.5714), percent(1.0), percent(None)) == ("57,1%", "100,0%", "—")
    assert (days_text(12.46), days_text(None)) == ("12,5 days", "—")
    assert money(313_882_000, "CLP") == "313.882.000 CLP"


def test_bar_tooltips_read_as_amounts_not_scientific_notation(
    sqlite_url: str, tmp_path: Path
) -> None:
    engine = make_engine(sqlite_url)
    store_invoice(
        engine, "9001", issued=date(2026, 1, 2), due=date(2026, 2, 1), amount=23_397_040
    )
    kpis = report_of(engine)

    page, _ = read_page(write_html_report(kpis, tmp_path / "r.html", title="Q1"))

    [aging] = re.findall(r'<svg\b[^>]*"aging-0-title .*?</svg>', page, re.S)
    tips = re.findall(r"<title>([^<]*)</title></rect>", aging)
    assert tips and not any("e+" in tip for tip in tips)
    assert "31-60: 23.397.040 CLP" in tips


# --- bank reconciliation ---


def test_reconciliation_time_is_in_the_terminal_the_page_and_the_csv(
    engine: Engine, tmp_path: Path
) -> None:
    build_bank_lines(engine)
    kpis = report_of(engine)

    text = " ".join(headline_text(kpis).split())
    page, reader = read_page(write_html_report(kpis, tmp_path / "r.html", title="Q1"))
    path = write_csv_export(kpis, tmp_path / "kpis.csv")

    # Over the quarter the line of 27 February counts too: days 2, 0, 3, 1, 2 and 7.
    assert (
        "Bank payments reconciled, median time 2,0 days "
        "(6 reconciled, nine in ten within 7 days)"
    ) in text
    assert (
        "Bank lines unmatched at the report date 2 "
        "(the oldest booked 29 days before the report date)"
    ) in text
    table = reader.tables["Incoming bank payments: booking to reconciliation"]
    assert table[1] == ["This report", "6", "2,0 days", "7 days", "2", "29 days"]
    assert 'id="reconciliation"' in page
    with path.open(encoding="utf-8", newline="") as handle:
        rows = {
            row["metric"]: (row["value"], row["unit"])
            for row in csv.DictReader(handle)
            if not row["dimension"]
        }
    assert rows["reconciled_lines"] == ("6", "lines")
    assert rows["reconciliation_median_days"] == ("2.00", "days")
    assert rows["reconciliation_p90_days"] == ("7", "days")
    assert rows["unmatched_lines"] == ("2", "lines")
    assert rows["oldest_unmatched_days"] == ("29", "days")


def test_no_bank_line_reads_as_no_movement_reconciled_and_dashes(
    engine: Engine, tmp_path: Path
) -> None:
    kpis = report_of(engine)

    text = " ".join(headline_text(kpis).split())
    _, reader = read_page(write_html_report(kpis, tmp_path / "r.html", title="Empty"))

    assert (
        "Bank payments reconciled, median time — (no movements reconciled in the period)"
        in text
    )
    assert "Bank lines unmatched at the report date 0 (none waiting" in text
    table = reader.tables["Incoming bank payments: booking to reconciliation"]
    assert table[1] == ["This report", "0", "—", "—", "0", "—"]


def test_whole_days_say_day_or_days_or_a_dash() -> None:
    assert [whole_days(n) for n in (None, 0, 1, 29)] == [
        "—",
        "0 days",
        "1 day",
        "29 days",
    ]
