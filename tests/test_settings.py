"""Settings from the environment: the Temporal connection and where the store lives."""

from __future__ import annotations

from pathlib import Path

import pytest

from receivables.settings import PROJECT_ROOT, TASK_QUEUE, load_settings


def test_an_empty_environment_means_the_local_dev_server_and_embedded_sqlite() -> None:
    settings = load_settings({})

    assert settings.temporal.address == "127.0.0.1:7233"
    assert settings.temporal.namespace == "default"
    assert settings.temporal.task_queue == TASK_QUEUE
    assert settings.temporal.api_key is None
    assert settings.temporal.tls is False
    assert settings.resolved_database_url == (
        f"sqlite:///{PROJECT_ROOT / 'var' / 'dunning.sqlite'}"
    )


def test_the_default_sqlite_file_lives_in_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings({"DUNNING_DATA_DIR": str(tmp_path / "data")})

    assert settings.data_dir == tmp_path / "data"
    assert settings.resolved_database_url == (
        f"sqlite:///{tmp_path / 'data' / 'dunning.sqlite'}"
    )


def test_an_explicit_database_url_wins_over_the_data_dir(tmp_path: Path) -> None:
    url = "postgresql+psycopg://dunning@127.0.0.1:5432/dunning"

    settings = load_settings(
        {"DUNNING_DATA_DIR": str(tmp_path), "DUNNING_DATABASE_URL": url}
    )

    assert settings.resolved_database_url == url


def test_an_api_key_implies_tls() -> None:
    settings = load_settings(
        {
            "TEMPORAL_ADDRESS": "acme.a1b2c.tmprl.cloud:7233",
            "TEMPORAL_NAMESPACE": "acme.a1b2c",
            "TEMPORAL_API_KEY": "secret-key",
        }
    )

    assert settings.temporal.address == "acme.a1b2c.tmprl.cloud:7233"
    assert settings.temporal.namespace == "acme.a1b2c"
    assert settings.temporal.api_key == "secret-key"
    assert settings.temporal.tls is True


def test_an_empty_api_key_is_no_api_key() -> None:
    settings = load_settings({"TEMPORAL_API_KEY": ""})

    assert settings.temporal.api_key is None
    assert settings.temporal.tls is False


def test_client_certificate_paths_are_kept_and_imply_tls() -> None:
    settings = load_settings(
        {
            "TEMPORAL_TLS_CLIENT_CERT_PATH": "/certs/client.pem",
            "TEMPORAL_TLS_CLIENT_KEY_PATH": "/certs/client.key",
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH": "/certs/ca.pem",
            "TEMPORAL_TLS_SERVER_NAME": "temporal.internal",
        }
    )

    temporal = settings.temporal
    assert temporal.tls is True
    assert temporal.tls_client_cert_path == "/certs/client.pem"
    assert temporal.tls_client_key_path == "/certs/client.key"
    assert temporal.tls_server_ca_path == "/certs/ca.pem"
    assert temporal.tls_server_name == "temporal.internal"


@pytest.mark.parametrize(
    ("flag", "tls"),
    [("true", True), ("1", True), (" Yes ", True), ("false", False), ("0", False)],
)
def test_the_tls_flag_reads_the_usual_spellings(flag: str, tls: bool) -> None:
    assert load_settings({"TEMPORAL_TLS": flag}).temporal.tls is tls


def test_task_queue_and_tenant_come_from_dunning_variables() -> None:
    settings = load_settings(
        {"DUNNING_TASK_QUEUE": "invoices-cl", "DUNNING_TENANT": "andes"}
    )

    assert settings.temporal.task_queue == "invoices-cl"
    assert settings.tenant == "andes"


def test_without_a_mapping_the_process_environment_is_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DUNNING_DATABASE_URL", f"sqlite:///{tmp_path / 'x.sqlite'}")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "from-environment")

    settings = load_settings()

    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'x.sqlite'}"
    assert settings.temporal.namespace == "from-environment"


def test_a_send_rate_cap_is_read_and_left_off_by_default() -> None:
    assert load_settings({}).temporal.max_sends_per_second is None
    capped = load_settings({"DUNNING_MAX_SENDS_PER_SECOND": "12.5"})
    assert capped.temporal.max_sends_per_second == 12.5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DUNNING_MAX_SENDS_PER_SECOND", "fast"),
        ("DUNNING_MAX_SENDS_PER_SECOND", "0"),
        ("DUNNING_CONCURRENT_STARTS", "-3"),
        ("DUNNING_CONCURRENT_STARTS", "2.5"),
    ],
)
def test_a_bad_number_names_its_variable_and_what_to_do(name: str, value: str) -> None:
    with pytest.raises(
        ValueError, match=rf"{name}='{value}' is not a positive .*above 0"
    ):
        load_settings({name: value})


@pytest.mark.parametrize(
    ("flag", "sandboxed"), [("", False), ("on", True), ("0", False)]
)
def test_the_workflow_sandbox_is_off_unless_asked_for(
    flag: str, sandboxed: bool
) -> None:
    settings = load_settings({"DUNNING_WORKFLOW_SANDBOX": flag})

    assert settings.workflow_sandbox is sandboxed
