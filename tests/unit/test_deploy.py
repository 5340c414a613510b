"""The compose file, checked offline (no container engine runs in CI)."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from ledgerflow.settings import load_settings

COMPOSE = Path(__file__).parents[2] / "deploy" / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def test_the_stack_has_every_service_the_brief_names(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "keydb", "rabbitmq", "producer", "worker", "migrate"} <= set(services)
    assert services["keydb"]["image"].startswith("eqalpha/keydb")
    assert services["rabbitmq"]["image"] == "rabbitmq:3-management"


def test_every_dependency_condition_can_be_met(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
            if rule["condition"] == "service_completed_successfully":
                assert services[dependency].get("restart") == "no"


def test_ledgerflow_services_pass_ledgerflow_configuration(compose: dict[str, Any]) -> None:
    for name in ("migrate", "producer", "worker"):
        service = compose["services"][name]
        environment = service["environment"]
        settings = load_settings(
            **{k.removeprefix("LEDGERFLOW_").lower(): v for k, v in environment.items()}
        )
        assert "@postgres:" in settings.database_url, name
        assert "@rabbitmq:" in settings.amqp_url, name
        assert "//keydb:" in settings.redis_url, name
    assert compose["services"]["worker"]["stop_grace_period"] == "30s"
