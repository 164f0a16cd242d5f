"""The production deploy files: Prometheus rules, Alertmanager, Grafana, Dockerfile, compose.

Each file is checked with the real tool where one exists (promtool's config and rule
checks and rule unit tests, amtool, a running Alertmanager, docker-compose's own
validation) and against the rest of the project where they must agree: metric names
against the metrics contract, settings against the pipeline's Settings model, simulator
flags against the real CLI, scrape targets against compose services, mounted paths
against the repository.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from pipeline.broker import free_port
from pipeline.cli import app as cli_app
from pipeline.settings import ConfigError, load_settings
from pipeline.simulator import Incident

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PROM_DIR = DEPLOY / "prometheus"
RECORDING = PROM_DIR / "rules" / "recording.yml"
ALERTS = PROM_DIR / "rules" / "alerts.yml"
RULE_TESTS = sorted((PROM_DIR / "tests").glob("*.yml"))
AM_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "nps-overview.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
RUNBOOKS = DEPLOY / "runbooks.md"

#: The metrics contract of issue 5: what the workers expose (histograms with their series).
PIPELINE_METRICS = {
    *(
        f"nps_pipeline_{name}_total"
        for name in (
            "nps_responses",
            "nps_promoters",
            "nps_passives",
            "nps_detractors",
            "csat_responses",
            "csat_satisfied",
            "csat_score",
            "ces_responses",
            "ces_score",
            "events_consumed",
            "events_scored",
            "deadletters",
            "duplicates_dropped",
            "revisions",
            "pii_redacted",
        )
    ),
    *(
        f"nps_pipeline_window_{name}"
        for name in ("nps", "nps_lower", "nps_upper", "responses", "detractor_ratio")
    ),
    "nps_pipeline_window_segments_dropped",
    "nps_pipeline_consumer_lag_records",
    "nps_pipeline_alerts_firing",
    *(
        f"nps_pipeline_{histogram}_{suffix}"
        for histogram in ("processing_latency_seconds", "event_time_lag_seconds")
        for suffix in ("bucket", "sum", "count")
    ),
}
PROMETHEUS_BUILTINS = {"ALERTS", "up"}
PIPELINE_SERVICES = ("topics", "worker-1", "worker-2", "simulator")
SERVICES = ("kafka", *PIPELINE_SERVICES, "prometheus", "alertmanager", "grafana")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def need_tool(name: str) -> str:
    """Path of a Prometheus tool; its absence fails the test (it is part of `make tools`)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} not found: run `make tools` (apt-installs the Debian packages "
            "prometheus and prometheus-alertmanager)"
        )
    return path


