"""How ``nps-pipeline bench`` summarises repeated, interleaved pipeline runs
(``--rounds``): the median per worker count, and the scaling as the median of each
round's own ratio (a ratio of two neighbouring runs, not of two medians); and the
checks of its ``--workers`` and ``--rounds`` options."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline.bench.run import (
    Figures,
    medians,
    pipeline_rate,
    pipeline_ratios,
    report,
    round_scaling,
    speed_check,
    speed_note,
)
from pipeline.cli import app


def _run(workers: int, rate: float, round_: int) -> dict[str, Any]:
    return {
        "workers": workers,
        "events_per_s": rate,
        "round": round_,
        "ready_rss_mib": [100.0] * workers,
        "end_rss_mib": [200.0] * workers,
        "peak_rss_mib": [210.0] * workers,
        "rss_per_10k_segments_mib": 100.0,
        "mismatch_count": 0,
    }


# the machine slows in round 2 and recovers in round 3: each round's ratio stays ~1.6-1.7
RUNS = [
    _run(1, 13_000, 1), _run(2, 21_000, 1),
    _run(1, 10_000, 2), _run(2, 17_000, 2),
    _run(1, 12_500, 3), _run(2, 20_000, 3),
]  # fmt: skip


def _report(runs: list[dict[str, Any]]) -> str:
    """The bench's printed report of ``runs`` (no naive baseline, no latency phase)."""
    figures = Figures(
        started_at="2026-11-26T10:00:00+00:00",
        machine={"cpu": "test", "cores": 2, "python": "3.11", "git": "abc"},
        config={},
        dataset={"records": 1000, "invalid": 10, "segments": 300},
        ceiling={"events_per_s": 250_000.0},
        pipeline=runs,
        verified=True,
    )
    figures.ratios = pipeline_ratios(runs, {}, figures.ceiling)
    return report(figures)


def test_medians_per_worker_count_in_run_order() -> None:
    assert medians(RUNS) == {1: 12_500, 2: 20_000}


def test_each_rounds_ratio_is_against_that_rounds_first_count() -> None:
    assert round_scaling(RUNS) == [
        {1: 1.0, 2: pytest.approx(21_000 / 13_000)},
        {1: 1.0, 2: pytest.approx(1.7)},
        {1: 1.0, 2: pytest.approx(1.6)},
    ]


def test_scaling_is_the_median_of_the_rounds_ratios() -> None:
    ratios = pipeline_ratios(RUNS, {"events_per_s": 50.0}, {"events_per_s": 250_000.0})
    # median of 1.615, 1.7, 1.6 -- not the ratio of the medians (20,000 / 12,500 = 1.6)
    assert ratios["scaling"] == {"1": 1.0, "2": pytest.approx(21_000 / 13_000)}
    assert ratios["pipeline_over_naive"] == pytest.approx(12_500 / 50)
    assert ratios["pipeline_over_ceiling"] == pytest.approx(0.05)
    assert [r["2"] for r in ratios["scaling_rounds"]] == [
        pytest.approx(21_000 / 13_000), pytest.approx(1.7), pytest.approx(1.6)
    ]  # fmt: skip


def test_one_worker_count_has_no_scaling() -> None:
    ratios = pipeline_ratios(RUNS[::2], {}, {"events_per_s": 250_000.0})
    assert "scaling" not in ratios
    assert ratios["pipeline_over_naive"] is None
    assert ratios["pipeline_over_ceiling"] == pytest.approx(12_500 / 250_000)


