"""The alert engine, in process (no broker): rule tests, lifecycle, restart, noise, scenario.

Windowed state is fed through :meth:`WindowState.apply_packed` (the packed deltas
records the scoring stage publishes), either with hand-chosen :class:`Counts` or with the
simulator's events scored by :class:`ScoringStage`. Every table change that
``apply_packed`` and :meth:`AlertEngine.evaluate` return is kept in a dict, the
stand-in of the Faust table, so a "restart" rebuilds both from exactly what a worker
would find in its changelog.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import metrics
from pipeline.aggregate import Change, WindowState
from pipeline.alert_rules import AlertRules, DetractorCusum
from pipeline.alerts import AlertEngine, fingerprint
from pipeline.scoring import ScoringStage
from pipeline.scoring_service import encode_groups
from pipeline.settings import Settings
from pipeline.simulator import FeedbackSimulator, Incident, SimulatorConfig, rate_factor
from pipeline.stats import (
    adjusted_nps,
    benjamini_hochberg,
    cusum_kl,
    cusum_threshold_fast,
    cusum_weights,
    fisher_exact_greater,
    nps_interval,
    one_sided_p_value,
    two_mean_z,
    two_nps_z,
    two_proportion_z,
    wilson_interval,
)
from pipeline.validate import RawRecord
from pipeline.windows import Counts
from schemas.alert import Alert, AlertStatus, DetractorComment
from tests.deltas import deltas_record, packed

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schemas" / "json" / "alert.v1.json"

#: Event times far in the past would be "late" and far ahead "future": open both wide.
SETTINGS = Settings(
    broker_url="127.0.0.1:1", allowed_lateness_seconds=10**7, future_tolerance_seconds=10**8
)
#: A round of evaluation: midnight UTC, so every window and bucket boundary is aligned.
T = 1_800_000_000 // 86400 * 86400 + 86400
MIN = 60
HOUR = 3600


def nps_counts(promoters: int, passives: int, detractors: int) -> Counts:
    return Counts(
        responses=promoters + passives + detractors,
        promoters=promoters,
        passives=passives,
        detractors=detractors,
    )


def csat_counts(satisfied: int, unsatisfied: int) -> Counts:
    """CSAT answers: ``satisfied`` 5s and ``unsatisfied`` 2s."""
    return Counts(
        csat_n=satisfied + unsatisfied,
        csat_sum=5 * satisfied + 2 * unsatisfied,
        csat_satisfied=satisfied,
    )


def ces_counts(scores: dict[int, int]) -> Counts:
    """CES answers: ``{score: how many}``."""
    counts = Counts()
    for score, many in scores.items():
        for _ in range(many):
            counts.add_event("ces", score)
    return counts


class Harness:
    """WindowState + AlertEngine of one worker, with its table kept in a dict."""

    def __init__(self, rules: AlertRules | list[dict[str, Any]]) -> None:
        self.rules = rules if isinstance(rules, AlertRules) else AlertRules(rules=rules)
        self.state = WindowState(SETTINGS)
        self.engine = AlertEngine(self.rules)
        self.table: dict[bytes, bytes] = {}
        self.records: list[Alert] = []

    def store(self, changes: list[Change]) -> None:
        for key, value in changes:
            if value is None:
                self.table.pop(key, None)
            else:
                self.table[key] = value

    def feed(
        self, segment: str, ts: float, counts: Counts | None = None, partition: int = 0
    ) -> None:
        """Answers of ``segment`` at event time ``ts`` (none: only move the clock to ``ts``)."""
        buckets = {} if counts is None else {int(ts // MIN) * MIN: counts}
        self.store(self.state.apply_packed([(partition, deltas_record(segment, buckets, ts))]))

    def round(self, now: float, tick: str | None = None) -> list[Alert]:
        """One evaluation round at ``now`` (``tick``: first move the clock there)."""
        if tick is not None:
            self.feed(tick, now)
        alerts, changes = self.engine.evaluate(self.state, now)
        self.store(changes)
        self.records.extend(alerts)
        return alerts

    def restart(self) -> None:
        """A new worker on the same table: state and engine rebuilt from it."""
        partitions = set(self.state.partitions)
        items = list(self.table.items())
        self.state = WindowState(SETTINGS)
        self.state.rebuild(items, partitions)
        self.engine = AlertEngine(self.rules)
        self.engine.rebuild(items, partitions)


def only(alerts: list[Alert]) -> Alert:
    assert len(alerts) == 1, [(a.status, a.rule, a.segment) for a in alerts]
    return alerts[0]


def firing_gauge(rule: str, severity: str = "page") -> float:
    return metrics.ALERTS_FIRING.labels(rule, severity)._value.get()


# --------------------------------------------------------------------------- detractor spike

SPIKE = {"name": "spike", "kind": "detractor_spike", "cooldown_seconds": "10m"}
A1 = "agent=a1"


def spiked(rules: list[dict[str, Any]] | None = None) -> Harness:
    """agent=a1: 100 of 1000 baseline answers are detractors (10%), 30 of the last
    hour's 100 (30%); the clock at T."""
    h = Harness(rules or [SPIKE])
    h.feed(A1, T - 10 * HOUR, nps_counts(500, 400, 100))
    h.feed(A1, T - 10 * MIN, nps_counts(40, 30, 30))
    h.feed(A1, T)
    return h


