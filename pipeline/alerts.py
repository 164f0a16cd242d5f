"""Alert evaluation over the windowed state: tests, multiplicity control, lifecycle.

Once per evaluation round (every ``evaluate_every_seconds`` of *event time*, so that a
replay or a simulated day evaluates exactly as live data would) every rule is applied
to every segment of the partitions this worker owns:

* **window tests** (detractor spike, NPS drop, CSAT drop, CES effort rise, NPS floor,
  silence) give a one-sided p-value each; the p-values of the whole round go through
  Benjamini-Hochberg at ``false_discovery_rate``, and a test fires only if it is
  rejected *and* meets its rule's minimum sample and minimum effect;
* the **Bernoulli CUSUM** on "is detractor" accumulates the answers of the buckets
  completed since the last round; its limit ``h`` is set from the rule's budget of
  false alarms per day (see :class:`pipeline.alert_rules.DetractorCusum`).

Lifecycle of a (rule, segment) pair, identified by a stable fingerprint: it fires once
(one ``firing`` record), stays firing without repeats, resolves only when clearly back
(hysteresis: a smaller effect than the one that fired it, or the CUSUM back below a
fraction of ``h``; one ``resolved`` record), then cannot fire again for
``cooldown_seconds``. The state lives in the windows table (keys ``A|p|rule|segment``
and ``E|p``), so a restart neither repeats nor forgets an alert.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Generator, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from pipeline import metrics
from pipeline.aggregate import Change, WindowState, dimension_of
from pipeline.alert_rules import (
    AlertRules,
    CesEffortRise,
    CsatDrop,
    DetractorCusum,
    DetractorSpike,
    NpsDrop,
    NpsFloor,
    Silence,
)
from pipeline.owned import owned
from pipeline.segments import parse_segment_key, segment_labels
from pipeline.stats import (
    adjusted_nps,
    benjamini_hochberg,
    bh_adjusted,
    cusum_threshold_fast,
    cusum_update,
    fisher_exact_greater,
    mean_and_variance,
    nps_interval,
    nps_standard_error,
    one_sided_p_value,
    silence_p_value,
    two_mean_z,
    two_nps_z,
    two_proportion_z,
    wilson_interval,
)
from pipeline.text.emerging import EmergingTopics
from pipeline.windows import Counts, SegmentWindows, window_stats
from schemas.alert import Alert, AlertStatus, DetractorComment, EmergingTopic, Evidence
from schemas.windowstats import WindowStats

log = logging.getLogger(__name__)

RECENT_COMMENTS = 5
#: Segments tested per step of :meth:`AlertEngine.evaluate_in_steps` (rounds took 30-110
#: ms per partition of the bench's ~2,500 segments, logged: ~5-18 ms a step).
STEP_SEGMENTS = 400
#: Least ARL0 (answers) of a CUSUM, whatever the budget: a floor for tiny workers.
MIN_ARL0 = 1000.0


#: Below this many answers in the short window a proportion test uses Fisher's exact
#: p-value instead of the pooled z (whose tail is too thin there).
EXACT_BELOW = 300


def _exact_if_small(p_z: float, x1: int, n1: int, x2: int, n2: int) -> float:
    """Fisher's exact one-sided p for small samples when it can matter (p_z < 0.05)."""
    if n1 < EXACT_BELOW and p_z < 0.05:
        return fisher_exact_greater(x1, n1, x2, n2)
    return p_z


def family(kind: str) -> str:
    """Rules of one family share a segment: while one fires or cools down, the others
    stay quiet (an incident moves NPS, detractors, CSAT and CES together: one page)."""
    return "volume" if kind == "silence" else "quality"


def fingerprint(rule: str, segment: str) -> str:
    """Stable id of a rule applied to a segment (same across workers and restarts)."""
    return hashlib.blake2b(f"{rule}\0{segment}".encode(), digest_size=8).hexdigest()


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


#: A segment's recent detractor comment: (event time in seconds, event id, score, text).
RecentComment = tuple[float, str, int, str]


def _comment_fields(comment: RecentComment) -> dict[str, Any]:
    """A :class:`RecentComment` as the fields of a :class:`DetractorComment`."""
    ts, event_id, score, text = comment
    return {"event_id": event_id, "event_time": _ts(ts), "score": score, "comment": text}


@dataclass
class PairState:
    """What one (rule, segment) pair remembers between rounds."""

    firing: bool = False
    started_at: float | None = None
    fired_at: float | None = None
    cooldown_until: float = 0.0
    alert: str | None = None  # the firing Alert as JSON (re-sent to Alertmanager after restarts)

    def is_default(self) -> bool:
        return not self.firing and self.cooldown_until == 0.0


