"""Configuration from the environment: Temporal connection, database URL and data folder."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TASK_QUEUE = "invoices"
DEFAULT_TENANT = "demo"
# Case starts in flight at once when opening many: enough to keep a server busy (one at a
# time ran at about a quarter of the server's rate), few enough not to flood it.
CONCURRENT_STARTS = 32


@dataclass(frozen=True)
class TemporalSettings:
    """Where the Temporal frontend is and how to authenticate to it."""

    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = TASK_QUEUE
    api_key: str | None = None
    tls: bool = False
    tls_client_cert_path: str | None = None
    tls_client_key_path: str | None = None
    tls_server_ca_path: str | None = None
    tls_server_name: str | None = None
    # host:port for a Prometheus /metrics endpoint (Temporal's runtime metrics plus ours).
    metrics_address: str | None = None
    concurrent_starts: int = CONCURRENT_STARTS
    # Activities per second on the case task queue, for all workers together; the server
    # enforces it, so it holds however many workers run. Sends are nearly all of them, which
    # keeps a segment falling due at once within the providers' rate limits. None: no cap.
    max_sends_per_second: float | None = None


@dataclass(frozen=True)
class Settings:
    """Everything the worker and the starter need to know about their surroundings."""

    data_dir: Path = field(default_factory=lambda: PROJECT_ROOT / "var")
    database_url: str = ""
    temporal: TemporalSettings = field(default_factory=TemporalSettings)
    policies_dir: Path = field(default_factory=lambda: PROJECT_ROOT / "policies")
    templates_dir: Path = field(
        default_factory=lambda: PROJECT_ROOT / "templates" / "messages"
    )
    tenant: str = DEFAULT_TENANT
    # "text" for people reading a terminal, "json" for a log store (one object per line).
    log_format: str = "text"
    # Off by default: the tests run every workflow in the SDK's sandbox, where workflow
    # code that is not deterministic shows; a worker need not pay for it again per case.
    workflow_sandbox: bool = False

    @property
    def resolved_database_url(self) -> str:
        """The configured URL, or the embedded SQLite file in the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'dunning.sqlite'}"


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _positive(
    env: dict[str, str], name: str, parse: type[int] | type[float]
) -> float | None:
    """A positive number from ``name``, or None when it is not set."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = parse(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(
            f"{name}={raw!r} is not a positive {parse.__name__}: set a number above 0, "
            "or unset it for the default"
        )
    return value


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read settings from ``DUNNING_*`` and ``TEMPORAL_*`` environment variables."""
    env = dict(os.environ if env is None else env)
    data_dir = Path(env.get("DUNNING_DATA_DIR", str(PROJECT_ROOT / "var")))
    cert = env.get("TEMPORAL_TLS_CLIENT_CERT_PATH")
    temporal = TemporalSettings(
        address=env.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
        namespace=env.get("TEMPORAL_NAMESPACE", "default"),
        task_queue=env.get("DUNNING_TASK_QUEUE", TASK_QUEUE),
        api_key=env.get("TEMPORAL_API_KEY") or None,
        # An API key or a client certificate implies TLS, as Temporal Cloud requires it.
        tls=_flag(env.get("TEMPORAL_TLS"))
        or bool(cert)
        or bool(env.get("TEMPORAL_API_KEY")),
        tls_client_cert_path=cert,
        tls_client_key_path=env.get("TEMPORAL_TLS_CLIENT_KEY_PATH"),
        tls_server_ca_path=env.get("TEMPORAL_TLS_SERVER_CA_CERT_PATH"),
        tls_server_name=env.get("TEMPORAL_TLS_SERVER_NAME"),
        metrics_address=env.get("DUNNING_METRICS_ADDRESS") or None,
        concurrent_starts=int(
            _positive(env, "DUNNING_CONCURRENT_STARTS", int) or CONCURRENT_STARTS
        ),
        max_sends_per_second=_positive(env, "DUNNING_MAX_SENDS_PER_SECOND", float),
    )
    return Settings(
        data_dir=data_dir,
        database_url=env.get("DUNNING_DATABASE_URL", ""),
        temporal=temporal,
        tenant=env.get("DUNNING_TENANT", DEFAULT_TENANT),
        log_format=env.get("DUNNING_LOG_FORMAT", "text").strip().lower() or "text",
        workflow_sandbox=_flag(env.get("DUNNING_WORKFLOW_SANDBOX")),
    )