def test_detractor_spike_fires_with_its_evidence() -> None:
    h = spiked()
    comments = [[T - 20 * MIN + i, f"ev-{i}", i % 7, f"comment {i}"] for i in range(7)]
    h.engine.note_comments(0, A1, comments)
    alert = only(h.round(T))
    assert alert.status is AlertStatus.FIRING
    assert (alert.rule, alert.kind, alert.severity) == ("spike", "detractor_spike", "page")
    assert (alert.segment, alert.dimension, alert.fields) == (A1, "agent", {"agent": "a1"})
    assert alert.fingerprint == fingerprint("spike", A1)
    assert alert.alert_id == f"{alert.fingerprint}-{T}"
    assert alert.started_at == alert.fired_at == datetime.fromtimestamp(T, UTC)
    assert alert.resolved_at is None
    ev = alert.evidence
    assert (ev.metric, ev.statistic) == ("detractor_share", "z")
    assert ev.observed == pytest.approx(0.30)
    assert ev.expected == pytest.approx(0.10)
    assert ev.effect == pytest.approx(0.20)
    # pooled share 130/1100; SE = sqrt(q (1-q) (1/100 + 1/1000)) = 0.033858; z = 0.2 / SE
    assert ev.statistic_value == pytest.approx(5.9070, abs=1e-4)
    assert ev.statistic_value == pytest.approx(two_proportion_z(30, 100, 100, 1000))
    # 100 answers in the hour: Fisher's exact p (the z tail, 1.742e-9, is too thin here)
    assert one_sided_p_value(ev.statistic_value, "greater") == pytest.approx(1.742e-9, rel=1e-3)
    assert ev.p_value == pytest.approx(fisher_exact_greater(30, 100, 100, 1000))
    assert ev.p_value == pytest.approx(1.880e-7, rel=1e-3)
    assert ev.adjusted_p_value == pytest.approx(ev.p_value)  # the only test of the round
    assert ev.threshold is None
    # the window judged is the last hour, the baseline the 23 hours before it
    assert (ev.window.window, ev.window.responses, ev.window.detractors) == ("1h", 100, 30)
    assert ev.window.end == datetime.fromtimestamp(T + MIN, UTC)
    assert ev.baseline is not None
    assert (ev.baseline.window, ev.baseline.responses, ev.baseline.detractors) == ("23h", 1000, 100)
    assert ev.baseline.start == datetime.fromtimestamp(T + MIN - 24 * HOUR, UTC)
    assert ev.baseline.end == ev.window.start == datetime.fromtimestamp(T + MIN - HOUR, UTC)
    assert ev.window.detractor_share_low is not None and ev.window.detractor_share_low > 0.2
    # the five newest comments, newest first
    assert [c.event_id for c in ev.comments] == ["ev-6", "ev-5", "ev-4", "ev-3", "ev-2"]
    assert "30% of 100" in alert.summary and A1 in alert.summary
    assert "10% of 1,000" in alert.description and "z = 5.91" in alert.description
    assert firing_gauge("spike") == 1


def test_evidence_comments_are_those_of_the_window_judged() -> None:
    """A segment keeps its last detractor comments however old: only those made in the
    window the alert judged (the last hour here) go into its evidence."""
    h = spiked()
    before = [[T - 3 * HOUR + i, f"old-{i}", 1, f"yesterday {i}"] for i in range(3)]
    h.engine.note_comments(0, A1, before)
    h.engine.note_comments(0, A1, [[T - 59 * MIN, "new-0", 2, "slow again"]])
    h.engine.note_comments(0, A1, [[T - 61 * MIN, "edge-0", 2, "just before the window"]])
    ev = only(h.round(T)).evidence
    assert ev.window.start == datetime.fromtimestamp(T + MIN - HOUR, UTC)
    assert [c.event_id for c in ev.comments] == ["new-0"]


def test_detractor_spike_lifecycle_hysteresis_and_cooldown() -> None:
    h = spiked()
    fired = only(h.round(T))
    assert fired.status is AlertStatus.FIRING
    # stays firing without a second record
    for k in (1, 2):
        assert h.round(T + k * MIN, tick=A1) == []
    # 60 more non-detractors: 30/160 = 18.75% against 10%, effect 0.0875: below
    # min_effect (0.10, it would not fire now) but above resolve_effect (0.05): keeps firing
    h.feed(A1, T + 150, nps_counts(60, 0, 0))
    assert h.round(T + 3 * MIN, tick=A1) == []
    assert [a.alert_id for a in h.engine.firing()] == [fired.alert_id]
    assert firing_gauge("spike") == 1
    # 60 more: 30/220 = 13.6%, effect 0.036 < 0.05: resolved, same alert id
    h.feed(A1, T + 210, nps_counts(60, 0, 0))
    resolved = only(h.round(T + 4 * MIN, tick=A1))
    assert resolved.status is AlertStatus.RESOLVED
    assert resolved.alert_id == fired.alert_id
    assert resolved.started_at == fired.started_at
    assert resolved.resolved_at == datetime.fromtimestamp(T + 4 * MIN, UTC)
    assert resolved.evidence.effect == pytest.approx(30 / 220 - 0.10)
    assert resolved.summary.startswith("Resolved: ")
    assert h.engine.firing() == []
    assert firing_gauge("spike") == 0
    # a new spike (90/320 = 28%) during the 10 minute cooldown does not fire...
    h.feed(A1, T + 270, nps_counts(0, 40, 60))
    for minutes in (5, 8, 13):
        assert h.round(T + minutes * MIN, tick=A1) == [], minutes
    # ...and fires, as a new occurrence, once the cooldown is over
    again = only(h.round(T + 14 * MIN, tick=A1))
    assert again.status is AlertStatus.FIRING
    assert again.fingerprint == fired.fingerprint
    assert again.alert_id == f"{fired.fingerprint}-{T + 14 * MIN}"
    assert again.evidence.observed == pytest.approx(90 / 320)