def run_tool(*args: str) -> str:
    """Run a tool and return its standard output; fail the test with all it printed if it
    does not exit 0."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        pytest.fail(f"`{' '.join(args)}` exited {result.returncode}:\n{output}")
    return result.stdout


# ----------------------------------------------------------------------------- PromQL

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "offset", "bool"}
_KEYWORDS |= {"group_left", "group_right", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (not functions, labels or keywords)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _LABEL_LIST.sub("", text)
    names = set()
    for match in _IDENT.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        after = text[match.end() :].lstrip()[:1]
        if after == "(" or match.group().lower() in _KEYWORDS or before.isdigit() or before == ".":
            continue
        names.add(match.group())
    return names


def test_metric_names_finds_selectors_only():
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="b c", y=~"$s"}[$__rate_interval])))'
        " / on (job) group_left(instance) b:c:d > bool 1.5e3 unless ALERTS offset 5m"
    )
    assert metric_names(expr) == {"a_bucket", "b:c:d", "ALERTS"}


def recorded_names() -> set[str]:
    return {rule["record"] for group in load_yaml(RECORDING)["groups"] for rule in group["rules"]}


def rules_of(path: Path) -> list[dict[str, Any]]:
    return [rule for group in load_yaml(path)["groups"] for rule in group["rules"]]


# ------------------------------------------------------------------------- Prometheus


def test_prometheus_config_and_its_rule_files_are_valid():
    output = run_tool(need_tool("promtool"), "check", "config", str(PROM_DIR / "prometheus.yml"))
    assert "2 rule files found" in output


def test_rules_are_valid():
    output = run_tool(need_tool("promtool"), "check", "rules", str(RECORDING), str(ALERTS))
    assert output.count("SUCCESS") == 2


def test_rule_unit_tests_pass():
    assert len(RULE_TESTS) >= 2
    output = run_tool(need_tool("promtool"), "test", "rules", *map(str, RULE_TESTS))
    assert output.count("SUCCESS") == len(RULE_TESTS)


def test_required_recording_rules_compute_nps_from_the_counters():
    exprs = {rule["record"]: " ".join(rule["expr"].split()) for rule in rules_of(RECORDING)}
    for kind in ("responses", "promoters", "detractors"):
        name = f"dimension_segment:nps_pipeline_nps_{kind}:increase1h"
        assert exprs[name] == (
            f"sum by (dimension, segment) (increase(nps_pipeline_nps_{kind}_total[1h]))"
        )
    nps = exprs["dimension_segment:nps_pipeline_nps:1h"]
    assert nps.startswith("100 * ( dimension_segment:nps_pipeline_nps_promoters:increase1h -")
    assert nps.endswith("/ (dimension_segment:nps_pipeline_nps_responses:increase1h > 0)")


def test_rules_use_only_contract_metrics_and_recorded_series():
    known = PIPELINE_METRICS | PROMETHEUS_BUILTINS | recorded_names()
    for path in (RECORDING, ALERTS):
        for rule in rules_of(path):
            unknown = metric_names(rule["expr"]) - known
            assert not unknown, f"{path.name} {rule.get('record') or rule['alert']}: {unknown}"


def test_every_recording_rule_and_alert_is_unit_tested():
    tested_exprs: list[str] = []
    alert_cases: dict[str, set[bool]] = {}
    for path in RULE_TESTS:
        for case in load_yaml(path)["tests"]:
            tested_exprs += [t["expr"] for t in case.get("promql_expr_test", [])]
            for check in case.get("alert_rule_test", []):
                fires = bool(check.get("exp_alerts"))
                alert_cases.setdefault(check["alertname"], set()).add(fires)
    selected = set().union(*map(metric_names, tested_exprs))
    assert recorded_names() - selected == set()
    for rule in rules_of(ALERTS):
        assert alert_cases.get(rule["alert"]) == {True, False}, rule["alert"]


def test_alerts_have_for_severity_and_annotations_with_a_runbook_section():
    headings = {
        line.removeprefix("## ").strip()
        for line in RUNBOOKS.read_text().splitlines()
        if line.startswith("## ")
    }
    rules = rules_of(ALERTS)
    assert {r["alert"] for r in rules} >= {
        "NPSDropDepartment",
        "NPSPipelineWorkerDown",
        "NPSPipelineNoEventsConsumed",
        "NPSPipelineConsumerLagGrowing",
        "NPSPipelineDeadLetterSurge",
    }
    for rule in rules:
        assert re.fullmatch(r"\d+m", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"page", "ticket"}
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        path, _, anchor = annotations["runbook_url"].partition("#")
        assert path == "deploy/runbooks.md" and anchor in headings, rule["alert"]


def test_scrape_targets_are_the_compose_services_on_their_ports():
    config = load_yaml(PROM_DIR / "prometheus.yml")
    services = load_yaml(COMPOSE)["services"]
    assert config["global"]["scrape_interval"] == "15s"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for sc in jobs["nps-pipeline"]["static_configs"] for t in sc["targets"]]
    assert targets == ["worker-1:6066", "worker-2:6066"]
    for target in targets:
        host, port = target.split(":")
        assert host in services
        assert [p.split(":")[1] for p in services[host]["ports"]] == [port]
    (alerting,) = config["alerting"]["alertmanagers"]
    assert alerting["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert "9093:9093" in services["alertmanager"]["ports"]


# ----------------------------------------------------------------------- Alertmanager


def test_alertmanager_config_passes_amtool():
    run_tool(need_tool("amtool"), "check-config", str(AM_CONFIG))


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=NPSDropDepartment", "severity=page"], "on-call"),
        (["alertname=NPSDropSegment", "severity=ticket"], "ticketing"),
        (["alertname=Unlabelled"], "ticketing"),
    ],
)
def test_alertmanager_routes_by_severity(labels, receiver):
    output = run_tool(
        need_tool("amtool"), "config", "routes", "test", f"--config.file={AM_CONFIG}", *labels
    )
    assert output.split() == [receiver]


class _Hooks(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, Any]]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook_server() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """A loopback HTTP server recording every webhook POST as (path, JSON body)."""
    received: list[tuple[str, dict[str, Any]]] = []
    handler = type("Hooks", (_Hooks,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


@pytest.fixture
def alertmanager(tmp_path: Path, webhook_server) -> Iterator[str]:
    """The real Alertmanager on deploy/alertmanager/alertmanager.yml, its webhook receivers
    pointed at the loopback server (same paths), everything else unchanged."""
    binary = need_tool("prometheus-alertmanager")
    hooks_url, _ = webhook_server
    config = load_yaml(AM_CONFIG)
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = hooks_url + "/" + hook["url"].split("/", 3)[3]
    (tmp_path / "am.yml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{free_port()}"
    with (tmp_path / "am.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'am.yml'}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address={url.removeprefix('http://')}",
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 20
            while not _ready(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"alertmanager did not come up:\n{(tmp_path / 'am.log').read_text()}"
                    )
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def _ready(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/-/ready", timeout=1) as r:
        return r.status == 200
    return False


@pytest.mark.integration
def test_alertmanager_inhibits_and_delivers_pages_to_the_webhook(alertmanager, webhook_server):
    _, received = webhook_server
    alerts = {
        "drop": {"alertname": "NPSDropDepartment", "severity": "page",
                 "dimension": "department", "segment": "billing"},
        "own-ticket": {"alertname": "NpsDropPipeline", "severity": "ticket",
                       "dimension": "department", "segment": "billing"},
        "worker-down": {"alertname": "NPSPipelineWorkerDown", "severity": "page",
                        "job": "nps-pipeline", "instance": "worker-1:6066"},
        "late": {"alertname": "NPSPipelineLateEvents", "severity": "ticket", "job": "nps-pipeline"},
        "no-events": {"alertname": "NPSPipelineNoEventsConsumed", "severity": "page",
                      "job": "nps-pipeline"},
        "lag": {"alertname": "NPSPipelineConsumerLagGrowing", "severity": "page",
                "job": "nps-pipeline", "topic": "feedback.raw", "partition": "0"},
    }  # fmt: skip
    body = [
        {"labels": labels, "annotations": {"runbook_url": "deploy/runbooks.md#nps-drop"}}
        for labels in alerts.values()
    ]
    request = urllib.request.Request(
        f"{alertmanager}/api/v2/alerts",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200
    # A page on department=billing mutes the ticket on the same segment; no events consumed
    # mutes the lag alert; a page without segment labels mutes no segment-less ticket.
    # Alertmanager's inhibitor learns of new alerts from its own subscription, a moment after
    # the POST returns (CI once read before it had: nothing inhibited), so the state is polled.
    expected = {"NpsDropPipeline", "NPSPipelineConsumerLagGrowing"}
    deadline = time.monotonic() + 10
    while True:
        with urllib.request.urlopen(f"{alertmanager}/api/v2/alerts", timeout=5) as resp:
            state = {a["labels"]["alertname"]: a["status"] for a in json.load(resp)}
        inhibited = {name for name, status in state.items() if status["inhibitedBy"]}
        if inhibited == expected or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert set(state) == {labels["alertname"] for labels in alerts.values()}
    assert inhibited == expected

    deadline = time.monotonic() + 30  # pages wait 10 s (group_wait) before the first send
    while time.monotonic() < deadline and len(received) < 3:
        time.sleep(0.2)
    pages = sorted(received, key=lambda item: item[1]["groupLabels"]["alertname"])
    assert [path for path, _ in pages] == ["/hooks/nps-page"] * 3
    assert [p["groupLabels"] for _, p in pages] == [
        {"alertname": "NPSDropDepartment", "dimension": "department", "segment": "billing"},
        {"alertname": "NPSPipelineNoEventsConsumed"},
        {"alertname": "NPSPipelineWorkerDown"},
    ]
    assert pages[0][1]["receiver"] == "on-call"
    assert pages[0][1]["commonAnnotations"]["runbook_url"] == "deploy/runbooks.md#nps-drop"


# ---------------------------------------------------------------------------- Grafana


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def exprs() -> list[str]:
    return [t["expr"] for p in panels() for t in p["targets"]]


def datasource_uid() -> str:
    (source,) = load_yaml(DATASOURCES)["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    return source["uid"]


def test_dashboard_has_uid_and_dimension_and_segment_variables():
    board = dashboard()
    assert board["uid"] == "nps-overview" and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert set(variables) == {"dimension", "segment"}
    for name, variable in variables.items():
        assert variable["datasource"] == {"type": "prometheus", "uid": datasource_uid()}
        assert re.fullmatch(rf"label_values\(.+, {name}\)", variable["definition"])
        assert variable["query"]["query"] == variable["definition"]
    assert '{dimension="$dimension"}' in variables["segment"]["definition"]


def test_every_panel_queries_the_provisioned_datasource():
    uid = datasource_uid()
    board_panels = panels()
    assert len({p["id"] for p in dashboard()["panels"]}) == len(dashboard()["panels"])
    for panel in board_panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid and target["expr"].strip(), panel["title"]


def test_dashboard_panels_do_not_overlap():
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_dashboard_uses_only_known_metrics_and_variables():
    known = PIPELINE_METRICS | PROMETHEUS_BUILTINS | recorded_names()
    for expr in exprs():
        assert metric_names(expr) <= known, (expr, metric_names(expr) - known)
        assert set(re.findall(r"\$(\w+)", expr)) <= {"dimension", "segment", "__rate_interval"}


def test_dashboard_queries_are_valid_promql(tmp_path: Path):
    substitutions = {"$__rate_interval": "1m", "$dimension": "department", "$segment": ".*"}
    rules = []
    for number, expr in enumerate(exprs()):
        for variable, value in substitutions.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:query_{number}:check", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    output = run_tool(need_tool("promtool"), "check", "rules", str(path))
    assert f"{len(rules)} rules found" in output


def test_dashboard_covers_the_panels_of_issue_5():
    joined = "\n".join(exprs())
    for dimension in ("department", "product", "channel"):
        for series in ("nps", "nps_lower", "nps_upper"):
            assert (
                f'dimension_segment:nps_pipeline_{series}:1h{{dimension="{dimension}"}}' in joined
            )
    for needle in (
        "dimension_segment:nps_pipeline_nps_detractors_per_responses:ratio1h",  # detractors
        "rate(nps_pipeline_nps_responses_total",  # volume
        'ALERTS{alertstate="firing"}',  # active alerts
        "nps_pipeline_alerts_firing",
        "bottomk(",  # worst segments
        "rate(nps_pipeline_events_consumed_total",  # pipeline health
        "rate(nps_pipeline_deadletters_total",
        "nps_pipeline_consumer_lag_records",
        "histogram_quantile(0.5, sum by (le) (rate(nps_pipeline_processing_latency_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(nps_pipeline_processing_latency_seconds_bucket",
        "nps_pipeline_event_time_lag_seconds_bucket",
    ):
        assert needle in joined, needle


def test_grafana_provisioning_points_at_the_mounted_dashboards():
    (provider,) = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    mounts = dict(v.split(":")[:2] for v in load_yaml(COMPOSE)["services"]["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


# ----------------------------------------------------------------- compose, Dockerfile


def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


def test_compose_has_every_service_with_its_image_or_build():
    services = compose()["services"]
    assert set(services) == set(SERVICES)
    assert services["kafka"]["image"] == "apache/kafka:3.8.0"
    roles = services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    assert set(roles.split(",")) == {"broker", "controller"}  # KRaft, no ZooKeeper
    for name in PIPELINE_SERVICES:
        assert services[name]["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}
    for name, image in (("prometheus", "prom/prometheus:"), ("alertmanager", "prom/alertmanager:"),
                        ("grafana", "grafana/grafana:")):  # fmt: skip
        assert services[name]["image"].startswith(image)
    grafana_env = services["grafana"]["environment"]
    assert grafana_env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert grafana_env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_compose_healthchecks_dependencies_and_profiles():
    services = compose()["services"]
    for name in ("kafka", "worker-1", "worker-2", "prometheus", "alertmanager", "grafana"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    assert services["topics"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    for name in ("worker-1", "worker-2", "simulator"):
        assert services[name]["depends_on"] == {
            "topics": {"condition": "service_completed_successfully"}
        }
    assert services["simulator"]["profiles"] == ["simulator"]
    assert [n for n, s in services.items() if "profiles" in s] == ["simulator"]


def test_compose_host_ports_are_the_documented_ones():
    services = compose()["services"]
    published = {
        name: [port.split(":")[0] for port in service.get("ports", [])]
        for name, service in services.items()
    }
    assert published == {
        "kafka": ["9092"], "topics": [], "worker-1": ["6066"], "worker-2": ["6067"],
        "simulator": [], "prometheus": ["9090"], "alertmanager": ["9093"], "grafana": ["3000"],
    }  # fmt: skip
    header = COMPOSE.read_text().split("\n\n")[0]
    for port in ("9092", "6066", "6067", "9090", "9093", "3000"):
        assert re.search(rf"^#\s+{port}\s", header, re.MULTILINE), port


def test_every_path_compose_mounts_or_builds_from_exists():
    paths = []
    for service in compose()["services"].values():
        if "build" in service:
            paths.append(ROOT / service["build"]["context"])
            paths.append(ROOT / service["build"]["context"] / service["build"]["dockerfile"])
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                paths.append(ROOT / source)
    assert len(paths) >= 12
    missing = [str(p.relative_to(ROOT)) for p in paths if not p.exists()]
    assert missing == []


def test_compose_settings_are_valid_pipeline_settings():
    services = compose()["services"]
    for name in PIPELINE_SERVICES:
        env = services[name]["environment"]
        assert all(key.startswith("NPS_") for key in env), name
        try:
            settings = load_settings(**{key[4:].lower(): value for key, value in env.items()})
        except ConfigError as exc:
            pytest.fail(f"{name}: {exc.message}")
        assert settings.bootstrap_servers == ["kafka:9092"]
    for name in ("worker-1", "worker-2"):
        env = services[name]["environment"]
        assert env["NPS_WEB_HOST"] == name  # how the other worker reaches it
        assert env["NPS_ALERTMANAGER_URLS"] == "http://alertmanager:9093"


def test_compose_commands_are_real_cli_commands_with_real_options():
    cli = typer.main.get_command(cli_app)
    services = compose()["services"]
    for name in PIPELINE_SERVICES:
        command, *args = services[name]["command"]
        assert command in cli.commands, name  # type: ignore[attr-defined]
        options = {opt for p in cli.commands[command].params for opt in p.opts}  # type: ignore[attr-defined]
        flags = [a for a in args if a.startswith("--")]
        assert set(flags) <= options, (name, set(flags) - options)
    simulate = services["simulator"]["command"]
    assert simulate[0] == "simulate"
    incident = Incident.parse(simulate[simulate.index("--incident") + 1])
    assert (incident.dimension, incident.value, incident.detractor_share) == (
        "department",
        "billing",
        0.6,
    )


def test_compose_file_passes_docker_compose_validation():
    if shutil.which("docker-compose"):
        command = ["docker-compose"]
    elif _docker_compose_plugin():
        command = ["docker", "compose"]
    else:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    run_tool(*command, "-f", str(COMPOSE), "--profile", "simulator", "config", "-q")


def _docker_compose_plugin() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return probe.returncode == 0


def test_dockerfile_builds_a_non_root_worker_image_with_a_healthcheck():
    text = DOCKERFILE.read_text()
    instructions = [
        line for line in re.sub(r"\\\n\s*", " ", text).splitlines() if line and line[0] != "#"
    ]
    assert instructions[0] == "FROM python:3.11-slim"
    assert 'ENTRYPOINT ["nps-pipeline"]' in instructions
    assert 'CMD ["worker"]' in instructions
    assert "EXPOSE 6066" in instructions
    (user,) = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert user not in {"root", "0"}
    (health,) = [line for line in instructions if line.startswith("HEALTHCHECK ")]
    assert '"python", "-c"' in health and "/healthz" in health and "curl" not in health
    assert any(re.match(r"RUN pip install \.( |$)", line) for line in instructions)
    # Everything the image copies exists and is let through the context's ignore file.
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for line in instructions:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
                assert f"!{source.rstrip('/')}" in {i.rstrip("/") for i in ignore}, source
