"""Tasks + status updates -> per-task state and per-segment follow-up figures.

Pure and batch-oriented (no Kafka, no Faust): the ``followups`` agent hands each batch
of records of ``feedback.followups`` (tasks) and ``feedback.followup-events`` (status
updates) to :meth:`FollowupTracker.apply_batch` and writes back the table changes,
dead letters and alerts it returns.

Semantics:

* **Idempotent.** A task is stored once (a repeated task record is ignored). For each
  status the tracker keeps the *earliest* time reported (for ``resolved``: the
  earliest resolution and its outcome; on a tie the outcome sorting last), so the
  same update twice, or updates in any order, give the same state — and an update
  that changes nothing writes nothing to the table.
* **First contact** is the earliest ``contacted`` update or the earliest resolution
  whose outcome is not ``unreachable`` (closing a case after talking to the customer
  is a contact); ``acknowledged`` is not a contact.
* **Clock.** Everything is judged in event time: the clock is the newest time this
  worker has seen on its follow-up partitions (task creation = the answer's event
  time, and update times), never the wall clock — so a replay gives the same figures
  and tests are deterministic. With several workers each judges its own tasks by its
  own clock.
* **Overdue**: not resolved, not contacted, and the clock is past ``due_at``. When a
  task becomes overdue a ``firing`` :class:`~schemas.alert.Alert` is produced (kind
  ``followup_overdue``, segment = the task's owner), and a ``resolved`` one with the
  same id when it is contacted or resolved.
* **Revised answers** (same task id, see :mod:`pipeline.followups.tasks`): a task
  record with other content replaces the task (priority, due time, comment, owner
  segments) and keeps its status; a tombstone (no value: the revision is no longer
  selected by any rule) withdraws the task from the state and the figures. A firing
  overdue alert of the first task resolves either way; a revised task past its due
  time fires its own.
* **Unknown task ids**: an update whose task is not (yet) known waits while the
  clock is within ``unknown_grace_seconds`` of its time (the task record may still be
  on its way: both topics are read in parallel), then is dead-lettered with reason
  ``unknown_task``. An update dated before its task's creation is dead-lettered as
  ``schema_violation`` (field ``event_time``).
* **Windows**: a task belongs to window ``L`` while its creation time is within
  ``[clock - L, clock]``. Tasks older than the longest window are dropped from the
  state (their table entries deleted).

Table keys (bytes, partition = the source partition): ``T|<p>|<task id>`` -> task
state, ``C|<p>`` -> the partition's clock, ``P|<p>|<offset>`` -> a waiting update,
``W|<p>|<task id>`` -> the creation time of a withdrawn task.
"""

from __future__ import annotations

import base64
import heapq
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from pipeline import metrics
from pipeline.alerts import fingerprint
from pipeline.followups import metrics as fmetrics
from pipeline.followups.rules import FollowupRules
from pipeline.segments import OVERALL, parse_segment_key, segment_key, segment_keys, segment_labels
from pipeline.validate import RawRecord, Rejection, dead_letter
from pipeline.windows import Counts, window_label, window_stats
from schemas.alert import Alert, AlertStatus, DetractorComment, Evidence, RuleKind
from schemas.deadletter import Reason
from schemas.followup import (
    FollowupStats,
    FollowupStatus,
    FollowupTask,
    FollowupTaskView,
    FollowupUpdate,
    Outcome,
    RevenueHorizon,
)

#: (table key, encoded value or None for a delete)
Change = tuple[bytes, bytes | None]

OVERDUE_RULE = "followup-overdue"