def test_not_enough_answers_or_too_small_an_effect_does_not_fire() -> None:
    # 29 answers in the hour (min_responses 30), all detractors
    h = Harness([SPIKE])
    h.feed(A1, T - 10 * HOUR, nps_counts(500, 400, 100))
    h.feed(A1, T - 10 * MIN, nps_counts(0, 0, 29))
    assert h.round(T, tick=A1) == []
    # 5,000 answers, 12% detractors against 10%: z = 4.5, p = 4e-6, but effect 0.02 < 0.10
    big = Harness([SPIKE])
    big.feed(A1, T - 10 * HOUR, nps_counts(25_000, 20_000, 5_000))
    big.feed(A1, T - 10 * MIN, nps_counts(2_400, 2_000, 600))
    assert one_sided_p_value(two_proportion_z(600, 5000, 5000, 50_000)) < 1e-5
    assert big.round(T, tick=A1) == []


# --------------------------------------------------------------------------- other window rules


def test_nps_drop() -> None:
    rule = {"name": "drop", "kind": "nps_drop"}
    h = Harness([rule])
    h.feed(A1, T - 10 * HOUR, nps_counts(500, 300, 200))  # NPS +30
    h.feed(A1, T - 10 * MIN, nps_counts(30, 30, 40))  # NPS -10
    alert = only(h.round(T, tick=A1))
    ev = alert.evidence
    assert (alert.kind, ev.metric) == ("nps_drop", "nps")
    assert (ev.observed, ev.expected) == (pytest.approx(-10.0), pytest.approx(30.0))
    assert ev.effect == pytest.approx(40.0)  # points of drop (positive = worse)
    assert ev.statistic_value == pytest.approx(two_nps_z(30, 40, 100, 500, 200, 1000))
    # by hand: adjusted NPS (30.75 - 40.75) / 103 = -9.709 (SE 8.154) against
    # (500.75 - 200.75) / 1003 = +29.910 (SE 2.466): z = -39.619 / 8.518 = -4.651
    assert ev.statistic_value == pytest.approx(-4.651, abs=1e-3)
    assert ev.p_value == pytest.approx(one_sided_p_value(ev.statistic_value, "less"))
    assert ev.window.nps == pytest.approx(-10.0)
    assert ev.baseline is not None and ev.baseline.nps == pytest.approx(30.0)
    assert "dropped to -10" in alert.summary


BEFORE_AND_DURING: dict[str, tuple[Counts, Counts]] = {
    "detractor_spike": (nps_counts(500, 400, 100), nps_counts(40, 30, 30)),
    "nps_drop": (nps_counts(500, 300, 200), nps_counts(30, 30, 40)),
    "csat_drop": (csat_counts(800, 200), csat_counts(50, 50)),
    "ces_effort_rise": (ces_counts({6: 500, 5: 500}), ces_counts({4: 50, 5: 50})),
}


@pytest.mark.parametrize(
    "kind",
    [
        "detractor_spike",
        "nps_drop",
        "csat_drop",
        "ces_effort_rise",
    ],
)
def test_an_alert_resolves_when_its_window_empties(kind: str) -> None:
    h = Harness([{"name": "rule", "kind": kind}])
    before, during = BEFORE_AND_DURING[kind]
    h.feed(A1, T - 10 * HOUR, before)
    h.feed(A1, T - 10 * MIN, during)
    assert only(h.round(T, tick=A1)).status is AlertStatus.FIRING
    # an hour without answers from agent=a1 while agent=a2 keeps the clock moving
    resolved = only(h.round(T + HOUR, tick="agent=a2"))
    assert (resolved.status, resolved.segment) == (AlertStatus.RESOLVED, A1)
    assert resolved.evidence.observed is None
    window = resolved.evidence.window
    assert window.responses + window.csat_responses + window.ces_responses == 0


def test_nps_drop_needs_its_minimum_effect() -> None:
    """A 10-point drop in a large segment is highly significant but below 15 points."""
    h = Harness([{"name": "drop", "kind": "nps_drop"}])
    h.feed(A1, T - 10 * HOUR, nps_counts(5000, 3000, 2000))  # +30
    h.feed(A1, T - 10 * MIN, nps_counts(900, 600, 500))  # +20
    assert one_sided_p_value(two_nps_z(900, 500, 2000, 5000, 2000, 10000), "less") < 1e-4
    assert h.round(T, tick=A1) == []


def test_csat_drop() -> None:
    h = Harness([{"name": "csat", "kind": "csat_drop"}])
    h.feed(A1, T - 10 * HOUR, csat_counts(800, 200))  # 80% satisfied
    h.feed(A1, T - 10 * MIN, csat_counts(50, 50))  # 50%
    alert = only(h.round(T, tick=A1))
    ev = alert.evidence
    assert (alert.kind, ev.metric) == ("csat_drop", "csat_satisfied_share")
    assert (ev.observed, ev.expected, ev.effect) == (
        pytest.approx(0.5),
        pytest.approx(0.8),
        pytest.approx(0.3),
    )
    assert ev.statistic_value == pytest.approx(two_proportion_z(50, 100, 800, 1000))
    # exact for 100 answers: 50 of 100 unsatisfied against 200 of 1,000
    assert ev.p_value == pytest.approx(fisher_exact_greater(50, 100, 200, 1000))
    assert ev.window.csat_responses == 100
    assert ev.comments == []  # detractor comments go with NPS / detractor alerts only