@dataclass
class Outcome:
    """One rule applied to one segment in one round."""

    rule_index: int
    partition: int
    segment: str
    ready: bool  # minimum samples (and effect / limit) met: may fire if significant
    clear: bool  # clearly back: a firing alert resolves
    p_value: float | None
    evidence: dict[str, object] = field(default_factory=dict)
    now: float = 0.0  # the partition's round time


class AlertEngine:
    def __init__(self, rules: AlertRules, topics: EmergingTopics | None = None) -> None:
        self.rules = rules
        #: key phrases of the comments for the evidence (None: comment analytics is off)
        self.topics = topics
        self.every = rules.evaluate_every_seconds
        self.pairs: dict[int, dict[tuple[str, str], PairState]] = {}
        #: partition -> event time of its last evaluation round
        self.rounds: dict[int, float] = {}
        #: the last RECENT_COMMENTS per segment, oldest first (a list: a deque is ~600 B),
        #: each a :data:`RecentComment`: the model is built only for an alert's evidence
        #: (building a model per comment and segment and dumping each per write took ~3%
        #: of the worker's event loop at full load, py-spy), and a tuple with the time
        #: as a float is 96 bytes against 232 for the model's fields as a dict with a
        #: datetime (sys.getsizeof; at 100,000 agents the comments held 7.6 against
        #: 11.4 MiB, ``bench_memory --events 520000 --text --trace``)
        self.comments: dict[int, dict[str, list[RecentComment]]] = {}
        self._dirty_comments: set[tuple[int, str]] = set()
        self._stored: dict[bytes, bytes] = {}  # A| keys -> the value last written to the table

    # -- inputs ----------------------------------------------------------------------------

    def note_comments(self, partition: int, segment: str, items: Iterable[list[object]]) -> None:
        """Remember a segment's recent detractor comments (``[ts, id, score, text]``)."""
        items = list(items)
        recent = self.comments.setdefault(partition, {}).setdefault(segment, [])
        for ts, event_id, score, text in items[-RECENT_COMMENTS:]:
            recent.append((float(ts), str(event_id), int(score), str(text)))  # type: ignore[arg-type, call-overload]
        del recent[:-RECENT_COMMENTS]
        self._dirty_comments.add((partition, segment))
        if self.topics is not None:
            self.topics.note(partition, segment, items)  # type: ignore[arg-type]

    def is_due(self, state: WindowState) -> bool:
        """True when some partition's clock passed a round boundary (a round would run)."""
        return bool(self._due_partitions(state, None))

    def _due_partitions(self, state: WindowState, cap: float | None) -> dict[int, float]:
        """Partitions whose own clock passed a round boundary since their last round.

        Each partition has its own clock (the newest event time of its deltas): when
        one lags (a replay, a backlog on one input partition) its segments are judged
        at its own time, later, instead of against a clock their data has not reached.
        """
        due: dict[int, float] = {}
        for partition, pstate in state.partitions.items():
            if pstate.clock is None:
                continue
            clock = pstate.clock if cap is None else min(pstate.clock, cap)
            boundary = math.floor(clock / self.every) * self.every
            last = self.rounds.get(partition)
            if last is None or boundary > last:
                due[partition] = boundary
        return due

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(
        self, state: WindowState, now: float | None = None, max_partitions: int | None = None
    ) -> tuple[list[Alert], list[Change]]:
        """Run the rounds that are due (at most up to event time ``now`` if given): the
        alerts that fired or resolved and the table changes that persist the new state.
        Cheap when no partition's clock passed a boundary: call it after every batch.
        ``max_partitions`` judges at most that many due partitions per call (the longest
        waiting first), so that one call never holds the event loop for a whole round."""
        steps = self.evaluate_in_steps(state, now, max_partitions)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    def evaluate_in_steps(
        self,
        state: WindowState,
        now: float | None = None,
        max_partitions: int | None = None,
        step_segments: int = STEP_SEGMENTS,
    ) -> Generator[None, None, tuple[list[Alert], list[Change]]]:
        """:meth:`evaluate` as a generator that yields after every ``step_segments``
        segments tested and returns its result: the caller lets the event loop run
        between steps (a round over thousands of segments takes tens of milliseconds).
        The round's decisions (multiplicity control, lifecycle) are all taken at the end,
        together, as in :meth:`evaluate`."""
        due = self._due_partitions(state, now)
        if not due:
            return [], []
        if max_partitions is not None and len(due) > max_partitions:
            # the partitions waiting longest first; the others stay due for the next call
            due = dict(sorted(due.items(), key=lambda item: (item[1], item[0]))[:max_partitions])
        clocked = sum(1 for p in state.partitions.values() if p.clock is not None)
        # a round over part of the worker's partitions stands for all of them
        share = max(clocked, len(due)) / len(due)
        outcomes: list[Outcome] = []
        #: (rule index, outcome, p0, answers per day, the lookback's buckets)
        cusum_updates: list[tuple[int, Outcome, float, float, list[tuple[int, Counts]]]] = []
        tested_segments = 0
        for partition in due:
            pstate = state.partitions.get(partition)  # revoked between two steps: None
            if pstate is None or pstate.clock is None:
                continue
            for segment, windows in list(pstate.segments.items()):
                tested_segments += 1
                if tested_segments % step_segments == 0:
                    yield
                state.advance(partition, segment, windows, pstate.clock)
                dimension = dimension_of(segment)
                for index, rule in enumerate(self.rules.rules):
                    if not rule.applies_to(dimension):
                        continue
                    if isinstance(rule, DetractorCusum):
                        prepared = self._cusum_prepare(index, rule, partition, segment, windows)
                        if prepared is not None:
                            cusum_updates.append((index, *prepared))
                        continue
                    outcome = self._test(index, rule, partition, segment, windows)
                    if outcome is not None:
                        outcomes.append(outcome)
        self._cusum_round(cusum_updates, outcomes, share)
        for o in outcomes:
            o.now = due[o.partition]
        tested = [o for o in outcomes if o.p_value is not None]
        p_values = [o.p_value for o in tested]
        # partitions judged in separate rounds share the rate: q x (due / owned partitions)
        q = self.rules.false_discovery_rate / share
        rejected = benjamini_hochberg(p_values, q)  # type: ignore[arg-type]
        adjusted = bh_adjusted(p_values)  # type: ignore[arg-type]
        significant: set[int] = set()
        for o, rej, adj in zip(tested, rejected, adjusted, strict=True):
            o.evidence["adjusted_p_value"] = adj
            if rej:
                significant.add(id(o))
        alerts: list[Alert] = []
        changes: list[Change] = []
        busy = self._busy(due)
        for o in outcomes:
            rule = self.rules.rules[o.rule_index]
            fires = o.ready and (o.p_value is None or id(o) in significant)
            slot = (o.partition, o.segment, family(rule.kind))
            if fires and slot in busy and not self._pair_active(o, rule.name):
                fires = False  # one incident, one alert: another rule has this segment
            alert, change = self._lifecycle(o, fires)
            if alert is not None and alert.status is AlertStatus.FIRING:
                busy.add(slot)
            if alert is not None:
                alerts.append(alert)
            if change is not None:
                changes.append(change)
        for partition, round_time in due.items():
            self.rounds[partition] = round_time
            changes.append((f"E|{partition}".encode(), orjson.dumps(round_time)))
        changes.extend(self._comment_changes())
        self._update_metrics()
        return alerts, changes

    # -- window tests ----------------------------------------------------------------------

    def _test(
        self, index: int, rule: object, partition: int, segment: str, windows: SegmentWindows
    ) -> Outcome | None:
        if isinstance(rule, NpsFloor):
            return self._floor(index, rule, partition, segment, windows)
        if isinstance(rule, Silence):
            return self._silence(index, rule, partition, segment, windows)
        assert isinstance(rule, DetractorSpike | NpsDrop | CsatDrop | CesEffortRise)
        if not self._may_matter(rule, partition, segment, windows):
            return None
        short = windows.window(rule.window)
        base = windows.window(rule.baseline)
        base.subtract(short)
        if isinstance(rule, DetractorSpike):
            n, nb = short.responses, base.responses
            if not nb:
                return None
            observed = short.detractors / n if n else None
            expected = base.detractors / nb
            z = two_proportion_z(short.detractors, n, base.detractors, nb)
            p = _exact_if_small(
                one_sided_p_value(z, "greater"), short.detractors, n, base.detractors, nb
            )
            effect = None if observed is None else observed - expected
            metric = "detractor_share"
        elif isinstance(rule, NpsDrop):
            n, nb = short.responses, base.responses
            if not nb:
                return None
            observed = 100.0 * (short.promoters - short.detractors) / n if n else None
            expected = 100.0 * (base.promoters - base.detractors) / nb
            z = two_nps_z(short.promoters, short.detractors, n, base.promoters, base.detractors, nb)
            p = one_sided_p_value(z, "less")
            effect = None if observed is None else expected - observed
            metric = "nps"
        elif isinstance(rule, CsatDrop):
            n, nb = short.csat_n, base.csat_n
            if not nb:
                return None
            observed = short.csat_satisfied / n if n else None
            expected = base.csat_satisfied / nb
            z = two_proportion_z(short.csat_satisfied, n, base.csat_satisfied, nb)
            unhappy, unhappy_b = n - short.csat_satisfied, nb - base.csat_satisfied
            p = _exact_if_small(one_sided_p_value(z, "less"), unhappy, n, unhappy_b, nb)
            effect = None if observed is None else expected - observed
            metric = "csat_satisfied_share"
        else:
            n, nb = short.ces_n, base.ces_n
            if not nb:
                return None
            observed = mean_and_variance(short.ces_sum, short.ces_sq, n)[0] if n else None
            expected = mean_and_variance(base.ces_sum, base.ces_sq, nb)[0]
            z = two_mean_z(short.ces_sum, short.ces_sq, n, base.ces_sum, base.ces_sq, nb)
            p = one_sided_p_value(z, "less")
            effect = None if observed is None else expected - observed
            metric = "ces_mean"
        enough = n >= rule.min_responses and nb >= rule.min_baseline_responses
        ready = enough and effect is not None and effect >= rule.min_effect
        clear = not enough or effect is None or effect < rule.resolve_below
        return Outcome(
            index,
            partition,
            segment,
            ready,
            clear,
            p if enough else None,
            {
                "short": (short, rule.window, windows),
                "base": (base, rule.baseline - rule.window, rule.window),
                "metric": metric,
                "observed": observed,
                "expected": expected,
                "effect": effect,
                "statistic": "z",
                "statistic_value": z,
                "p_value": p,
            },
        )

    def _may_matter(
        self,
        rule: DetractorSpike | NpsDrop | CsatDrop | CesEffortRise,
        partition: int,
        segment: str,
        windows: SegmentWindows,
    ) -> bool:
        """False when the test cannot change anything this round: too few answers to be
        judged (so it cannot fire and has no p-value for Benjamini-Hochberg) and no
        state for the pair (nothing to resolve or cool down). Most segments of a large
        dimension are in that case most of the time; skipping them keeps rounds short."""
        if (rule.name, segment) in self.pairs.get(partition, {}):
            return True
        short, long = windows.peek(rule.window), windows.peek(rule.baseline)
        if isinstance(rule, CsatDrop):
            n, nb = short.csat_n, long.csat_n - short.csat_n
        elif isinstance(rule, CesEffortRise):
            n, nb = short.ces_n, long.ces_n - short.ces_n
        else:
            n, nb = short.responses, long.responses - short.responses
        return n >= rule.min_responses and nb >= rule.min_baseline_responses

    def _floor(
        self, index: int, rule: NpsFloor, partition: int, segment: str, windows: SegmentWindows
    ) -> Outcome | None:
        short = windows.window(rule.window)
        n = short.responses
        if not n:
            return None
        low, high = nps_interval(short.promoters, short.detractors, n)
        centre = adjusted_nps(short.promoters, short.detractors, n)
        z = (centre - rule.target) / nps_standard_error(short.promoters, short.detractors, n)
        enough = n >= rule.min_responses
        observed = 100.0 * (short.promoters - short.detractors) / n
        return Outcome(
            index,
            partition,
            segment,
            enough and high < rule.target,
            not enough or centre >= rule.target,
            one_sided_p_value(z, "less") if enough else None,
            {
                "short": (short, rule.window, windows),
                "base": None,
                "metric": "nps",
                "observed": observed,
                "expected": rule.target,
                "effect": rule.target - observed,
                "statistic": "z",
                "statistic_value": z,
                "p_value": one_sided_p_value(z, "less"),
                "interval": (low, high),
            },
        )

    def _silence(
        self, index: int, rule: Silence, partition: int, segment: str, windows: SegmentWindows
    ) -> Outcome | None:
        short = windows.window(rule.window)
        answers = short.responses + short.csat_n + short.ces_n
        base = windows.window(rule.baseline)
        if not base.responses + base.csat_n + base.ces_n:
            return None
        if answers:  # not silent: nothing to test, and a firing silence alert resolves
            return Outcome(
                index,
                partition,
                segment,
                False,
                True,
                None,
                {
                    "short": (short, rule.window, windows),
                    "base": None,
                    "metric": "responses",
                    "observed": float(answers),
                    "expected": None,
                    "effect": None,
                    "statistic": "poisson",
                    "statistic_value": 0.0,
                    "p_value": None,
                },
            )
        # the quietest block (as long as the silent window) of the baseline before it
        bounds = windows.window_bounds(rule.window)
        assert bounds is not None
        quietest = math.inf
        end = bounds[0]
        while end - rule.window >= bounds[1] - rule.baseline:
            block = windows.range_counts(end - rule.window, end)
            quietest = min(quietest, block.responses + block.csat_n + block.ces_n)
            end -= rule.window
        if not math.isfinite(quietest):
            return None
        p = silence_p_value(quietest)
        return Outcome(
            index,
            partition,
            segment,
            p < rule.max_p_value,
            False,
            p,
            {
                "short": (short, rule.window, windows),
                "base": None,
                "metric": "responses",
                "observed": 0.0,
                "expected": float(quietest),
                "effect": float(quietest),
                "statistic": "poisson",
                "statistic_value": float(quietest),
                "p_value": p,
            },
        )

    # -- CUSUM -----------------------------------------------------------------------------

    def _cusum_prepare(
        self,
        index: int,
        rule: DetractorCusum,
        partition: int,
        segment: str,
        windows: SegmentWindows,
    ) -> tuple[Outcome, float, float, list[tuple[int, Counts]]] | None:
        clock = windows.clock
        if clock is None:
            return None
        if windows.peek(rule.baseline).responses < rule.min_baseline_responses:
            # the baseline without the lookback has fewer still: the same None as below,
            # without building the series (most agents of a large dimension, each round)
            return None
        w = windows.bucket_seconds
        start = clock - rule.lookback + w
        series = list(windows.bucket_series(start, clock + w))
        base = windows.window(rule.baseline)
        for _, counts in series:
            base.subtract(counts)  # the baseline ends where the lookback starts
        if base.responses < rule.min_baseline_responses:
            return None
        # In-control share: the upper bound of a one-sided 90% Wilson interval of the
        # baseline, so that noise in a short baseline cannot make false alarms likelier.
        p0 = min(max(wilson_interval(base.detractors, base.responses, 0.8).high, 0.01), 0.98)
        # Answers per day, over the part of the baseline that has data (a young segment
        # or a pipeline started an hour ago has less than a full baseline).
        oldest = windows.oldest_start
        low = clock - rule.baseline + w
        span = float(start - max(low, oldest if oldest is not None else low))
        per_day = base.responses * 86400.0 / max(span, float(w))
        outcome = Outcome(index, partition, segment, False, True, None, {"windows": windows})
        return outcome, math.ceil(p0 * 100) / 100, per_day, series

    def _cusum_round(
        self,
        updates: list[tuple[int, Outcome, float, float, list[tuple[int, Counts]]]],
        outcomes: list[Outcome],
        share: float = 1.0,
    ) -> None:
        """Decision limits from the worker's answers per day (this round's, times
        ``share`` when the round covers only part of the worker's partitions), then each
        segment's sum recomputed over its lookback buckets in event-time order."""
        daily: dict[int, float] = {}
        for index, _, _, per_day, _ in updates:
            daily[index] = daily.get(index, 0.0) + per_day * share
        for index, outcome, p0, _, series in updates:
            rule = self.rules.rules[index]
            assert isinstance(rule, DetractorCusum)
            arl0 = max(MIN_ARL0, daily[index] / rule.false_alarms_per_day)
            arl0 = float(f"{arl0:.1g}")  # a few distinct values: the threshold is cached
            p1 = min(p0 + rule.shift, 0.99)
            h = cusum_threshold_fast(p0, p1, arl0)
            s, since = 0.0, None
            for start, counts in series:
                after = cusum_update(s, counts.detractors, counts.responses, p0, p1)
                if after == 0.0:
                    since = None
                elif s == 0.0:
                    since = start  # the sum left 0: the change-point estimate
                s = after
            shifted = Counts()
            for start, counts in series:
                if since is not None and start >= since:
                    shifted.add(counts)
            windows: SegmentWindows = outcome.evidence.pop("windows")  # type: ignore[assignment]
            outcome.ready = s > h
            outcome.clear = s < rule.resolve_fraction * h
            observed = shifted.detractors / shifted.responses if shifted.responses else None
            outcome.evidence.update(
                {
                    "short": (
                        shifted,
                        (series[-1][0] + windows.bucket_seconds - since)
                        if since is not None and series
                        else rule.lookback,
                        windows,
                    ),
                    "base": None,
                    "metric": "detractor_share",
                    "observed": observed,
                    "expected": p0,
                    "effect": None if observed is None else observed - p0,
                    "statistic": "cusum",
                    "statistic_value": s,
                    "threshold": h,
                    "since": since,
                }
            )
            outcomes.append(outcome)

    # -- lifecycle -------------------------------------------------------------------------

    def _busy(self, due: dict[int, float]) -> set[tuple[int, str, str]]:
        """(partition, segment, family) with an alert firing or cooling down."""
        kinds = {r.name: r.kind for r in self.rules.rules}
        return {
            (partition, segment, family(kinds[rule]))
            for partition, now in due.items()
            for (rule, segment), pair in self.pairs.get(partition, {}).items()
            if rule in kinds and (pair.firing or pair.cooldown_until > now)
        }

    def _pair_active(self, o: Outcome, rule: str) -> bool:
        pair = self.pairs.get(o.partition, {}).get((rule, o.segment))
        return pair is not None and (pair.firing or pair.cooldown_until > o.now)

    def _pair(self, partition: int, rule: str, segment: str) -> PairState:
        return self.pairs.setdefault(partition, {}).setdefault((rule, segment), PairState())

    def _lifecycle(self, o: Outcome, fires: bool) -> tuple[Alert | None, Change | None]:
        rule = self.rules.rules[o.rule_index]
        now = o.now
        pairs = self.pairs.setdefault(o.partition, {})
        pair = pairs.get((rule.name, o.segment))
        if pair is None:
            if not fires:
                return None, None
            pair = pairs[(rule.name, o.segment)] = PairState()
        alert: Alert | None = None
        if pair.firing:
            if o.clear:
                alert = self._alert(o, pair, AlertStatus.RESOLVED, now)
                pair.firing = False
                pair.alert = None
                pair.cooldown_until = now + rule.cooldown_seconds
        elif fires and now >= pair.cooldown_until:
            pair.firing = True
            pair.fired_at = now
            since = o.evidence.get("since")
            pair.started_at = float(since) if since is not None else now  # type: ignore[arg-type]
            pair.cooldown_until = 0.0
            alert = self._alert(o, pair, AlertStatus.FIRING, now)
            pair.alert = alert.model_dump_json()
        elif not pair.firing and pair.cooldown_until and now >= pair.cooldown_until:
            pair.cooldown_until = 0.0
        key = f"A|{o.partition}|{rule.name}|{o.segment}".encode()
        value: bytes | None = None
        if pair.is_default():
            del pairs[(rule.name, o.segment)]
        else:
            value = orjson.dumps(asdict(pair))
        if self._stored.get(key) == value:
            return alert, None  # the table already holds this state
        if value is None:
            self._stored.pop(key, None)
        else:
            self._stored[key] = owned(value)
        return alert, (key, value)

    def _alert(self, o: Outcome, pair: PairState, status: AlertStatus, now: float) -> Alert:
        rule = self.rules.rules[o.rule_index]
        ev = o.evidence
        short_counts, short_len, windows = ev["short"]  # type: ignore[misc]
        clock = windows.clock
        bounds = None
        if clock is not None:  # [end - length, end) with end the end of the clock's bucket
            end = clock + windows.bucket_seconds
            bounds = (end - short_len, end)
        short_stats = window_stats(
            short_counts,
            short_len,
            start=_ts(bounds[0]) if bounds else None,
            end=_ts(bounds[1]) if bounds else None,
        )
        base_stats: WindowStats | None = None
        if ev.get("base") is not None:
            base_counts, base_len, gap = ev["base"]  # type: ignore[misc]
            base_stats = window_stats(
                base_counts,
                base_len,
                start=_ts(bounds[1] - gap - base_len) if bounds else None,
                end=_ts(bounds[1] - gap) if bounds else None,
            )
        # the segment's recent detractor comments that fall in the window judged: older
        # ones (a segment quiet for days keeps its last comments) would not explain it
        comments = [
            DetractorComment(**_comment_fields(c))
            for c in reversed(self.comments.get(o.partition, {}).get(o.segment, ()))
            if bounds is None or bounds[0] <= c[0] < bounds[1]
        ]
        topics: list[EmergingTopic] = []
        if self.topics is not None and ev["metric"] in ("nps", "detractor_share"):
            found = self.topics.top(o.partition, o.segment, *(bounds or (None, None)))
            topics = [EmergingTopic(phrase=t.phrase, count=t.count, z=t.z) for t in found]
        evidence = Evidence(
            window=short_stats,
            baseline=base_stats,
            metric=str(ev["metric"]),
            observed=ev["observed"],  # type: ignore[arg-type]
            expected=ev["expected"],  # type: ignore[arg-type]
            effect=ev["effect"],  # type: ignore[arg-type]
            statistic=str(ev["statistic"]),
            statistic_value=float(ev["statistic_value"]),  # type: ignore[arg-type]
            threshold=ev.get("threshold"),  # type: ignore[arg-type]
            p_value=ev.get("p_value"),  # type: ignore[arg-type]
            adjusted_p_value=ev.get("adjusted_p_value"),  # type: ignore[arg-type]
            comments=comments if ev["metric"] in ("nps", "detractor_share") else [],
            emerging_topics=topics,
        )
        fields = parse_segment_key(o.segment)
        fp = fingerprint(rule.name, o.segment)
        assert pair.started_at is not None and pair.fired_at is not None
        summary, description = describe(rule.kind, o.segment, evidence, rule.name)
        return Alert(
            alert_id=f"{fp}-{int(pair.started_at)}",
            fingerprint=fp,
            status=status,
            rule=rule.name,
            kind=rule.kind,
            severity=rule.severity,
            segment=o.segment,
            dimension=dimension_of(o.segment),
            fields=fields,
            summary=summary if status is AlertStatus.FIRING else f"Resolved: {summary}",
            description=description,
            started_at=_ts(pair.started_at),
            fired_at=_ts(pair.fired_at),
            resolved_at=_ts(now) if status is AlertStatus.RESOLVED else None,
            evidence=evidence,
        )

    # -- persistence -----------------------------------------------------------------------

    def _comment_changes(self) -> Iterator[Change]:
        for partition, segment in self._dirty_comments:
            recent = self.comments.get(partition, {}).get(segment)
            if recent is not None:
                # as DetractorComment.model_dump(mode="json") writes them; owned: a round
                # holds thousands until they are sent (~4 KiB each as orjson returns them)
                fields = [_comment_fields(c) for c in recent]
                value = owned(orjson.dumps(fields, option=orjson.OPT_UTC_Z))
                yield f"R|{partition}|{segment}".encode(), value
        self._dirty_comments.clear()

    def rebuild(self, items: Iterable[tuple[bytes, bytes]], partitions: set[int]) -> None:
        """Restore pairs, round times and comments of ``partitions`` from table items.

        The CUSUMs need nothing restored: each round recomputes them from the buckets.
        """
        self.pairs = {p: {} for p in partitions}
        self.comments = {p: {} for p in partitions}
        if self.topics is not None:
            self.topics.keep(partitions)
        self.rounds = {}
        self._stored = {}
        known = {r.name for r in self.rules.rules}
        for raw_key, raw_value in items:
            if raw_value is None or raw_key[:2] not in (b"A|", b"E|", b"R|"):
                continue
            kind, _, rest = raw_key.decode().partition("|")
            part, _, rest = rest.partition("|")
            partition = int(part)
            if partition not in partitions:
                continue
            if kind == "E":
                self.rounds[partition] = float(orjson.loads(raw_value))
            elif kind == "A":
                rule, _, segment = rest.partition("|")
                if rule not in known:
                    log.warning(
                        "rule %r is no longer in the rules file: its state is dropped", rule
                    )
                    continue
                self.pairs[partition][(rule, segment)] = PairState(**orjson.loads(raw_value))
                self._stored[raw_key] = raw_value
            else:
                self.comments[partition][rest] = [
                    (c.event_time.timestamp(), c.event_id, c.score, c.comment)
                    for c in map(DetractorComment.model_validate, orjson.loads(raw_value))
                ][-RECENT_COMMENTS:]
        self._update_metrics()

    def firing(self) -> list[Alert]:
        """The alerts firing now (for re-sends to Alertmanager after a restart)."""
        return [
            Alert.model_validate_json(pair.alert)
            for pairs in self.pairs.values()
            for pair in pairs.values()
            if pair.firing and pair.alert is not None
        ]

    def _update_metrics(self) -> None:
        counts: dict[tuple[str, str], int] = {(r.name, r.severity): 0 for r in self.rules.rules}
        severity = {r.name: r.severity for r in self.rules.rules}
        for pairs in self.pairs.values():
            for (rule, _), pair in pairs.items():
                if pair.firing and rule in severity:
                    counts[(rule, severity[rule])] += 1
        for (rule, sev), count in counts.items():
            metrics.ALERTS_FIRING.labels(rule, sev).set(count)


