"""Serve the SendGrid and Twilio fakes on 127.0.0.1 for a local trial of the real channels."""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

from tests.fakes.contract import ContractFake
from tests.fakes.fake_sendgrid import FakeSendGrid
from tests.fakes.fake_twilio import FakeTwilio

SHARED_DIR = Path(__file__).resolve().parents[3] / "shared"
# Any well-formed values do: the fakes check their shape, never their secrecy.
TRIAL_SETTINGS = {
    "SENDGRID_API_KEY": "SG.local-trial",
    "SENDGRID_FROM": "cobranzas@acreedor.example",
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "local-trial-token",
    "TWILIO_FROM_SMS": "+15005550006",
}


def settings_for(sendgrid: FakeSendGrid, twilio: FakeTwilio) -> dict[str, str]:
    """Every provider setting the worker and ``simulate`` need to reach these fakes."""
    return {
        **TRIAL_SETTINGS,
        "SENDGRID_HOST": sendgrid.base_url,
        "TWILIO_API_BASE_URL": twilio.base_url,
    }


def report(fakes: list[ContractFake], seen: dict[str, int]) -> None:
    """Print what each fake received since the last report, violations in full."""
    for fake in fakes:
        received = len(fake.requests)
        if received != seen.get(fake.provider, 0):
            print(f"{fake.provider}: {received} requests", flush=True)
            seen[fake.provider] = received
        for violation in fake.take_violations():
            print(f"{fake.provider} CONTRACT VIOLATION: {violation}", flush=True)


def main() -> None:
    """Start both fakes, print the settings to export, and report until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared-dir", type=Path, default=SHARED_DIR)
    args = parser.parse_args()
    with (
        FakeSendGrid(args.shared_dir) as sendgrid,
        FakeTwilio(args.shared_dir) as twilio,
    ):
        print("# export these in the shell that runs the worker or the replay:")
        for name, value in settings_for(sendgrid, twilio).items():
            print(f"export {name}='{value}'")
        print(
            "# every request is checked against the official OpenAPI documents",
            flush=True,
        )
        seen: dict[str, int] = {}
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                report([sendgrid, twilio], seen)
                time.sleep(1)


if __name__ == "__main__":
    main()