def test_ces_effort_rise() -> None:
    h = Harness([{"name": "ces", "kind": "ces_effort_rise"}])
    h.feed(A1, T - 10 * HOUR, ces_counts({6: 500, 5: 500}))  # mean 5.5
    h.feed(A1, T - 10 * MIN, ces_counts({4: 50, 5: 50}))  # mean 4.5
    alert = only(h.round(T, tick=A1))
    ev = alert.evidence
    assert (alert.kind, ev.metric) == ("ces_effort_rise", "ces_mean")
    assert (ev.observed, ev.expected, ev.effect) == (
        pytest.approx(4.5),
        pytest.approx(5.5),
        pytest.approx(1.0),
    )
    # by hand: both samples have variance 0.25 * n / (n - 1); SE = sqrt(0.2525/100 + 0.25025/1000)
    assert ev.statistic_value == pytest.approx(-1.0 / math.sqrt(0.25 / 99 + 0.25 / 999))
    assert ev.statistic_value == pytest.approx(
        two_mean_z(450, 2050, 100, 5500, 30500, 1000), rel=1e-12
    )
    assert "CES 4.50" in alert.summary


def test_ces_half_point_is_not_enough_when_rule_asks_more() -> None:
    h = Harness([{"name": "ces", "kind": "ces_effort_rise", "min_effect": 1.5}])
    h.feed(A1, T - 10 * HOUR, ces_counts({6: 500, 5: 500}))
    h.feed(A1, T - 10 * MIN, ces_counts({4: 50, 5: 50}))
    assert h.round(T, tick=A1) == []


def test_nps_floor_fires_only_when_the_interval_is_wholly_below_target() -> None:
    h = Harness([{"name": "floor", "kind": "nps_floor", "target": 0}])
    h.feed("department=returns", T - 5 * HOUR, nps_counts(40, 60, 100))  # -30 of 200
    h.feed("department=sales", T - 5 * HOUR, nps_counts(15, 15, 20))  # -10 of 50
    h.feed("department=billing", T - 5 * HOUR, nps_counts(3, 5, 20))  # -61 of 28 (< 30)
    low, high = nps_interval(40, 100, 200)
    assert high < 0  # about -30 +- 10.7
    _, sales_high = nps_interval(15, 20, 50)
    assert adjusted_nps(15, 20, 50) < 0 < sales_high  # below target, interval straddles it
    alert = only(h.round(T, tick="department=returns"))
    ev = alert.evidence
    assert (alert.segment, alert.kind) == ("department=returns", "nps_floor")
    assert (ev.observed, ev.expected) == (pytest.approx(-30.0), 0.0)
    assert ev.baseline is None
    assert (ev.window.nps_low, ev.window.nps_high) == (pytest.approx(low), pytest.approx(high))
    assert ev.window.window == "24h"
    assert "below target +0" in alert.summary


SILENCE = {"name": "quiet", "kind": "silence"}


def test_silence_of_a_steady_segment_while_others_keep_the_clock() -> None:
    """email: 10 answers an hour for 23 hours, then none; store: 2 an hour, then none;
    chat keeps answering (and so moves the clock)."""
    h = Harness([SILENCE])
    silent_from = T + MIN - HOUR  # the last hour's window starts here
    for k in range(23):
        block_end = silent_from - k * HOUR
        h.feed("channel=email", block_end - 30 * MIN, nps_counts(5, 3, 2))
        h.feed("channel=store", block_end - 30 * MIN, nps_counts(1, 1, 0))
    for minute in range(0, 24 * 60, 10):
        h.feed("channel=chat", T - 24 * HOUR + minute * MIN + 1, nps_counts(1, 0, 0))
    alert = only(h.round(T, tick="channel=chat"))
    assert (alert.segment, alert.kind, alert.severity) == ("channel=email", "silence", "page")
    ev = alert.evidence
    assert (ev.metric, ev.statistic, ev.observed, ev.expected) == ("responses", "poisson", 0, 10)
    assert ev.p_value == pytest.approx(math.exp(-10))  # P(no answer | Poisson mean 10)
    assert ev.window.responses == 0
    assert "No feedback from channel=email for 1h" in alert.summary


def test_silence_resolves_when_answers_return() -> None:
    h = Harness([SILENCE])
    silent_from = T + MIN - HOUR
    for k in range(23):
        h.feed("channel=email", silent_from - k * HOUR - 30 * MIN, nps_counts(5, 3, 2))
    h.feed("channel=chat", T, nps_counts(1, 0, 0))
    fired = only(h.round(T, tick="channel=chat"))
    assert (fired.status, fired.segment) == (AlertStatus.FIRING, "channel=email")
    # the first answer resolves it
    h.feed("channel=email", T + 30, nps_counts(1, 0, 0))
    resolved = only(h.round(T + MIN, tick="channel=chat"))
    assert (resolved.status, resolved.segment) == (AlertStatus.RESOLVED, "channel=email")
    assert resolved.alert_id == fired.alert_id
    assert resolved.resolved_at == datetime.fromtimestamp(T + MIN, UTC)


def test_silence_needs_a_quietest_hour_with_enough_answers() -> None:
    """Six answers in some hour of the baseline: P(silence) = e^-6 = 0.0025 > 0.001."""
    h = Harness([SILENCE])
    silent_from = T + MIN - HOUR
    for k in range(23):
        many = 6 if k == 11 else 30
        h.feed("channel=email", silent_from - k * HOUR - 30 * MIN, nps_counts(many, 0, 0))
    h.feed("channel=chat", T, nps_counts(1, 0, 0))
    assert h.round(T, tick="channel=chat") == []