# --------------------------------------------------------------------------- words


def alertmanager_payload(alert: Alert) -> tuple[dict[str, str], dict[str, str]]:
    """Labels (stable per fingerprint) and annotations (the evidence) for Alertmanager."""
    labels = {
        "alertname": alert.rule,
        "kind": alert.kind.value,
        "severity": alert.severity,
        # as on /metrics and in the Prometheus rules: dimension="department",
        # segment="billing" (combinations: "department,channel" / "support|chat")
        "dimension": alert.dimension,
        "segment": segment_labels(alert.segment)[1],
        "segment_key": alert.segment,
        "service": "nps-pipeline",
    }
    annotations = {
        "summary": alert.summary,
        "description": alert.description,
        "alert_id": alert.alert_id,
        "started_at": alert.started_at.isoformat(),
        "evidence": alert.evidence.model_dump_json(),
    }
    return labels, annotations


def _nps_text(stats: WindowStats) -> str:
    if stats.nps is None or stats.nps_low is None or stats.nps_high is None:
        return "no answers"
    half = (stats.nps_high - stats.nps_low) / 2
    return f"{stats.nps:+.0f} ± {half:.0f} (n = {stats.responses:,})"


def _share_text(share: float | None, n: int) -> str:
    return "n/a" if share is None else f"{share:.0%} of {n:,}"


