import pytest

from ledgerflow.settings import ConfigError, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("LEDGERFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]


def test_defaults_point_at_local_services() -> None:
    settings = load_settings()
    assert settings.queue == "incoming_transactions"
    assert settings.database_url.startswith("postgresql://")
    assert settings.amqp_url.startswith("amqp://")
    assert settings.redis_url.startswith("redis://")
    assert settings.publish_interval == 60


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LEDGERFLOW_DATABASE_URL", "mysql://localhost/x"),
        ("LEDGERFLOW_AMQP_URL", "http://localhost"),
        ("LEDGERFLOW_REDIS_URL", "localhost:6379"),
        ("LEDGERFLOW_PUBLISH_INTERVAL", "7"),
        ("LEDGERFLOW_BATCH_SIZE", "zero"),
        ("LEDGERFLOW_QUEUE", ""),
        ("LEDGERFLOW_LOG_LEVEL", "loud"),
        ("LEDGERFLOW_DATABASE_READ_URLS", "postgresql://r1/x, mysql://r2/x"),
        ("LEDGERFLOW_READ_REPLICA_MAX_LAG", "0"),
        ("LEDGERFLOW_TREASURY_BATCH_WAIT", "-1"),
    ],
)
def test_bad_configuration_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert variable in str(raised.value)


def test_read_urls_are_split_on_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGERFLOW_DATABASE_READ_URLS", " postgresql://r1/x ,,postgres://r2/x")
    assert load_settings().read_urls() == ["postgresql://r1/x", "postgres://r2/x"]
    monkeypatch.delenv("LEDGERFLOW_DATABASE_READ_URLS")
    assert load_settings().read_urls() == []


def test_a_dotenv_file_is_honoured_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    from pathlib import Path

    Path(".env").write_text("LEDGERFLOW_QUEUE=from_dotenv\nLEDGERFLOW_BATCH_SIZE=7\n")
    monkeypatch.setenv("LEDGERFLOW_BATCH_SIZE", "9")
    settings = load_settings()
    assert settings.queue == "from_dotenv"
    assert settings.batch_size == 9