def test_detractor_cusum_fires_on_a_sustained_shift() -> None:
    """In control 20% detractors (2,000 answers over 22 h); then 12 of every 20 answers.

    The sum is recomputed every round over the last hour's buckets (the lookback);
    the in-control share comes from the 24 h window before that hour."""
    h = Harness([{"name": "cusum", "kind": "detractor_cusum"}])
    for hour in range(20):
        h.feed(A1, T - 22 * HOUR + hour * HOUR, nps_counts(60, 20, 20))
    h.round(T, tick=A1)  # a first round: in control, nothing new since
    assert not h.engine.pairs.get(0)
    # p0: the upper end of the one-sided 90% Wilson interval of 400 / 2,000 (0.2115),
    # rounded up to 0.22; p1 = 0.37. ARL0: 2,000 answers over the 75,660 s from the
    # oldest bucket (T - 22 h) to the start of the lookback (T - 59 min) are 2,284 a
    # day; / 0.5 alarms a day = 4,568, rounded to one digit: 5,000 answers
    p0 = math.ceil(wilson_interval(400, 2000, 0.8).high * 100) / 100
    assert p0 == 0.22
    limit = cusum_threshold_fast(p0, p0 + 0.15, 5000.0)
    w_hit, w_miss = cusum_weights(p0, p0 + 0.15)
    step = 12 * w_hit + 8 * w_miss  # one bucket of the shifted segment
    assert step < limit < 2 * step  # so: above 0 after the first bucket, alarm after the second
    h.feed(A1, T + 30, nps_counts(4, 4, 12))
    assert h.round(T + MIN, tick=A1) == []  # S = step < h
    h.feed(A1, T + 90, nps_counts(4, 4, 12))
    alert = only(h.round(T + 2 * MIN, tick=A1))  # S = 2 step > h
    ev = alert.evidence
    assert (alert.kind, ev.statistic, ev.metric) == ("detractor_cusum", "cusum", "detractor_share")
    # the baseline leaves out the lookback, so the shifted buckets do not move p0
    assert ev.threshold == pytest.approx(limit)
    assert ev.statistic_value == pytest.approx(2 * step)
    assert ev.expected == pytest.approx(p0)
    assert ev.observed == pytest.approx(0.6)
    assert ev.p_value is None
    # the sum left 0 with the bucket starting at T: the change-point estimate
    assert alert.started_at == datetime.fromtimestamp(T, UTC)
    assert alert.fired_at == datetime.fromtimestamp(T + 2 * MIN, UTC)
    assert alert.started_at < alert.fired_at
    # back in control: the sum falls by KL per answer until below h / 4, then resolves
    rounds = 0
    while True:
        rounds += 1
        h.feed(A1, T + (rounds + 2) * MIN + 30, nps_counts(16, 0, 4))
        alerts = h.round(T + (rounds + 3) * MIN, tick=A1)
        if alerts:
            break
        assert rounds < 30
    resolved = only(alerts)
    assert resolved.status is AlertStatus.RESOLVED and resolved.alert_id == alert.alert_id
    assert resolved.evidence.threshold is not None
    assert resolved.evidence.statistic_value < 0.25 * resolved.evidence.threshold


# --------------------------------------------------------------------------- one alert per segment


def test_one_alert_per_segment_when_several_rules_fire() -> None:
    rules = [
        {"name": "spike", "kind": "detractor_spike"},
        {"name": "drop", "kind": "nps_drop"},
        {"name": "cusum", "kind": "detractor_cusum"},
    ]

    segments = ("agent=a1", "agent=a2")

    def build(chosen: list[dict[str, Any]]) -> Harness:
        h = Harness(chosen)
        for segment in segments:
            h.feed(segment, T - 10 * HOUR, nps_counts(500, 400, 100))  # NPS +40, 10% detractors
        assert h.round(T - MIN, tick="agent=a1") == []
        for segment in segments:
            h.feed(segment, T - 30, nps_counts(30, 40, 30))  # NPS 0, 30% detractors
        h.feed("agent=a1", T)
        return h

    # every rule fires on its own for both segments...
    for rule in rules:
        alerts = build([rule]).round(T)
        assert sorted(a.segment for a in alerts) == ["agent=a1", "agent=a2"], rule
    # ...together: one alert per segment, from the first rule in the file
    alerts = build(rules).round(T)
    assert sorted((a.segment, a.rule) for a in alerts) == [
        ("agent=a1", "spike"),
        ("agent=a2", "spike"),
    ]


def test_silence_is_another_family_than_quality() -> None:
    """A spike on one segment does not silence the silence rule of the same segment."""
    h = Harness([{"name": "spike", "kind": "detractor_spike"}, SILENCE])
    silent_from = T + MIN - HOUR
    for k in range(1, 23):
        h.feed("channel=email", silent_from - k * HOUR - 30 * MIN, nps_counts(9, 0, 1))
    h.feed("channel=email", silent_from - 30 * MIN, nps_counts(0, 0, 40))
    fired = only(h.round(T - 40 * MIN, tick="channel=chat"))
    assert (fired.rule, fired.segment) == ("spike", "channel=email")
    alerts = h.round(T, tick="channel=chat")
    assert [(a.status, a.rule) for a in alerts] == [
        (AlertStatus.RESOLVED, "spike"),
        (AlertStatus.FIRING, "quiet"),
    ]


# --------------------------------------------------------------------------- Benjamini-Hochberg


def test_benjamini_hochberg_holds_back_a_borderline_p_value_in_a_large_round() -> None:
    """13 of 40 detractors (32.5%) against 40 of 400 (10%): Fisher p = 0.00026 < q = 0.001.

    Alone it fires; tested with 49 stable segments in the same round, BH needs
    p <= 1 * 0.001 / 50 = 0.00002 for the smallest p-value, and it is held back.
    """
    rule = {"name": "spike", "kind": "detractor_spike"}
    p = fisher_exact_greater(13, 40, 40, 400)
    assert 0.00025 < p < 0.00027
    alone = Harness([rule])
    alone.feed("agent=edge", T - 10 * HOUR, nps_counts(200, 160, 40))
    alone.feed("agent=edge", T - 10 * MIN, nps_counts(20, 7, 13))
    fired = only(alone.round(T, tick="agent=edge"))
    assert fired.evidence.p_value == pytest.approx(p)
    assert fired.evidence.adjusted_p_value == pytest.approx(p)

    crowd = Harness([rule])
    crowd.feed("agent=edge", T - 10 * HOUR, nps_counts(200, 160, 40))
    crowd.feed("agent=edge", T - 10 * MIN, nps_counts(20, 7, 13))
    for i in range(49):  # stable: the same 10% in the hour as in the baseline
        crowd.feed(f"agent=s{i:02d}", T - 10 * HOUR, nps_counts(200, 160, 40))
        crowd.feed(f"agent=s{i:02d}", T - 10 * MIN, nps_counts(20, 16, 4))
    assert crowd.round(T, tick="agent=edge") == []
    assert benjamini_hochberg([p] + [0.5] * 49, 0.001) == [False] * 50


