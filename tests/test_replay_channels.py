"""A replay through SendGrid and Twilio: only when asked, only to this machine, all valid."""

from __future__ import annotations

import csv
import shutil
import zlib
from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import select

from receivables.channels import OutboxChannel
from receivables.deliveries import normalise_address
from receivables.replay_channels import (
    ProviderReplay,
    ReplayChannelError,
    check_provider_replay,
    replay_channels,
)
from receivables.settings import PROJECT_ROOT, Settings
from receivables.simulation import simulate
from receivables.store import (
    ContactLedgerEntry,
    ContactStatus,
    make_engine,
    session_scope,
)
from tests.fakes.fake_sendgrid import FakeSendGrid
from tests.fakes.fake_twilio import FakeTwilio
from tests.fakes.serve import TRIAL_SETTINGS, settings_for
from tests.test_simulation import IBM_FILE, first_rows_of

pytest_plugins = ("tests.fakes.fixtures",)

REPLAYED_ROWS = 30
PHONE_MAPPING = "ibm-ar-with-phones"
SENDGRID_ONLY = {k: v for k, v in TRIAL_SETTINGS.items() if k.startswith("SENDGRID")}
TWILIO_ONLY = {k: v for k, v in TRIAL_SETTINGS.items() if k.startswith("TWILIO")}


def test_an_ordinary_replay_uses_its_outbox_even_with_provider_settings(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**SENDGRID_ONLY, **TWILIO_ONLY}.items():
        monkeypatch.setenv(name, value)

    channels = replay_channels(make_engine(sqlite_url), None)

    assert all(isinstance(channel, OutboxChannel) for channel in channels.values())


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (SENDGRID_ONLY, "SENDGRID_HOST=https://api.sendgrid.com"),
        (TWILIO_ONLY, "TWILIO_API_BASE_URL=https://api.twilio.com"),
        (
            {**SENDGRID_ONLY, "SENDGRID_HOST": "http://sendgrid-fake.internal:3000"},
            "SENDGRID_HOST=http://sendgrid-fake.internal:3000",
        ),
    ],
)
def test_a_replay_refuses_providers_beyond_this_machine(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(ReplayChannelError, match="--allow-remote-providers") as refused:
        check_provider_replay(ProviderReplay(env))

    assert named in str(refused.value)


def test_a_replay_reaches_remote_providers_only_when_the_operator_allows_it() -> None:
    endpoints = check_provider_replay(ProviderReplay(SENDGRID_ONLY, allow_remote=True))

    assert [(e.provider, e.url) for e in endpoints] == [
        ("sendgrid", "https://api.sendgrid.com")
    ]


def test_the_local_trial_settings_reach_only_the_fakes(
    fake_sendgrid: FakeSendGrid, fake_twilio: FakeTwilio
) -> None:
    endpoints = check_provider_replay(
        ProviderReplay(settings_for(fake_sendgrid, fake_twilio))
    )

    assert [(e.provider, e.url) for e in endpoints] == [
        ("sendgrid", fake_sendgrid.base_url),
        ("twilio", fake_twilio.base_url),
    ]


def test_through_providers_without_provider_settings_is_refused() -> None:
    with pytest.raises(ReplayChannelError, match="none are set"):
        check_provider_replay(ProviderReplay({"SENDGRID_HOST": "http://127.0.0.1:9"}))


def test_simulate_command_refuses_real_providers_before_importing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import starter

    for name, value in SENDGRID_ONLY.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SENDGRID_HOST", raising=False)
    never_read = tmp_path / "never-read.csv"

    code = starter.main(
        ["simulate", str(never_read), "--mapping", "ibm-ar", "--through-providers"]
    )

    assert code == 2
    assert "SENDGRID_HOST=https://api.sendgrid.com" in capsys.readouterr().err


def test_allowing_remote_providers_alone_does_not_send_through_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import starter

    code = starter.main(
        [
            "simulate",
            "never-read.csv",
            "--mapping",
            "ibm-ar",
            "--allow-remote-providers",
        ]
    )

    assert code == 2
    assert "--through-providers" in capsys.readouterr().err


def with_phone_numbers(portfolio: Path, target: Path) -> Path:
    """The slice with a Chilean mobile per customer, so SMS steps reach Twilio too."""
    with portfolio.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, [*rows[0].keys(), "Phone"])
        writer.writeheader()
        for row in rows:
            digits = zlib.crc32(row["customerID"].encode()) % 100_000_000
            writer.writerow({**row, "Phone": f"+56 9 {digits:08d}"})
    return target


