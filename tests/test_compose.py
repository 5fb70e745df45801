"""compose/: the file parses, and everything its commands name exists (no Docker engine needed).

Each relaybus command in docker-compose.yml is parsed by the real argument parser, every ``module:Class``
is imported from the image's working directory (the repository root here) and must be an Agent, and every
plan file must load. The Dockerfile must copy only paths that exist and run relaybus.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from relaybus.agents import Agent
from relaybus.cli import build_parser
from relaybus.orchestrator import load_plan
from relaybus.telemetry import WorkerMetrics

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose" / "docker-compose.yml"
DOCKERFILE = ROOT / "compose" / "Dockerfile"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def relaybus_commands(compose: dict[str, Any]) -> dict[str, list[str]]:
    """Service -> its command as relaybus arguments (the image's entrypoint is ``relaybus``)."""
    out = {}
    for name, service in compose["services"].items():
        if service.get("image", "").startswith("relaybus") or "build" in service:
            command = service["command"]
            assert isinstance(command, list), f"{name}: use the list form of command (no shell string)"
            out[name] = [str(part) for part in command]
    return out


def test_rabbitmq_has_the_management_ui_and_a_healthcheck(compose: dict[str, Any]) -> None:
    rabbit = compose["services"]["rabbitmq"]
    assert "management" in rabbit["image"]
    assert "15672:15672" in rabbit["ports"]
    assert rabbit["healthcheck"]["test"][0] == "CMD"


def test_workers_scale_and_wait_for_a_healthy_broker(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert "container_name" not in worker  # a fixed name would make --scale impossible
    assert not any(":" in str(p) for p in worker.get("ports", []))  # nor published ports
    assert worker["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    assert worker["command"][0] == "worker"
    orchestrator = compose["services"]["orchestrator"]
    assert orchestrator["command"][0] == "run"
    assert orchestrator["depends_on"]["worker"]["condition"] == "service_healthy"


def test_every_relaybus_command_parses(compose: dict[str, Any]) -> None:
    commands = relaybus_commands(compose)
    assert {"worker", "orchestrator"} <= set(commands)
    parser = build_parser()
    for name, service in compose["services"].items():
        check = service.get("healthcheck", {}).get("test", [])
        if check[1:2] == ["relaybus"]:
            commands[f"{name} healthcheck"] = check[2:]
    for name, argv in commands.items():
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{name}: `relaybus {' '.join(argv)}` does not parse")


def test_every_module_class_names_an_existing_agent(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))  # the image's working directory holds examples/
    specs = [
        p for argv in relaybus_commands(compose).values() for p in argv if re.fullmatch(r"[\w.]+:[\w.]+", p)
    ]
    assert len(specs) >= 5
    for spec in specs:
        module_name, _, attribute = spec.partition(":")
        module = importlib.import_module(module_name)
        assert hasattr(module, attribute), f"{spec}: module {module_name} has no {attribute}"
        target = getattr(module, attribute)
        assert isinstance(target, type), f"{spec} is not a class"
        assert issubclass(target, Agent), f"{spec} is not an Agent class"
    assert {spec.split(".")[0] for spec in specs} == {"relaybus", "examples"}


def test_every_plan_a_command_runs_exists_and_loads(compose: dict[str, Any]) -> None:
    plans = [argv[1] for argv in relaybus_commands(compose).values() if argv[0] == "run"]
    assert plans
    for plan in plans:
        assert load_plan(ROOT / plan).tasks


def test_the_dockerfile_copies_existing_paths_and_runs_relaybus() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    copies = [line.split()[1:-1] for line in lines if line.startswith("COPY ")]
    assert copies
    for sources in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
    assert 'ENTRYPOINT ["relaybus"]' in lines
    assert any(line.startswith("USER ") and "root" not in line for line in lines)


def test_the_compose_file_documents_how_to_scale() -> None:
    assert "--scale worker=" in COMPOSE.read_text()


# -- observability: Prometheus, Grafana, the OpenTelemetry collector ---------------------------------------

COMPOSE_DIR = COMPOSE.parent


def test_every_file_a_service_mounts_exists(compose: dict[str, Any]) -> None:
    mounts = [
        str(volume).split(":")[0]
        for service in compose["services"].values()
        for volume in service.get("volumes", [])
        if str(volume).startswith("./")
    ]
    assert len(mounts) >= 4
    for source in mounts:
        assert (COMPOSE_DIR / source).exists(), f"{source}: mounted but not in compose/"


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_prometheus_scrapes_every_metrics_port_the_relaybus_services_open(compose: dict[str, Any]) -> None:
    services = compose["services"]
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    targets: set[tuple[str, int]] = set()
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            targets |= {(name, int(sd["port"])) for name in sd["names"]}
        for static in job.get("static_configs", []):
            targets |= {(t.split(":")[0], int(t.split(":")[1])) for t in static["targets"]}
    served = {
        (name, int(option(argv, "--metrics-port")))
        for name, argv in relaybus_commands(compose).items()
        if "--metrics-port" in argv
    }
    assert {"worker", "orchestrator"} <= {name for name, _ in served}
    assert served == targets
    for name, port in served:
        assert option(relaybus_commands(compose)[name], "--metrics-host") == "0.0.0.0"
        assert str(port) in services[name]["expose"]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((COMPOSE_DIR / "grafana" / "dashboards" / "relaybus.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_the_grafana_dashboard_shows_only_metrics_relaybus_exports() -> None:
    text = WorkerMetrics().render().decode()
    exported = set(re.findall(r"^# TYPE (\w+) (\w+)", text, re.M))
    names = set()
    for name, kind in exported:
        names |= {name, f"{name}_total"} if kind == "counter" else {name}
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    exprs = dashboard_exprs()
    used = {m for expr in exprs for m in re.findall(r"\brelaybus_\w+", expr)}
    assert used <= names, f"the dashboard queries metrics nobody exports: {used - names}"
    for wanted in (
        "relaybus_tasks_total",
        "relaybus_task_duration_seconds_bucket",
        "relaybus_llm_tokens_total",
        "relaybus_tasks_in_flight",
        "relaybus_dead_letters_total",
    ):
        assert wanted in used
    assert any("histogram_quantile(0.99" in e for e in exprs)
    assert any("histogram_quantile(0.5" in e for e in exprs)


def test_grafana_is_provisioned_with_the_prometheus_source_the_dashboard_names(
    compose: dict[str, Any],
) -> None:
    source = yaml.safe_load((COMPOSE_DIR / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (datasource,) = source["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]
    dashboard = json.loads((COMPOSE_DIR / "grafana" / "dashboards" / "relaybus.json").read_text())
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {datasource["uid"]}
    provider = yaml.safe_load((COMPOSE_DIR / "grafana/provisioning/dashboards/relaybus.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert any(str(v).endswith(f":{path}:ro") for v in compose["services"]["grafana"]["volumes"])


def test_spans_go_to_the_collector_whose_pipeline_is_complete(compose: dict[str, Any]) -> None:
    environment = compose["x-relaybus"]["environment"]
    endpoint = environment["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert endpoint == "http://otel-collector:4318"
    assert environment["OTEL_TRACES_EXPORTER"] == "otlp"
    assert "4318" in compose["services"]["otel-collector"]["expose"]
    config = yaml.safe_load((COMPOSE_DIR / "otel-collector.yaml").read_text())
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    pipeline = config["service"]["pipelines"]["traces"]
    assert set(pipeline["receivers"]) <= set(config["receivers"])
    assert set(pipeline["processors"]) <= set(config["processors"])
    assert set(pipeline["exporters"]) <= set(config["exporters"])
    jaeger = config["exporters"]["otlp/jaeger"]["endpoint"].split(":")[0]
    assert jaeger in compose["services"]


def test_the_image_has_the_otel_extra() -> None:
    assert 'pip install ".[otel]"' in DOCKERFILE.read_text()


CLUSTER = ROOT / "compose" / "cluster.yml"


def test_the_cluster_file_runs_three_rabbitmq_nodes_with_one_cookie_that_find_each_other() -> None:
    data = yaml.safe_load(CLUSTER.read_text())
    nodes = {name: s for name, s in data["services"].items() if name.startswith("rabbitmq-")}
    assert sorted(nodes) == ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3"]
    assert len({s["environment"]["RABBITMQ_ERLANG_COOKIE"] for s in nodes.values()}) == 1
    conf = (CLUSTER.parent / data["configs"]["rabbitmq-conf"]["file"]).read_text()
    for name, service in nodes.items():
        assert f"rabbit@{service['hostname']}" in conf, f"{name} is not in the peer discovery list"
    assert "consumer_timeout" in conf


def test_the_cluster_files_relaybus_services_name_every_node_and_parse() -> None:
    data = yaml.safe_load(CLUSTER.read_text())
    commands = relaybus_commands(data)
    assert {"worker", "orchestrator"} <= set(commands)
    from relaybus.bus.amqp_cluster import split_urls

    url = data["services"]["worker"]["environment"]["RELAYBUS_AMQP_URL"]
    assert [u.split("@")[1] for u in split_urls(url)] == [f"rabbitmq-{i}:5672/" for i in (1, 2, 3)]
    parser = build_parser()
    for name, argv in commands.items():
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{name}: `relaybus {' '.join(argv)}` does not parse")
    for depends in ("rabbitmq-1", "rabbitmq-2", "rabbitmq-3"):
        assert data["services"]["worker"]["depends_on"][depends]["condition"] == "service_healthy"