def test_benjamini_hochberg_keeps_a_strong_signal_in_a_large_round() -> None:
    rule = {"name": "spike", "kind": "detractor_spike"}
    h = Harness([rule])
    h.feed("agent=hot", T - 10 * HOUR, nps_counts(200, 160, 40))
    h.feed("agent=hot", T - 10 * MIN, nps_counts(10, 10, 20))  # 50%: p ~ 1e-12
    for i in range(49):
        h.feed(f"agent=s{i:02d}", T - 10 * HOUR, nps_counts(200, 160, 40))
        h.feed(f"agent=s{i:02d}", T - 10 * MIN, nps_counts(20, 16, 4))
    alert = only(h.round(T, tick="agent=hot"))
    assert alert.segment == "agent=hot"
    ev = alert.evidence
    assert ev.p_value is not None
    assert ev.adjusted_p_value == pytest.approx(50 * ev.p_value)  # smallest of 50: m * p / 1


def test_a_round_in_steps_decides_exactly_as_in_one_go() -> None:
    """The worker runs a round in steps (the event loop free between them): the same
    alerts, evidence and table changes as one call, multiplicity control over all."""

    def crowd() -> Harness:
        h = Harness([{"name": "spike", "kind": "detractor_spike"}])
        h.feed("agent=hot", T - 10 * HOUR, nps_counts(200, 160, 40))
        h.feed("agent=hot", T - 10 * MIN, nps_counts(10, 10, 20))
        for i in range(49):
            h.feed(f"agent=s{i:02d}", T - 10 * HOUR, nps_counts(200, 160, 40))
            h.feed(f"agent=s{i:02d}", T - 10 * MIN, nps_counts(20, 16, 4))
        h.feed("agent=hot", T)
        return h

    whole = crowd()
    alerts, changes = whole.engine.evaluate(whole.state, T)
    stepped = crowd()
    steps = stepped.engine.evaluate_in_steps(stepped.state, T, step_segments=7)
    yields = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            stepped_alerts, stepped_changes = done.value
            break
        yields += 1
    assert yields == 50 // 7
    assert [a.model_dump() for a in stepped_alerts] == [a.model_dump() for a in alerts]
    assert stepped_changes == changes
    assert only(alerts).evidence.adjusted_p_value == pytest.approx(
        50 * only(alerts).evidence.p_value
    )


# --------------------------------------------------------------------------- restart


def test_restart_neither_repeats_nor_forgets_a_firing_alert() -> None:
    h = spiked()
    h.engine.note_comments(0, A1, [[T - 5 * MIN, "ev-1", 2, "rude agent"]])
    fired = only(h.round(T))
    metrics.ALERTS_FIRING.labels("spike", "page").set(0)  # a new process starts at 0
    h.restart()
    assert [a.alert_id for a in h.engine.firing()] == [fired.alert_id]
    assert h.engine.firing()[0] == fired  # what is re-sent to Alertmanager
    assert firing_gauge("spike") == 1
    assert h.engine.evaluate(h.state) == ([], [])  # the round of T is not evaluated again
    h.feed(A1, T + MIN)
    for k in (1, 2, 3):
        assert h.round(T + k * MIN, tick=A1) == []
    h.restart()
    assert [a.alert_id for a in h.engine.firing()] == [fired.alert_id]
    h.feed(A1, T + 210, nps_counts(120, 0, 0))  # 30/220: effect 0.036, back below 0.05
    resolved = only(h.round(T + 4 * MIN, tick=A1))
    assert (resolved.status, resolved.alert_id) == (AlertStatus.RESOLVED, fired.alert_id)
    assert [c.event_id for c in resolved.evidence.comments] == ["ev-1"]  # comments restored
    # cooldown survives a restart too
    h.restart()
    h.feed(A1, T + 270, nps_counts(0, 40, 60))
    assert h.round(T + 5 * MIN, tick=A1) == []
    assert only(h.round(T + 14 * MIN, tick=A1)).status is AlertStatus.FIRING
    assert [a.status for a in h.records] == [
        AlertStatus.FIRING,
        AlertStatus.RESOLVED,
        AlertStatus.FIRING,
    ]


def test_restart_without_the_alert_state_would_page_twice() -> None:
    """The control for the test above: a worker that kept the windows but not the
    alert keys of the table fires the same alert a second time."""
    h = spiked()
    only(h.round(T))
    h.table = {k: v for k, v in h.table.items() if not k.startswith((b"A|", b"E|"))}
    h.restart()
    assert only(h.round(T + MIN, tick=A1)).status is AlertStatus.FIRING


def test_restart_keeps_the_cusum_sum() -> None:
    """The shift of test_detractor_cusum_fires_on_a_sustained_shift, with a restart
    between its two buckets: the alarm still comes with the second bucket."""
    h = Harness([{"name": "cusum", "kind": "detractor_cusum"}])
    for hour in range(20):
        h.feed(A1, T - 22 * HOUR + hour * HOUR, nps_counts(60, 20, 20))
    h.round(T, tick=A1)
    h.feed(A1, T + 30, nps_counts(4, 4, 12))
    assert h.round(T + MIN, tick=A1) == []
    h.restart()
    h.feed(A1, T + 90, nps_counts(4, 4, 12))
    alerts = h.round(T + 2 * MIN, tick=A1)
    assert len(alerts) == 1, "no alarm: the sum of the first bucket was lost in the restart"
    assert alerts[0].started_at == datetime.fromtimestamp(T, UTC)


