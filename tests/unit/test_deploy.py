"""Deployment files, validated offline (no container engine or cluster runs in CI)."""

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ledgerflow.settings import load_settings

DEPLOY = Path(__file__).parents[2] / "deploy"
COMPOSE_FILES = [DEPLOY / "compose.yaml", DEPLOY / "compose.dev.yaml"]
OVERLAYS = {"dev": 1, "staging": 2, "prod": 2}  # worker replicas
KUBERNETES_VERSION = "1.30.0"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILES[0].read_text())
    return document


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_files_follow_the_compose_specification(path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_stack_has_every_service_the_brief_names(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {
        "postgres",
        "keydb",
        "rabbitmq",
        "producer",
        "migrate",
        "worker",
        "worker-standby",
        "api",
    } <= set(services)
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
    instances = set()
    for name in ("migrate", "producer", "worker", "worker-standby", "api"):
        environment = compose["services"][name]["environment"]
        settings = load_settings(
            **{k.removeprefix("LEDGERFLOW_").lower(): v for k, v in environment.items()}
        )
        assert "@postgres:" in settings.database_url, name
        assert "@rabbitmq:" in settings.amqp_url, name
        assert "//keydb:" in settings.redis_url, name
        instances.add(settings.instance)
    for worker in ("worker", "worker-standby"):
        service = compose["services"][worker]
        assert service["stop_grace_period"] == "30s" and service["restart"] == "unless-stopped"
        assert "healthz" in " ".join(service["healthcheck"]["test"])
    assert (
        compose["services"]["worker"]["environment"]["LEDGERFLOW_INSTANCE"]
        != compose["services"]["worker-standby"]["environment"]["LEDGERFLOW_INSTANCE"]
    )


def render(overlay: str) -> list[dict[str, Any]]:
    if not shutil.which("kubectl"):
        pytest.skip("kubectl (with its built-in kustomize) is not installed: overlays not rendered")
    result = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_overlay_validates_against_the_kubernetes_schema(overlay: str) -> None:
    for resource in render(overlay):
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(("overlay", "replicas"), OVERLAYS.items())
def test_workers_are_probed_drained_and_protected(overlay: str, replicas: int) -> None:
    resources = {(r["kind"], r["metadata"]["name"]): r for r in render(overlay)}
    worker = resources[("Deployment", "ledgerflow-worker")]
    assert worker["spec"]["replicas"] == replicas
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = worker["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    # The pause, then the worker's drain (10 s at most), must fit in the grace period.
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + 10 + 10
    sources = {next(iter(s.values()))["name"] for s in container["envFrom"]}
    assert sources == {"ledgerflow-config", "ledgerflow-secrets"}
    assert ("PodDisruptionBudget", "ledgerflow-worker") in resources
    assert ("Job", "ledgerflow-migrate") in resources
    assert {r["metadata"].get("namespace") for r in resources.values()} == {
        {"dev": "ledgerflow-dev", "staging": "ledgerflow-staging", "prod": "ledgerflow"}[overlay]
    }


def test_alert_rules_refer_only_to_metrics_ledgerflow_exposes() -> None:
    import re

    from ledgerflow.runtime.metrics import ApiMetrics, WorkerMetrics
    from ledgerflow.web.metrics import render

    exposed = "".join(
        render(metrics.registry).decode() for metrics in (WorkerMetrics(), ApiMetrics())
    )
    names = set(re.findall(r"^(ledgerflow_\w+?)(?:\{| )", exposed, re.MULTILINE))
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    [group] = rules["groups"]
    assert group["rules"]
    for rule in group["rules"]:
        assert rule["alert"].startswith("Ledgerflow") and rule["annotations"]["summary"]
        assert rule["labels"]["severity"] in {"page", "warn"}
        for metric in re.findall(r"ledgerflow_\w+", rule["expr"]):
            assert metric in names, f"{rule['alert']} uses {metric}, which is not exposed"


@pytest.mark.parametrize(("overlay", "min_api"), [("dev", 1), ("staging", 1), ("prod", 2)])
def test_the_api_is_stateless_probed_and_autoscaled(overlay: str, min_api: int) -> None:
    resources = {(r["kind"], r["metadata"]["name"]): r for r in render(overlay)}
    api = resources[("Deployment", "ledgerflow-api")]
    [container] = api["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["api"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    service = resources[("Service", "ledgerflow-api")]
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    autoscaler = resources[("HorizontalPodAutoscaler", "ledgerflow-api")]
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == "ledgerflow-api"
    assert autoscaler["spec"]["minReplicas"] == min_api <= autoscaler["spec"]["maxReplicas"]