def test_report_lists_every_run_the_medians_and_each_rounds_ratio() -> None:
    text = _report(RUNS)
    assert "(round 2, 1 worker(s)" in text
    assert "median        12,500 events/s  (1 worker(s), 3 rounds)" in text
    assert "median        20,000 events/s  (2 worker(s), 3 rounds)" in text
    assert (
        "scaling   1 workers 1.00x, 2 workers 1.62x "
        "(median over 3 rounds; each round: 2 workers 1.62x / 1.70x / 1.60x)"
    ) in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "1,1"], "repeats a worker count"),
        (["--workers", "1,0"], "positive integers"),
        (["--workers", "one"], "not a comma-separated list of integers"),
        (["--setting", "NPS_BATCH_SIZE"], "expected NAME=VALUE"),
        (["--setting", "NPS_BATCH_SIZE=many"], "valid integer"),
        (["--setting", "NPS_BATCH_SIZE=0"], "should be greater than"),
        (["--setting", "NPS_NO_SUCH_THING=1"], "is not a setting"),
        (["--setting", "NPS_TOPIC_RAW=x"], "set by the benchmark itself"),
        (["--setting", "compression=zstd"], "--compression)"),
    ],
)
def test_bench_rejects_bad_options_before_starting_anything(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["bench", *args])
    assert result.exit_code == 2
    # the error box wraps lines and draws its sides between the words
    assert message in " ".join(result.output.replace("│", " ").split())


def test_worker_settings_become_the_workers_environment() -> None:
    from pipeline.bench.run import worker_settings

    assert worker_settings(["NPS_BATCH_SIZE=2000", "gc_thresholds=700,10,1000"]) == {
        "NPS_BATCH_SIZE": "2000",
        "NPS_GC_THRESHOLDS": "700,10,1000",
    }


def test_bench_rejects_zero_rounds() -> None:
    result = CliRunner().invoke(app, ["bench", "--rounds", "0"])
    assert result.exit_code == 2
    assert "--rounds" in result.output


def test_each_run_reports_the_machine_speed_before_and_after_it() -> None:
    runs = [{**RUNS[0], "speed_check_s": [0.2049, 0.31]}, RUNS[1]]
    assert speed_note(runs[0]) == "; speed check 0.20 / 0.31 s"
    assert speed_note(runs[1]) == ""  # JSON of an older run: nothing claimed
    first, second = (line for line in _report(runs).splitlines() if line.startswith("pipeline"))
    assert first.endswith("100 MiB per 10k segments; speed check 0.20 / 0.31 s)")
    assert second.endswith("100 MiB per 10k segments)")


def test_speed_check_times_a_real_loop() -> None:
    seconds = speed_check()
    assert 0.001 < seconds < 30


def test_pipeline_rate_counts_only_what_was_done_after_production() -> None:
    # 200,000 answers; 6,000 counted while the bench produced (2.0 s after the first
    # record sent), the rest in the next 18.8 s: 194,000 / 18.8, not 200,000 / 18.8
    rate = pipeline_rate(200_000, 6_000, sent=100.0, clock=102.0, done=120.8)
    assert rate["events"] == 194_000
    assert rate["seconds"] == pytest.approx(18.8)
    assert rate["events_per_s"] == pytest.approx(10_319.1, abs=0.1)
    assert rate["measured_from"] == "last record produced"
    assert rate["produce_seconds"] == pytest.approx(2.0)
    assert rate["answers_before_clock"] == 6_000


def test_pipeline_rate_of_a_run_mostly_done_during_production_is_the_whole_run() -> None:
    # a small run: 1,500 of 2,000 answers counted before the last record was produced
    rate = pipeline_rate(2_000, 1_500, sent=10.0, clock=10.2, done=10.5)
    assert rate["events"] == 2_000
    assert rate["seconds"] == pytest.approx(0.5)
    assert rate["events_per_s"] == pytest.approx(4_000)
    assert rate["measured_from"] == "first record produced"


@pytest.mark.parametrize("now", [1_000.0, 1_790.0, 1_799.5, 1_800.0, 1_850.25])
def test_the_latency_phases_incident_starts_on_a_minute_boundary(now: float) -> None:
    from pipeline.bench.run import INCIDENT_AT_SECONDS, incident_alignment_wait

    wait = incident_alignment_wait(now, 75.0)
    assert 0 <= wait < 60
    assert (now + wait + INCIDENT_AT_SECONDS) % 60 == pytest.approx(0, abs=1e-9)


def test_a_short_latency_phase_does_not_wait_for_a_minute_boundary() -> None:
    from pipeline.bench.run import incident_alignment_wait

    assert incident_alignment_wait(1_000.0, 4.0) == 0.0  # the smoke run's phase