# --------------------------------------------------------------------------- the Alert contract


def test_alert_round_trips_through_json_and_matches_the_exported_schema() -> None:
    alert = only(spiked().round(T))
    text = alert.model_dump_json()
    assert Alert.model_validate_json(text) == alert
    document = json.loads(text)
    assert document["status"] == "firing" and document["schema_version"] == 1
    if not SCHEMA_FILE.is_file():
        pytest.skip(f"{SCHEMA_FILE.name} is not exported yet (add Alert to schemas/export.py)")
    jsonschema = pytest.importorskip(
        "jsonschema", reason="jsonschema is not installed (add it to the dev dependencies)"
    )
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(document)) == []
    resolved = {**document, "status": "resolved", "resolved_at": "2027-01-15T08:00:00Z"}
    assert list(validator.iter_errors(resolved)) == []
    broken = {**document, "status": "exploded"}
    assert list(validator.iter_errors(broken)) != []


# --------------------------------------------------------------------------- simulated streams


def partition_of(segment: bytes, partitions: int = 4) -> int:
    """Deterministic stand-in of Kafka's key partitioning (``hash`` of bytes is salted)."""
    return zlib.crc32(segment) % partitions


class Stream:
    """The simulator's events scored by ScoringStage, one batch per minute of event time,
    into WindowState and AlertEngine: the worker's two stages without Kafka."""

    def __init__(self, rules: AlertRules, config: SimulatorConfig, start: datetime) -> None:
        self.stage = ScoringStage(SETTINGS)
        self.state = WindowState(SETTINGS)
        self.engine = AlertEngine(rules)
        self.sim = FeedbackSimulator(config, start=start)
        self.alerts: list[Alert] = []
        #: (event time, survey type) of every event of this agent
        self.keep_agent: str | None = None
        self.kept: list[tuple[datetime, str]] = []
        self.offset = 0

    def run(self, times: Iterator[datetime]) -> None:
        batch: list[RawRecord] = []
        minute: int | None = None
        for event_time in times:
            this_minute = int(event_time.timestamp()) // MIN
            if minute is not None and this_minute != minute and batch:
                self._process(batch)
                batch = []
            minute = this_minute
            event = self.sim.next_event(event_time)
            if self.keep_agent is not None and event.get("agent") == self.keep_agent:
                self.kept.append((event_time, event["survey_type"]))
            value = orjson.dumps(event)
            batch.append(RawRecord("raw", self.offset % 4, self.offset, None, value))
            self.offset += 1
        if batch:
            self._process(batch)

    def _process(self, batch: list[RawRecord]) -> None:
        out = self.stage.process(batch)
        assert not out.deadletters
        if out.clock is None:
            return
        # as in the worker: one packed record per deltas partition (an empty one too:
        # every partition's clock follows), rounds evaluated whenever a clock moves
        per_partition = encode_groups(out.deltas, 4, lambda key, n: partition_of(key.encode(), n))
        self.state.apply_packed(
            [(p, packed(items, out.clock)) for p, items in enumerate(per_partition)],
            self.engine.note_comments,
            lambda: self.alerts.extend(self.engine.evaluate(self.state)[0]),
        )


def daily_times(start: datetime, per_second: float, seconds: float) -> Iterator[datetime]:
    """Event times at ``per_second`` on average, busier by day (the simulator's profile)."""
    t = 0.0
    while t < seconds:
        moment = start + timedelta(seconds=t)
        yield moment
        t += 1.0 / (per_second * rate_factor(moment))


def even_times(start: datetime, per_second: float, seconds: float) -> Iterator[datetime]:
    for i in range(int(seconds * per_second)):
        yield start + timedelta(seconds=i / per_second)


def test_noise_a_stable_day_across_300_agents_stays_within_the_false_alarm_budget() -> None:
    """A stable day (no incident) of 300 agents at 2 events/s (~173k events), default rules.

    Event times follow the simulator's daily profile (busy 9-17, quiet at night); one
    scoring batch per minute of event time, so every one-minute round is evaluated.
    The seed (11) was fixed before the first run.

    False-alarm budget of a day, from the default rules (an upper bound, no model of
    how the rounds overlap):

    * window rules (spike, NPS, CSAT, CES, silence): Benjamini-Hochberg at
      q = false_discovery_rate in every round. When all segments are stable the chance
      of any false alarm in one round is at most q, so over the 1,440 one-minute rounds
      of a day at most 1440 q = 1.44 are expected (union bound). Counting only "about
      24 independent 1h windows" instead is too optimistic: a statistic watched every
      minute crosses a threshold more often than 24 looks would (q = 0.01 with the
      pooled z for small windows gave 7 here);
    * the detractor CUSUM: its limit h is set so that all segments together give
      false_alarms_per_day = 0.5 a day (with the conservative Siegmund h, fewer);
    * so at most 1.94 false alarms are expected in a day: the budget is 2 alerts.
    """
    rules = AlertRules()
    cusum = next(r for r in rules.rules if isinstance(r, DetractorCusum))
    rounds = 86400 / rules.evaluate_every_seconds
    expected = rules.false_discovery_rate * rounds + cusum.false_alarms_per_day
    budget = math.ceil(expected)
    assert (round(expected, 2), budget) == (1.94, 2)

    start = datetime(2026, 3, 2, tzinfo=UTC)
    stream = Stream(rules, SimulatorConfig(seed=11, num_agents=300, comment_probability=0.0), start)
    began = time.perf_counter()
    stream.run(daily_times(start, 2.0, 86400))
    elapsed = time.perf_counter() - began
    fired = [a for a in stream.alerts if a.status is AlertStatus.FIRING]
    segments = sum(len(p.segments) for p in stream.state.partitions.values())
    print(
        f"\nnoise: {stream.sim.count:,} events, {segments} segments, "
        f"{len(fired)} alerts fired in a stable day "
        f"(budget {budget}, expected <= {expected:.2f}); {elapsed:.0f} s"
    )
    for alert in fired:
        ev = alert.evidence
        print(
            f"  {alert.fired_at:%H:%M} {alert.rule} {alert.segment}: {alert.summary} "
            f"(p {ev.p_value or 0:.1e}, BH {ev.adjusted_p_value or 0:.1e})"
        )
    assert 165_000 < stream.sim.count < 180_000
    assert segments > 300 + 6 + 6 + 6 + 4
    assert len(fired) <= budget