def policies_reading_phones(target: Path) -> Path:
    """A copy of the shipped policies whose IBM mapping also reads the Phone column."""
    shutil.copytree(PROJECT_ROOT / "policies", target)
    mappings = target / "mappings"
    text = (mappings / "ibm-ar.yaml").read_text(encoding="utf-8")
    text = text.replace("name: ibm-ar\n", f"name: {PHONE_MAPPING}\n")
    text = text.replace(
        "  disputed: Disputed\n", "  disputed: Disputed\n  phone: Phone\n"
    )
    (mappings / f"{PHONE_MAPPING}.yaml").write_text(text, encoding="utf-8")
    return target


def sent_contacts(work: Path) -> list[ContactLedgerEntry]:
    """Every contact the replay's ledger records as sent."""
    engine = make_engine(f"sqlite:///{work / 'replay.sqlite'}")
    with session_scope(engine) as session:
        statement = select(ContactLedgerEntry).where(
            ContactLedgerEntry.status == ContactStatus.SENT
        )
        sent = list(session.exec(statement).all())
    engine.dispose()
    return sent


async def test_a_replayed_slice_sends_real_sdk_requests_that_the_specs_accept(
    shared_dir: Path,
    tmp_path: Path,
    fake_sendgrid: FakeSendGrid,
    fake_twilio: FakeTwilio,
) -> None:
    rows = first_rows_of(shared_dir / IBM_FILE, tmp_path / "slice.csv", REPLAYED_ROWS)
    portfolio = with_phone_numbers(rows, tmp_path / "slice-with-phones.csv")
    settings = Settings(
        policies_dir=policies_reading_phones(tmp_path / "policies"),
        templates_dir=PROJECT_ROOT / "templates" / "messages",
    )
    providers = ProviderReplay(settings_for(fake_sendgrid, fake_twilio))
    work = tmp_path / "work"
    work.mkdir()

    summary = await simulate(
        portfolio, PHONE_MAPPING, settings=settings, work_dir=work, providers=providers
    )

    sent = sent_contacts(work)
    by_channel = Counter(entry.channel for entry in sent)
    assert summary.invoices == summary.payments_reported == REPLAYED_ROWS
    assert summary.reminders_after_payment == 0
    assert summary.reminders_by_channel == dict(by_channel)
    assert by_channel["email"] > 0 and by_channel["sms"] > 0
    assert set(by_channel) == {"email", "sms"}
    # Every request the SDKs made was judged against the official documents and passed.
    assert fake_sendgrid.violations == [] and fake_twilio.violations == []
    assert len(fake_sendgrid.requests) == by_channel["email"]
    assert len(fake_twilio.requests) == len(fake_twilio.messages()) == by_channel["sms"]
    assert {e.provider_message_id for e in sent if e.channel == "email"} == set(
        fake_sendgrid.message_ids
    )
    assert {e.provider_message_id for e in sent if e.channel == "sms"} == {
        message["sid"] for message in fake_twilio.created
    }
    texted = Counter(message["To"] for message in fake_twilio.messages())
    assert texted == Counter(
        normalise_address("sms", e.recipient) for e in sent if e.channel == "sms"
    )
    assert f"sent through twilio at {fake_twilio.base_url}" in summary.notes
