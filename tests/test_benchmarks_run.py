"""The benchmark scripts still run (tiny sizes): they are not part of the suite's
timing, but a refactor must not break them unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "args",
    [
        [
            "tests.bench.bench_windows",
            "--events", "3000", "--segments", "100",
            "--memory-segments", "500", "--memory-buckets", "3",
        ],
        ["tests.bench.bench_text", "--count", "200", "--events", "2000", "--repeats", "1"],
        ["tests.bench.bench_child", "--events", "2000", "--repeats", "1"],
        ["tests.bench.bench_stage1", "--events", "2000", "--repeats", "1"],
        ["tests.bench.bench_stage1", "--events", "1000", "--text", "--repeats", "1"],
        ["tests.bench.bench_stage2", "--events", "3000", "--segments", "300", "--repeats", "1"],
        ["tests.bench.bench_scrape", "--events", "3000", "--segments", "300", "--repeats", "1"],
        ["tests.bench.bench_codecs", "--records", "500", "--batch", "50", "--repeats", "1"],
    ],
)  # fmt: skip
def test_benchmark_runs(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "µs" in done.stdout or "events/s" in done.stdout or "loop held" in done.stdout


def test_bench_command_smoke(broker, tmp_path) -> None:
    """``nps-pipeline bench`` end to end at a tiny size on the test broker: every phase
    prints its figures, the JSON has them, and the pipeline's window counts were checked
    against the dataset's ground truth (the command exits 1 when they differ). Two rounds:
    the pipeline is run twice (fresh topics each time), the latency phase once."""
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "pipeline", "bench",
            "--events", "4000", "--segments", "300", "--partitions", "2",
            "--naive-seconds", "3", "--latency-seconds", "4", "--rounds", "2",
            "--broker", broker.bootstrap, "--json", str(out), "--compression", "lz4",
            "--setting", "NPS_BATCH_SIZE=500",
        ],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "window counts equal the ground truth" in done.stdout
    assert "lz4 batches; NPS_BATCH_SIZE=500;" in done.stdout
    figures = json.loads(out.read_text())
    assert figures["verified"] is True
    assert figures["dataset"]["records"] == 4000
    assert figures["dataset"]["valid"] + figures["dataset"]["invalid"] == 4000
    assert figures["ceiling"]["events"] == 4000
    assert figures["naive"]["events_per_s"] > 0
    first, second = figures["pipeline"]
    assert (first["round"], second["round"]) == (1, 2)
    for pipeline in (first, second):
        assert pipeline["mismatch_count"] == 0
        assert pipeline["compression"] == "lz4"
        assert pipeline["settings"] == {"NPS_BATCH_SIZE": "500"}
        assert len(pipeline["speed_check_s"]) == 2 and min(pipeline["speed_check_s"]) > 0
        assert pipeline["events_per_s"] > figures["naive"]["events_per_s"]
    median = (first["events_per_s"] + second["events_per_s"]) / 2
    assert figures["ratios"]["pipeline_over_naive"] == median / figures["naive"]["events_per_s"]
    assert f"median    {median:>10,.0f} events/s  (1 worker(s), 2 rounds)" in done.stdout
    assert figures["latency"]["scored_seen"] == figures["latency"]["events"] > 0
    assert figures["latency"]["scored_ms"]["p99"] is not None
    # the worker's /metrics was scraped as Prometheus would, once at the start of 4 s
    assert figures["latency"]["metrics_scrapes"] == 1
    assert figures["latency"]["metrics_scrape_ms_max"] > 0
    assert "1 /metrics scrape(s) meanwhile" in done.stdout


def test_cpu_split_reads_every_process_of_a_running_bench() -> None:
    """``tests.bench.cpu_split`` samples the broker, the worker and its analysis child
    while a real ``nps-pipeline bench`` runs, and the bench still verifies its counts."""
    done = subprocess.run(
        [
            sys.executable, "-m", "tests.bench.cpu_split",
            "--events", "200000", "--seconds", "1",
        ],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    processes = done.stdout.split("per process:")[1]
    rows = [line.split() for line in processes.splitlines() if line.strip()[:1].isdigit()]
    roles = {row[1] for row in rows if len(row) == 3}
    assert roles >= {"broker", "worker", "child"}, done.stdout
    worker = next(row for row in rows if len(row) == 3 and row[1] == "worker")
    assert float(worker[0].rstrip("%")) > 10.0  # at load: far from idle
    assert "window counts equal the ground truth" in done.stdout