INCIDENT_AGENT = "agent-007"


def test_scenario_an_agent_incident_raises_one_alert_that_resolves() -> None:
    """30 agents at 10 events/s; after 2 hours agent-007's answers turn 60% negative for
    30 minutes. Exactly one alert, for agent=agent-007, within a bounded number of that
    agent's answers; resolved after the incident ends; nothing else fires.

    The bound: the detractor CUSUM of the agent (p0 its baseline share, p1 = p0 + 0.15)
    climbs by ``E = 0.6 w_hit + 0.4 w_miss`` per NPS answer during the incident, so it
    crosses h after about h / E NPS answers (Wald). It is evaluated once a minute on
    completed one-minute buckets, so up to two minutes of answers come on top; NPS are
    70% of the answers. Bound = 2 x (h / E) / 0.7 + two minutes of the agent's answers.
    """
    start = datetime(2026, 3, 2, tzinfo=UTC)
    incident = Incident.parse(f"agent={INCIDENT_AGENT},detractors=0.6,start=2h,duration=30m")
    config = SimulatorConfig(seed=3, num_agents=30, incidents=[incident])
    stream = Stream(AlertRules(), config, start)
    stream.keep_agent = INCIDENT_AGENT
    per_second = 10.0
    stream.run(even_times(start, per_second, 4 * HOUR))

    begins = start + timedelta(seconds=incident.start_after_seconds)
    ends = begins + timedelta(seconds=incident.duration_seconds)
    fired = [a for a in stream.alerts if a.status is AlertStatus.FIRING]
    resolved = [a for a in stream.alerts if a.status is AlertStatus.RESOLVED]
    assert [(a.segment, a.status) for a in stream.alerts] == [
        (f"agent={INCIDENT_AGENT}", AlertStatus.FIRING),
        (f"agent={INCIDENT_AGENT}", AlertStatus.RESOLVED),
    ]
    alert = fired[0]
    assert begins < alert.fired_at < ends
    assert resolved[0].alert_id == alert.alert_id
    assert resolved[0].resolved_at is not None and ends < resolved[0].resolved_at

    seen = [survey for when, survey in stream.kept if begins <= when < alert.fired_at]
    answers, nps_answers = len(seen), seen.count("nps")
    # the bound, from the CUSUM the engine ran (its evidence names p0 and h)
    assert alert.rule == "detractor-cusum", "the fastest detector; re-derive the bound if not"
    p0, h = alert.evidence.expected, alert.evidence.threshold
    assert p0 is not None and h is not None
    w_hit, w_miss = cusum_weights(p0, p0 + 0.15)
    drift = 0.6 * w_hit + 0.4 * w_miss
    assert drift > cusum_kl(p0, p0 + 0.15)  # detection drift beats the in-control one
    agent_rate = len(stream.kept) / (4 * HOUR)
    bound = math.ceil(2 * (h / drift) / 0.7 + 2 * MIN * agent_rate)
    print(
        f"\nscenario: {alert.rule} fired for {alert.segment} at {alert.fired_at:%H:%M} "
        f"after {answers} answers of the agent ({nps_answers} NPS) since the incident "
        f"began (bound {bound}: p0 {p0:.2f}, h {h:.2f}, drift {drift:.3f}/answer); "
        f"resolved at {resolved[0].resolved_at:%H:%M} (incident ended {ends:%H:%M})"
    )
    assert 0 < answers <= bound


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=1.6e9, max_value=2.0e9, allow_nan=False),
            st.text(min_size=1, max_size=12),
            st.integers(min_value=0, max_value=10),
            st.text(max_size=40),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_recent_comments_are_written_and_restored_as_the_model_writes_them(
    items: list[tuple[float, str, int, str]],
) -> None:
    """The R| changelog value of a segment's recent detractor comments is what
    DetractorComment.model_dump(mode="json") gives for the last five (the engine keeps
    plain fields, not models), and a restart reads it back to the same evidence."""
    h = Harness([SPIKE])
    h.feed(A1, T)  # a round is due at T: it writes the comments
    h.engine.note_comments(0, A1, [list(item) for item in items])
    h.round(T)
    expected = [
        DetractorComment(
            event_id=event_id,
            event_time=datetime.fromtimestamp(ts, UTC),
            score=score,
            comment=text,
        )
        for ts, event_id, score, text in items[-5:]
    ]
    key = f"R|0|{A1}".encode()
    assert h.table[key] == orjson.dumps([c.model_dump(mode="json") for c in expected])
    h.restart()
    h.engine._dirty_comments.add((0, A1))  # written again from the restored state
    h.feed(A1, T + MIN)
    _, changes = h.engine.evaluate(h.state, T + MIN)
    assert dict(changes)[key] == h.table[key]