def followup_window_label(seconds: int) -> str:
    """``86400`` -> ``"24h"``, ``604800`` -> ``"7d"``, ``2592000`` -> ``"30d"``."""
    if seconds > 86400 and seconds % 86400 == 0:
        return f"{seconds // 86400}d"
    return window_label(seconds)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by linear interpolation between closest ranks
    (Hyndman & Fan type 7, numpy's default): position ``(n - 1) q``."""
    n = len(sorted_values)
    if not n:
        return None
    position = (n - 1) * q
    low = math.floor(position)
    high = min(low + 1, n - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


def _ts(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _earliest(current: float | None, new: float) -> float:
    return new if current is None or new < current else current


@dataclass
class TaskState:
    """What the tracker knows of one task."""

    task: FollowupTask
    raw: bytes  # the task record as received (answered by the API as it is)
    created: float
    due: float
    segments: tuple[str, ...]
    acknowledged: float | None = None
    contacted: float | None = None  # earliest explicit contacted update
    resolved: float | None = None
    outcome: str | None = None
    alerted: float | None = None  # clock when the overdue alert fired (None: not firing)

    @property
    def first_contact(self) -> float | None:
        resolved_contact = self.resolved if self.outcome != Outcome.UNREACHABLE else None
        if self.contacted is None:
            return resolved_contact
        if resolved_contact is None:
            return self.contacted
        return min(self.contacted, resolved_contact)

    def is_overdue(self, clock: float | None) -> bool:
        return (
            clock is not None
            and self.resolved is None
            and self.first_contact is None
            and clock > self.due
        )

    def state_label(self) -> str:
        if self.resolved is not None:
            return "resolved"
        if self.first_contact is not None:
            return "contacted"
        return "acknowledged" if self.acknowledged is not None else "open"

    def tracking(self) -> tuple[float | None, float | None, float | None, str | None]:
        return self.acknowledged, self.contacted, self.resolved, self.outcome

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "task": orjson.Fragment(self.raw),
                "a": self.acknowledged,
                "c": self.contacted,
                "r": self.resolved,
                "o": self.outcome,
                "al": self.alerted,
            }
        )


@dataclass
class _Partition:
    tasks: dict[str, TaskState] = field(default_factory=dict)
    clock: float | None = None
    pending: dict[int, RawRecord] = field(default_factory=dict)  # offset -> waiting update
    due_heap: list[tuple[float, str]] = field(default_factory=list)
    created_heap: list[tuple[float, str]] = field(default_factory=list)
    #: task id -> creation time of the tasks withdrawn (kept as long as the task would
    #: have been: an update of one is dead-lettered saying so)
    withdrawn: dict[str, float] = field(default_factory=dict)


@dataclass
class BatchResult:
    """What one batch produced: table changes, dead letters (key, JSON) and alerts."""

    changes: list[Change] = field(default_factory=list)
    deadletters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    applied: int = 0
    unchanged: int = 0


@dataclass
class Part:
    """Additive follow-up figures of one segment (mergeable across workers)."""

    tasks: int = 0
    open: int = 0
    overdue: int = 0
    contacted: int = 0
    resolved: int = 0
    within: int = 0
    decided: int = 0  # contacted, or past due: the denominator of the within-due share
    contact_seconds: list[float] = field(default_factory=list)
    resolution_seconds: list[float] = field(default_factory=list)
    rev_short: float = 0.0
    rev_long: float = 0.0
    rev_open: float = 0.0

    def add_task(self, t: TaskState, clock: float) -> None:
        self.tasks += 1
        contact = t.first_contact
        if t.resolved is None:
            self.open += 1
            if contact is None and clock > t.due:
                self.overdue += 1
        else:
            self.resolved += 1
            self.resolution_seconds.append(t.resolved - t.created)
        if contact is not None:
            self.contacted += 1
            self.contact_seconds.append(contact - t.created)
            self.decided += 1
            if contact <= t.due:
                self.within += 1
        elif clock > t.due:
            self.decided += 1
        revenue = t.task.revenue_at_risk
        if revenue is not None:
            if t.task.revenue_horizon is RevenueHorizon.LONG_TERM:
                self.rev_long += revenue
            else:
                self.rev_short += revenue
            if t.resolved is None:
                self.rev_open += revenue

    def merge(self, other: Part) -> None:
        for name in ("tasks", "open", "overdue", "contacted", "resolved", "within", "decided"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.contact_seconds.extend(other.contact_seconds)
        self.resolution_seconds.extend(other.resolution_seconds)
        self.rev_short += other.rev_short
        self.rev_long += other.rev_long
        self.rev_open += other.rev_open

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Part:
        return cls(**data)

    def stats(self) -> FollowupStats:
        contact = sorted(self.contact_seconds)
        resolution = sorted(self.resolution_seconds)
        return FollowupStats(
            tasks=self.tasks,
            open=self.open,
            overdue=self.overdue,
            contacted=self.contacted,
            resolved=self.resolved,
            contacted_within_due=self.within,
            contacted_within_due_share=self.within / self.decided if self.decided else None,
            median_seconds_to_first_contact=percentile(contact, 0.5),
            p90_seconds_to_first_contact=percentile(contact, 0.9),
            median_seconds_to_resolution=percentile(resolution, 0.5),
            p90_seconds_to_resolution=percentile(resolution, 0.9),
            revenue_at_risk_short_term=self.rev_short,
            revenue_at_risk_long_term=self.rev_long,
            revenue_at_risk_open=self.rev_open,
        )


class FollowupTracker:
    """The follow-up state of the partitions this worker owns."""

    def __init__(
        self,
        rules: FollowupRules,
        *,
        tasks_topic: str,
        dimensions: Sequence[str],
        combinations: Sequence[Sequence[str]],
        windows_seconds: Sequence[int],
        unknown_grace_seconds: float,
        max_original_bytes: int,
    ) -> None:
        self.rules = rules
        self.tasks_topic = tasks_topic
        self.dimensions = tuple(dimensions)
        self.combinations = tuple(tuple(c) for c in combinations)
        self.windows = tuple(sorted(windows_seconds))
        self.retain = self.windows[-1]
        self.grace = unknown_grace_seconds
        self.max_original_bytes = max_original_bytes
        self.partitions: dict[int, _Partition] = {}

    # -- queries ---------------------------------------------------------------------------

    @property
    def clock(self) -> float | None:
        """The newest event time seen on this worker's partitions."""
        clocks = [p.clock for p in self.partitions.values() if p.clock is not None]
        return max(clocks) if clocks else None

    def get(self, task_id: str) -> TaskState | None:
        for partition in self.partitions.values():
            found = partition.tasks.get(task_id)
            if found is not None:
                return found
        return None

    def tasks(self) -> Iterator[TaskState]:
        for partition in self.partitions.values():
            yield from partition.tasks.values()

    def view(self, task_id: str) -> FollowupTaskView | None:
        t = self.get(task_id)
        if t is None:
            return None
        clock = self.clock
        contact = t.first_contact
        within: bool | None = None
        if contact is not None:
            within = contact <= t.due
        elif clock is not None and clock > t.due:
            within = False
        return FollowupTaskView(
            task=t.task,
            state=t.state_label(),
            acknowledged_at=_ts(t.acknowledged),
            contacted_at=_ts(contact),
            resolved_at=_ts(t.resolved),
            outcome=Outcome(t.outcome) if t.outcome else None,
            overdue=t.is_overdue(clock),
            contacted_within_due=within,
            seconds_to_first_contact=None if contact is None else contact - t.created,
            seconds_to_resolution=None if t.resolved is None else t.resolved - t.created,
            as_of=_ts(clock),
        )

    def parts(self, dimension: str, window_seconds: int) -> dict[str, Part]:
        """Per segment of ``dimension`` (``overall``, ``agent``, ``department,channel``):
        the figures of the tasks created in the window ending at the clock."""
        clock = self.clock
        out: dict[str, Part] = {}
        if clock is None:
            return out
        start = clock - window_seconds
        for t in self.tasks():
            if t.created < start:
                continue
            for key in t.segments:
                if segment_labels(key)[0] == dimension:
                    out.setdefault(key, Part()).add_task(t, clock)
        return out

    # -- updates ---------------------------------------------------------------------------

    def apply_batch(self, records: Iterable[RawRecord], now: datetime | None = None) -> BatchResult:
        """Apply a batch of task records and status updates; see the module docstring."""
        now = now or datetime.now(UTC)
        result = BatchResult()
        dirty: dict[bytes, bytes | None] = {}
        touched: set[int] = set()
        updates: list[RawRecord] = []
        for record in records:
            if record.topic == self.tasks_topic:
                self._add_task(record, result, dirty, touched)
            else:
                updates.append(record)
        for record in updates:
            self._update(record, result, dirty, touched, now)
        # waiting updates whose task arrived, or whose grace is over
        for p, partition in self.partitions.items():
            for offset, record in sorted(partition.pending.items()):
                parsed = FollowupUpdate.model_validate_json(record.value or b"")
                waited = partition.tasks.get(parsed.task_id) is None
                if waited and self.clock is not None and self.clock - self.grace < _epoch(parsed):
                    continue
                del partition.pending[offset]
                dirty[f"P|{p}|{offset}".encode()] = None
                self._update(record, result, dirty, touched, now, retry=True)
        self._overdue(result, dirty)
        self._prune(dirty)
        result.changes = list(dirty.items())
        for p in touched:
            clock = self.partitions[p].clock
            if clock is not None:
                result.changes.append((f"C|{p}".encode(), orjson.dumps(clock)))
        return result

    def _partition(self, p: int) -> _Partition:
        partition = self.partitions.get(p)
        if partition is None:
            partition = self.partitions[p] = _Partition()
        return partition

    def _advance(self, partition: _Partition, ts: float) -> None:
        if partition.clock is None or ts > partition.clock:
            partition.clock = ts

    def _add_task(
        self,
        record: RawRecord,
        result: BatchResult,
        dirty: dict[bytes, bytes | None],
        touched: set[int],
    ) -> None:
        if record.value is None:
            self._withdraw(record, result, dirty)
            return
        try:
            task = FollowupTask.model_validate_json(record.value)
        except ValidationError:  # written by the scoring stage: a bug, not input
            fmetrics.UPDATES.labels("invalid_task").inc()
            return
        partition = self._partition(record.partition)
        touched.add(record.partition)
        self._advance(partition, task.created_at.timestamp())
        if partition.withdrawn.pop(task.task_id, None) is not None:  # selected again
            dirty[f"W|{record.partition}|{task.task_id}".encode()] = None
        known = partition.tasks.get(task.task_id)
        if known is not None and known.raw == record.value:
            return  # at-least-once repeat of the same task
        state = self._state(task, record.value)
        if known is not None:  # a revised answer: the new task, the status so far
            state.acknowledged, state.contacted = known.acknowledged, known.contacted
            state.resolved, state.outcome = known.resolved, known.outcome
            fmetrics.TASKS_REVISED.labels("replaced").inc()
            clock = self.clock
            # the overdue alert was the first task's (its due time and owner): it
            # resolves, and the revised task, if overdue, fires its own (_overdue)
            if (
                known.alerted is not None
                and clock is not None
                and self.rules.overdue_alerts.enabled
            ):
                result.alerts.append(self._alert(known, AlertStatus.RESOLVED, clock))
        partition.tasks[task.task_id] = state
        if known is None or state.due != known.due or known.alerted is not None:
            heapq.heappush(partition.due_heap, (state.due, task.task_id))
        if known is None or state.created != known.created:
            heapq.heappush(partition.created_heap, (state.created, task.task_id))
        dirty[f"T|{record.partition}|{task.task_id}".encode()] = state.encode()

    def _withdraw(
        self, record: RawRecord, result: BatchResult, dirty: dict[bytes, bytes | None]
    ) -> None:
        """A task tombstone: the revised answer needs no follow-up any more."""
        if record.key is None:
            return
        task_id = record.key.decode(errors="replace")
        partition = self._partition(record.partition)
        state = partition.tasks.pop(task_id, None)
        if state is None:
            return  # a revision of an answer that never had a task, or a repeat
        fmetrics.TASKS_REVISED.labels("withdrawn").inc()
        dirty[f"T|{record.partition}|{task_id}".encode()] = None
        partition.withdrawn[task_id] = state.created
        dirty[f"W|{record.partition}|{task_id}".encode()] = orjson.dumps(state.created)
        clock = self.clock
        if state.alerted is not None and clock is not None and self.rules.overdue_alerts.enabled:
            result.alerts.append(self._alert(state, AlertStatus.RESOLVED, clock))

    def _state(self, task: FollowupTask, raw: bytes) -> TaskState:
        return TaskState(
            task=task,
            raw=raw,
            created=task.created_at.timestamp(),
            due=task.due_at.timestamp(),
            segments=tuple(segment_keys(task.owner, self.dimensions, self.combinations)),
        )

    def _update(
        self,
        record: RawRecord,
        result: BatchResult,
        dirty: dict[bytes, bytes | None],
        touched: set[int],
        now: datetime,
        *,
        retry: bool = False,
    ) -> None:
        p = record.partition
        try:
            update = FollowupUpdate.model_validate_json(record.value or b"")
        except ValidationError as exc:
            self._reject(record, _invalid(exc, record.value), result)
            return
        partition = self._partition(p)
        touched.add(p)
        ts = _epoch(update)
        self._advance(partition, ts)
        state = partition.tasks.get(update.task_id)
        if state is None:
            withdrawn = update.task_id in partition.withdrawn
            if not retry and not withdrawn:
                partition.pending[record.offset] = record
                dirty[f"P|{p}|{record.offset}".encode()] = _encode_record(record)
                return
            message = (
                f"follow-up task {update.task_id!r} was withdrawn: its answer was revised "
                "and no follow-up rule selects it any more"
                if withdrawn
                else f"no follow-up task {update.task_id!r} is known on partition {p} "
                f"(waited {self.grace:g} s of event time for it)"
            )
            rejection = Rejection(Reason.UNKNOWN_TASK, message, "task_id", update.task_id)
            self._reject(record, rejection, result)
            return
        if ts < state.created:
            message = (
                f"update at {update.event_time.isoformat()} is before task {update.task_id!r} "
                f"was created ({state.task.created_at.isoformat()})"
            )
            rejection = Rejection(Reason.SCHEMA_VIOLATION, message, "event_time", update.task_id)
            self._reject(record, rejection, result)
            return
        before = state.tracking()
        contact_before, resolved_before = state.first_contact, state.resolved
        if update.status is FollowupStatus.ACKNOWLEDGED:
            state.acknowledged = _earliest(state.acknowledged, ts)
        elif update.status is FollowupStatus.CONTACTED:
            state.contacted = _earliest(state.contacted, ts)
        else:
            outcome = (update.outcome or Outcome.OTHER).value
            if state.resolved is None or ts < state.resolved:
                state.resolved, state.outcome = ts, outcome
            elif ts == state.resolved and state.outcome is not None and outcome > state.outcome:
                state.outcome = outcome
        if state.tracking() == before:
            result.unchanged += 1
            fmetrics.UPDATES.labels("unchanged").inc()
            return
        result.applied += 1
        fmetrics.UPDATES.labels("applied").inc()
        if contact_before is None and state.first_contact is not None:
            fmetrics.TIME_TO_CONTACT.labels(state.task.priority.value).observe(
                state.first_contact - state.created
            )
        if resolved_before is None and state.resolved is not None:
            fmetrics.TIME_TO_RESOLUTION.labels(state.task.priority.value).observe(
                state.resolved - state.created
            )
        if state.alerted is not None and not state.is_overdue(self.clock):
            if self.rules.overdue_alerts.enabled:
                result.alerts.append(self._alert(state, AlertStatus.RESOLVED, ts))
            state.alerted = None
        dirty[f"T|{p}|{state.task.task_id}".encode()] = state.encode()

    def _reject(self, record: RawRecord, rejection: Rejection, result: BatchResult) -> None:
        letter = dead_letter(record, rejection, self.max_original_bytes)
        result.deadletters.append((record.key, letter.model_dump_json().encode()))
        metrics.DEADLETTERS.labels(rejection.reason.value).inc()

    def _overdue(self, result: BatchResult, dirty: dict[bytes, bytes | None]) -> None:
        """Fire the alerts of the tasks the clock has just made overdue."""
        clock = self.clock
        if clock is None:
            return
        for p, partition in self.partitions.items():
            heap = partition.due_heap
            while heap and heap[0][0] < clock:
                _, tid = heapq.heappop(heap)
                state = partition.tasks.get(tid)
                if state is None or not state.is_overdue(clock) or state.alerted is not None:
                    continue
                state.alerted = clock
                if self.rules.overdue_alerts.enabled:
                    result.alerts.append(self._alert(state, AlertStatus.FIRING, clock))
                dirty[f"T|{p}|{tid}".encode()] = state.encode()

    def _prune(self, dirty: dict[bytes, bytes | None]) -> None:
        """Drop the tasks older than the longest window (they leave every window)."""
        clock = self.clock
        if clock is None:
            return
        cut = clock - self.retain
        for p, partition in self.partitions.items():
            heap = partition.created_heap
            while heap and heap[0][0] < cut:
                _, tid = heapq.heappop(heap)
                state = partition.tasks.get(tid)
                if state is None or state.created >= cut:
                    continue  # withdrawn, or revised with a later creation time
                del partition.tasks[tid]
                dirty[f"T|{p}|{tid}".encode()] = None
                fmetrics.TASKS_EXPIRED.inc()
            for tid, created in list(partition.withdrawn.items()):
                if created < cut:
                    del partition.withdrawn[tid]
                    dirty[f"W|{p}|{tid}".encode()] = None

    # -- alerts ----------------------------------------------------------------------------

    def owner_segment(self, task: FollowupTask) -> str:
        for name in self.rules.owner_fields:
            value = task.owner.get(name)
            if value:
                return segment_key({name: value})
        return OVERALL

    def _alert(self, state: TaskState, status: AlertStatus, at: float) -> Alert:
        task = state.task
        segment = self.owner_segment(task)
        dimension, label = segment_labels(segment)
        fp = fingerprint(OVERDUE_RULE, task.task_id)
        assert state.alerted is not None
        fired = state.alerted
        late = fired - state.due
        due_in = state.due - state.created
        answer = Counts.of_event(task.survey_type, task.score, task.account_value)
        stats = window_stats(answer, int(due_in), start=task.created_at, end=task.due_at)
        comments = []
        if task.comment:
            comments.append(
                DetractorComment(
                    event_id=task.event_id,
                    event_time=task.created_at,
                    score=task.score,
                    comment=task.comment,
                )
            )
        money = (
            f", {task.revenue_at_risk:,.0f} revenue at risk"
            if task.revenue_at_risk is not None
            else ""
        )
        summary = (
            f"Follow-up {task.task_id} ({task.priority.value}, {dimension}={label}) not "
            f"contacted {late / 3600:.1f} h after its due time{money}"
        )
        description = (
            f"{task.category.value} {task.survey_type.value.upper()} {task.score} from "
            f"{task.customer_id} at {task.created_at.isoformat()}; rule {task.rule} asks for "
            f"contact within {due_in / 3600:g} h (due {task.due_at.isoformat()}); no contact "
            f"reported by {_ts(fired).isoformat()}"  # type: ignore[union-attr]
        )
        return Alert(
            alert_id=f"{fp}-{int(state.due)}",
            fingerprint=fp,
            status=status,
            rule=OVERDUE_RULE,
            kind=RuleKind.FOLLOWUP_OVERDUE,
            severity=self.rules.overdue_alerts.severity,
            segment=segment,
            dimension=dimension,
            fields=parse_segment_key(segment),
            summary=summary if status is AlertStatus.FIRING else f"Resolved: {summary}",
            description=description,
            started_at=task.due_at,
            fired_at=_ts(fired),  # type: ignore[arg-type]
            resolved_at=_ts(at) if status is AlertStatus.RESOLVED else None,
            evidence=Evidence(
                window=stats,
                baseline=None,
                metric="seconds_to_first_contact",
                observed=fired - state.created,
                expected=due_in,
                effect=late,
                statistic="deadline",
                statistic_value=late,
                threshold=due_in,
                p_value=None,
                adjusted_p_value=None,
                comments=comments,
            ),
        )

    # -- persistence -----------------------------------------------------------------------

    def rebuild(self, items: Iterable[tuple[bytes, bytes | None]], partitions: set[int]) -> None:
        """Restore the state of ``partitions`` from table items (after recovery)."""
        self.partitions = {p: _Partition() for p in partitions}
        for raw_key, raw_value in items:
            if raw_value is None:
                continue
            kind, _, rest = raw_key.decode().partition("|")
            part, _, name = rest.partition("|")
            p = int(part)
            partition = self.partitions.get(p)
            if partition is None:
                continue
            if kind == "C":
                partition.clock = float(orjson.loads(raw_value))
            elif kind == "P":
                partition.pending[int(name)] = _decode_record(raw_value)
            elif kind == "W":
                partition.withdrawn[name] = float(orjson.loads(raw_value))
            elif kind == "T":
                document = orjson.loads(raw_value)
                raw = orjson.dumps(document["task"])
                state = self._state(FollowupTask.model_validate(document["task"]), raw)
                state.acknowledged = document["a"]
                state.contacted = document["c"]
                state.resolved = document["r"]
                state.outcome = document["o"]
                state.alerted = document["al"]
                partition.tasks[name] = state
                partition.due_heap.append((state.due, name))
                partition.created_heap.append((state.created, name))
        for partition in self.partitions.values():
            heapq.heapify(partition.due_heap)
            heapq.heapify(partition.created_heap)


def _epoch(update: FollowupUpdate) -> float:
    return update.event_time.timestamp()


def _invalid(exc: ValidationError, value: bytes | None) -> Rejection:
    try:
        document = orjson.loads(value or b"")
    except orjson.JSONDecodeError as err:
        return Rejection(Reason.NOT_JSON, f"not JSON: {err}")
    task = document.get("task_id") if isinstance(document, dict) else None
    errors = exc.errors(include_url=False)
    path = ".".join(str(p) for p in errors[0]["loc"]) or None
    message = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(update)'}: {e['msg']}" for e in errors[:10]
    )
    return Rejection(
        Reason.SCHEMA_VIOLATION, message, path, task if isinstance(task, str) else None
    )


def _encode_record(record: RawRecord) -> bytes:
    return orjson.dumps(
        {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": base64.b64encode(record.key).decode() if record.key else None,
            "value": base64.b64encode(record.value or b"").decode(),
        }
    )


def _decode_record(value: bytes) -> RawRecord:
    d = orjson.loads(value)
    return RawRecord(
        d["topic"],
        d["partition"],
        d["offset"],
        base64.b64decode(d["key"]) if d["key"] else None,
        base64.b64decode(d["value"]),
    )
