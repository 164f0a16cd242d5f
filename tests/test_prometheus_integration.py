"""A real Prometheus server scrapes a worker fed by the simulator; the recording rules
shipped in deploy/prometheus compute the same NPS as the pipeline's own HTTP API."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.broker import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
RECORDING_RULES = ROOT / "deploy" / "prometheus" / "rules" / "recording.yml"


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict]:
        params = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{params}", timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def values(self, expr: str, label: str) -> dict[str, float]:
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(expr)}


@pytest.fixture
def prometheus(tmp_path: Path, start_worker) -> Iterator[tuple[Prometheus, object]]:  # type: ignore[no-untyped-def]
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: run `make tools` (apt-get install prometheus)")
    worker = start_worker()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{RECORDING_RULES}']\n"
        "scrape_configs:\n"
        "  - job_name: nps-pipeline\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{worker.web_port}']}}]\n"
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Prometheus(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
            with contextlib.suppress(OSError):
                if server.values('up{job="nps-pipeline"}', "job") == {"nps-pipeline": 1.0}:
                    break
            time.sleep(0.5)
        else:
            raise AssertionError("Prometheus never scraped the worker")
        yield server, worker
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_recording_rule_nps_equals_the_pipelines_own(prometheus, worker_env) -> None:  # type: ignore[no-untyped-def]
    server, worker = prometheus
    count = 1500
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "simulate",
            "--count",
            str(count),
            "--rate",
            "0",
            "--seed=11",
        ],
        env=worker_env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    # wait until Prometheus has scraped the worker after it consumed everything, and the
    # rules have been evaluated on that scrape
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        consumed = server.values("sum(nps_pipeline_events_consumed_total)", "")
        if consumed.get("") == count:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"Prometheus saw {consumed} consumed events, expected {count}")
    time.sleep(3)  # a few more scrapes and rule evaluations (1 s each)

    nps_rule = server.values(
        'dimension_segment:nps_pipeline_nps:1h{dimension="department"}', "segment"
    )
    responses_rule = server.values(
        'dimension_segment:nps_pipeline_nps_responses:increase1h{dimension="department"}',
        "segment",
    )
    listing = json.loads(worker.get("/api/v1/segments?dimension=department&window=1h&limit=100"))
    pipeline = {row["fields"]["department"]: row["stats"] for row in listing["segments"]}
    assert len(pipeline) >= 3, listing
    assert set(nps_rule) == set(pipeline)
    total = 0
    for department, stats in pipeline.items():
        assert nps_rule[department] == pytest.approx(stats["nps"], abs=1e-9), department
        # increase() extrapolates to the window's edges, but by the same factor for the
        # three counters of a segment, so the ratio is exact and the count is close
        assert responses_rule[department] >= stats["responses"] * 0.99
        total += stats["responses"]
    overall = server.values('dimension_segment:nps_pipeline_nps:1h{dimension="overall"}', "segment")
    own = json.loads(worker.get("/api/v1/segments/overall"))
    own_1h = own["windows"]["1h"]
    assert own_1h["responses"] == total
    assert overall["all"] == pytest.approx(own_1h["nps"], abs=1e-9)