def _f(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def describe(kind: str, segment: str, ev: Evidence, rule: str) -> tuple[str, str]:
    """A pager line and a paragraph with the numbers, for one alert (any value may be
    missing when an alert resolves because its window emptied)."""
    w, b = ev.window, ev.baseline
    span = w.window
    before = f"the {b.window} before" if b is not None else ""
    stat = f"z = {ev.statistic_value:.2f}" if ev.statistic == "z" else ""
    p = f", p = {_f(ev.p_value, '.1e')}" if ev.p_value is not None else ""
    adj = f" (BH-adjusted {ev.adjusted_p_value:.1e})" if ev.adjusted_p_value is not None else ""
    detractors = _share_text(w.detractor_share, w.responses)
    satisfied = _share_text(w.csat_satisfied_share, w.csat_responses)
    if kind == "detractor_spike" and b is not None:
        summary = f"Detractors up in {segment}: {detractors} in the last {span}"
        text = (
            f"Detractor share in {segment} is {detractors} "
            f"answers in the last {span}, against {_share_text(b.detractor_share, b.responses)} "
            f"in {before}: {stat}{p}{adj}."
        )
    elif kind == "nps_drop" and b is not None:
        summary = f"NPS of {segment} dropped to {_nps_text(w)} in the last {span}"
        text = (
            f"NPS of {segment} is {_nps_text(w)} in the last {span}, against {_nps_text(b)} "
            f"in {before}; drop {_f(ev.effect, '.0f')} points, {stat}{p}{adj}."
        )
    elif kind == "nps_floor":
        summary = (
            f"NPS of {segment} below target {_f(ev.expected, '+.0f')}: {_nps_text(w)} over {span}"
        )
        text = (
            f"NPS of {segment} over the last {span} is {_nps_text(w)}; its 95% interval "
            f"lies wholly below the target {_f(ev.expected, '+.0f')}: {stat}{p}{adj}."
        )
    elif kind == "csat_drop" and b is not None:
        summary = f"CSAT of {segment} dropped to {satisfied} satisfied"
        text = (
            f"Satisfied CSAT answers in {segment}: {satisfied} "
            f"in the last {span}, against {_share_text(b.csat_satisfied_share, b.csat_responses)} "
            f"in {before}: {stat}{p}{adj}."
        )
    elif kind == "ces_effort_rise" and b is not None:
        ces = _f(ev.observed, ".2f")
        summary = f"Customer effort up in {segment}: CES {ces} (1-7 easy) in the last {span}"
        text = (
            f"Mean CES ('it was easy', 1-7) in {segment} is {ces} over "
            f"{w.ces_responses:,} answers in the last {span}, "
            f"against {_f(ev.expected, '.2f')} over "
            f"{b.ces_responses:,} in {before}: {stat}{p}{adj}."
        )
    elif kind == "silence":
        summary = f"No feedback from {segment} for {span}"
        text = (
            f"{segment} received no answer in the last {span}, although even its quietest "
            f"{span} of the baseline had {_f(ev.expected, '.0f')}: P(silence by chance) = "
            f"{_f(ev.p_value, '.1e')}{adj}. A survey channel may be broken."
        )
    else:
        summary = f"Sustained rise of detractors in {segment} (CUSUM)"
        text = (
            f"The Bernoulli CUSUM of detractors in {segment} reached S = "
            f"{ev.statistic_value:.1f} > h = {ev.threshold or 0:.1f}: the detractor share "
            f"moved from its baseline {_f(ev.expected, '.0%')} ({detractors} "
            f"over {span}) towards {_f((ev.expected or 0) + (ev.effect or 0), '.0%')} or more."
        )
    if ev.emerging_topics:
        said = ", ".join(f'"{t.phrase}" ({t.count}, z = {t.z:.1f})' for t in ev.emerging_topics)
        text += f" Emerging in the detractors' comments: {said}."
    return summary, f"[{rule}] {text}"
