"""Replay survey-tool exports (CSV, JSONL) into the raw topic.

A replay is an *import*: every row is mapped to a :class:`FeedbackEvent` (columns by a
mapping, constants, naive local times given a timezone), validated with the worker's own
diagnosis (:func:`pipeline.validate.parse_feedback`, so the kinds are the dead-letter
reasons), and only valid rows are produced — keyed by event id, acks=all. Invalid rows
are reported with their line number and reason, never dead-lettered: the file is the
source of truth and is fixed and replayed, not patched on a topic.

Event times come from the file, so a replayed year fills the windows as it happened.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import yaml

from pipeline.settings import DEFAULT_COMPRESSION, Compression
from pipeline.validate import Rejection, parse_feedback
from schemas import FeedbackEvent, Reason

Format = Literal["csv", "jsonl"]

#: Fields of the contract a column or a constant may fill (``attributes.NAME`` too).
EVENT_FIELDS: tuple[str, ...] = tuple(FeedbackEvent.model_fields)
_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")
_BAD_UTF8 = re.compile("[\udc80-\udcff]")  # what errors="surrogateescape" leaves for bad bytes
_MAPPING_KEYS = {
    "columns", "constants", "time_format", "timezone", "skip_rows", "format", "event_id_prefix"
}  # fmt: skip


class MappingError(ValueError):
    """The mapping (file or flags) or the file itself cannot be used; nothing is read."""


class BrokerUnavailable(RuntimeError):
    """The broker or the target topic cannot be reached; nothing was produced."""


@dataclass(frozen=True, slots=True)
class Mapping:
    """How a row of an export becomes a feedback event.

    ``columns`` maps an event field (or ``attributes.NAME``) to a column of the file
    (a dotted path into nested objects for JSONL); ``constants`` fill fields the export
    lacks (``survey_type: nps``); columns named like an event field map by name.
    ``time_format`` is a ``strptime`` format (default: ISO 8601); naive times are read
    in ``timezone`` (an IANA name, DST-aware). ``skip_rows`` skips rows after the CSV
    header (Qualtrics puts the question texts and import ids there). ``event_id_prefix``
    goes before each row's id, so that a replayed answer has the id the tool's webhook
    gives it (``qualtrics-``, ``delighted-``: see :mod:`pipeline.ingest.adapters`) and the
    worker counts an answer received both ways once.
    """

    columns: dict[str, str] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    time_format: str | None = None
    timezone: str | None = None
    skip_rows: int = 0
    format: Format | None = None
    zone: ZoneInfo | None = None
    event_id_prefix: str = ""

    @classmethod
    def build(
        cls,
        file: Path | None = None,
        maps: list[str] | None = None,
        sets: list[str] | None = None,
        time_format: str | None = None,
        timezone: str | None = None,
        skip_rows: int | None = None,
        event_id_prefix: str | None = None,
    ) -> Mapping:
        """The mapping file (if any) overlaid with the flags; raises :class:`MappingError`."""
        doc: dict[str, Any] = {}
        if file is not None:
            try:
                doc = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise MappingError(f"mapping file {file}: {exc}") from None
            if not isinstance(doc, dict):
                raise MappingError(f"mapping file {file}: expected a YAML mapping")
            unknown = set(doc) - _MAPPING_KEYS
            if unknown:
                raise MappingError(
                    f"mapping file {file}: unknown keys {sorted(unknown)}; "
                    f"allowed: {sorted(_MAPPING_KEYS)}"
                )
        columns = {str(k): str(v) for k, v in (doc.get("columns") or {}).items()}
        constants = dict(doc.get("constants") or {})
        columns.update(_pairs(maps or [], "--map"))
        constants.update(_pairs(sets or [], "--set"))
        for name in [*columns, *constants]:
            if name not in EVENT_FIELDS and not name.startswith("attributes."):
                raise MappingError(
                    f"unknown event field {name!r}; fields: {', '.join(EVENT_FIELDS)} "
                    "or attributes.NAME"
                )
        both = sorted(set(columns) & set(constants))
        if both:
            raise MappingError(f"fields both mapped to a column and set constant: {both}")
        fmt = doc.get("format")
        if fmt not in (None, "csv", "jsonl"):
            raise MappingError(f"format must be csv or jsonl, got {fmt!r}")
        zone_name = timezone or doc.get("timezone")
        try:
            zone = ZoneInfo(zone_name) if zone_name else None
        except (ZoneInfoNotFoundError, ValueError):
            raise MappingError(
                f"unknown timezone {zone_name!r} (an IANA name such as Europe/Rome)"
            ) from None
        mapping = cls(
            columns=columns,
            constants=constants,
            time_format=time_format or doc.get("time_format"),
            timezone=zone_name,
            skip_rows=int(skip_rows if skip_rows is not None else doc.get("skip_rows") or 0),
            format=fmt,
            zone=zone,
            event_id_prefix=str(
                event_id_prefix if event_id_prefix is not None else doc.get("event_id_prefix") or ""
            ),
        )
        return mapping


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise MappingError(f"{flag} expects FIELD=VALUE, got {item!r}")
        out[name.strip()] = value
    return out


# --------------------------------------------------------------------- reading rows


@dataclass(frozen=True, slots=True)
class Row:
    """One record of the file: its first line number, and its values or why not."""

    line: int
    values: dict[str, Any] | None
    problem: Rejection | None = None


def detect_format(path: Path, explicit: str | None) -> Format:
    if explicit:
        if explicit not in ("csv", "jsonl"):
            raise MappingError(f"--format must be csv or jsonl, got {explicit!r}")
        return explicit  # type: ignore[return-value]
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise MappingError(f"cannot tell the format of {path.name}: pass --format csv|jsonl")


def read_rows(path: Path, fmt: Format, skip_rows: int = 0) -> Iterator[Row]:
    """The records of ``path`` with the line each starts on (1-based, header = line 1)."""
    if fmt == "jsonl":
        yield from _read_jsonl(path)
    else:
        yield from _read_csv(path, skip_rows)


def _read_jsonl(path: Path) -> Iterator[Row]:
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield Row(number, None, Rejection(
                    Reason.BAD_ENCODING, f"not valid UTF-8 at byte {err.start} of the line"
                ))  # fmt: skip
                continue
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError as err:
                yield Row(number, None, Rejection(Reason.NOT_JSON, f"not JSON: {err}"))
                continue
            if not isinstance(doc, dict):
                yield Row(number, None, Rejection(
                    Reason.SCHEMA_VIOLATION, f"expected a JSON object, got {type(doc).__name__}"
                ))  # fmt: skip
                continue
            yield Row(number, doc)


def _read_csv(path: Path, skip_rows: int) -> Iterator[Row]:
    # utf-8-sig: exports from Excel and Qualtrics start with a BOM; bad bytes survive as
    # surrogates so that one broken row is reported instead of stopping the import.
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip() for h in header]
        skipped = 0
        last_line = reader.line_num
        for cells in reader:
            line, last_line = last_line + 1, reader.line_num
            if skipped < skip_rows:
                skipped += 1
                continue
            if not any(c.strip() for c in cells):
                continue
            if any(_BAD_UTF8.search(c) for c in cells):
                yield Row(line, None, Rejection(Reason.BAD_ENCODING, "not valid UTF-8"))
                continue
            if len(cells) != len(header):
                yield Row(line, None, Rejection(
                    Reason.SCHEMA_VIOLATION,
                    f"row has {len(cells)} values, the header {len(header)} columns",
                ))  # fmt: skip
                continue
            yield Row(line, dict(zip(header, cells, strict=True)))


def csv_header(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        return [h.strip() for h in next(csv.reader(fh), [])]


def count_rows(path: Path, fmt: Format, skip_rows: int = 0) -> int:
    """Records in the file (for the progress bar's ETA): one cheap pass."""
    return sum(1 for _ in read_rows(path, fmt, skip_rows))


# --------------------------------------------------------------------- mapping rows


@dataclass(frozen=True, slots=True)
class Record:
    """A valid row, ready to produce."""

    line: int
    key: bytes
    value: bytes
    event_time: datetime


def check_columns(mapping: Mapping, header: list[str]) -> None:
    """Every mapped column must exist in a CSV header (a typo would empty a field)."""
    missing = [c for c in mapping.columns.values() if c not in header]
    if missing:
        raise MappingError(f"mapped columns not in the file: {missing}; the header has: {header}")


def to_event(values: dict[str, Any], mapping: Mapping) -> dict[str, Any] | Rejection:
    """The event document of one row (not yet validated), or why a value cannot be read."""
    event: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    mapped_columns = set(mapping.columns.values())
    for name in EVENT_FIELDS:  # columns named like a field map by name
        if name in values and name not in mapping.columns and name not in mapping.constants:
            if name in mapped_columns:
                continue
            event[name] = values[name]
    for name, value in mapping.constants.items():
        _put(event, attributes, name, value)
    for name, column in mapping.columns.items():
        _put(event, attributes, name, _lookup(values, column))
    if attributes:
        base = event.get("attributes")
        event["attributes"] = {**(base if isinstance(base, dict) else {}), **attributes}
    event = {k: v for k, v in event.items() if v is not None and v != ""}
    for name in ("score", "schema_version"):
        if isinstance(event.get(name), str) and _INTEGER.match(event[name]):
            event[name] = int(event[name])
    if isinstance(event.get("account_value"), str):
        with contextlib.suppress(ValueError):  # if not, the contract names the problem
            event["account_value"] = float(event["account_value"])
    if isinstance(event.get("attributes"), str):
        with contextlib.suppress(orjson.JSONDecodeError):
            event["attributes"] = orjson.loads(event["attributes"])
    if "event_time" in event:
        when = _event_time(event["event_time"], mapping)
        if isinstance(when, Rejection):
            return when
        event["event_time"] = when
    return event


def _put(event: dict[str, Any], attributes: dict[str, Any], name: str, value: Any) -> None:
    if name.startswith("attributes."):
        if value is not None and value != "":
            attributes[name.removeprefix("attributes.")] = value
    else:
        event[name] = value


def _lookup(values: dict[str, Any], column: str) -> Any:
    if column in values:
        return values[column]
    node: Any = values
    for part in column.split("."):  # JSONL: a dotted path into nested objects
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _event_time(value: Any, mapping: Mapping) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):  # epoch seconds
        return datetime.fromtimestamp(value, UTC).isoformat()
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        parsed = (
            datetime.strptime(text, mapping.time_format)
            if mapping.time_format
            else datetime.fromisoformat(text)
        )
    except ValueError:
        if mapping.time_format:
            return Rejection(
                Reason.SCHEMA_VIOLATION,
                f"event_time: {text!r} does not match time_format {mapping.time_format!r}",
                "event_time",
            )
        return value  # the contract's message names the problem
    if parsed.tzinfo is None:
        if mapping.zone is None:
            return Rejection(
                Reason.SCHEMA_VIOLATION,
                f"event_time: {text!r} has no timezone offset; set `timezone:` in the "
                "mapping file or --timezone (e.g. Europe/Rome)",
                "event_time",
            )
        parsed = parsed.replace(tzinfo=mapping.zone)
    return parsed.isoformat()


def validate_row(row: Row, mapping: Mapping, max_bytes: int) -> Record | Rejection:
    """One row -> a record to produce, or the dead-letter reason it would get."""
    if row.problem is not None:
        return row.problem
    assert row.values is not None
    event = to_event(row.values, mapping)
    if isinstance(event, Rejection):
        return event
    event_id = event.get("event_id")
    if mapping.event_id_prefix and isinstance(event_id, str | int) and event_id != "":
        event["event_id"] = f"{mapping.event_id_prefix}{event_id}"
    value = orjson.dumps(event)
    parsed = parse_feedback(value, max_bytes)
    if isinstance(parsed, Rejection):
        return parsed
    return Record(row.line, parsed.event_id.encode(), value, parsed.event_time)


def kind_of(rejection: Rejection) -> str:
    """The reported error kind: the dead-letter reason, with the field of a schema error."""
    if rejection.reason == Reason.SCHEMA_VIOLATION and rejection.field:
        return f"{rejection.reason.value} ({rejection.field.split('.')[0]})"
    return rejection.reason.value


# --------------------------------------------------------------------- the replay


@dataclass
class ReplayReport:
    """What a replay (or a dry run) did; ``exit_code`` follows the documented codes."""

    topic: str
    dry_run: bool
    rows: int = 0
    valid: int = 0
    produced: int = 0
    acknowledged: int = 0
    undelivered: list[tuple[int, str]] = field(default_factory=list)  # (line, error)
    invalid: dict[str, list[int]] = field(default_factory=dict)  # kind -> lines
    examples: dict[str, str] = field(default_factory=dict)  # kind -> first message
    duplicates: int = 0  # repeats of an event id identical to its last version: produced once
    updates: int = 0  # later rows of an event id with other content: produced, as updates
    out_of_order: int = 0  # more than the allowed lateness older than an earlier row
    elapsed: float = 0.0
    first_error: str | None = None

    @property
    def invalid_count(self) -> int:
        return sum(len(lines) for lines in self.invalid.values())

    @property
    def exit_code(self) -> int:
        if self.undelivered or (not self.dry_run and self.acknowledged < self.produced):
            return 3
        return 1 if self.invalid else 0

    def reject(self, line: int, rejection: Rejection) -> None:
        kind = kind_of(rejection)
        self.invalid.setdefault(kind, []).append(line)
        self.examples.setdefault(kind, rejection.message)

    def summary(self, examples: int = 5) -> str:
        rate = self.produced / self.elapsed if self.elapsed > 0 else 0.0
        lines = [f"rows read       {self.rows:,}", f"valid           {self.valid:,}"]
        if self.duplicates:
            lines.append(f"duplicates      {self.duplicates:,} (identical repeats of an "
                         "event id, produced once)")  # fmt: skip
        if self.updates:
            lines.append(f"updates         {self.updates:,} (later rows of an event id with "
                         "other content: the worker counts the last one, once)")  # fmt: skip
        if self.dry_run:
            lines.append(f"produced        0 (dry run; would go to {self.topic})")
        else:
            lines.append(
                f"produced        {self.produced:,} to {self.topic}, acknowledged "
                f"{self.acknowledged:,}, undelivered {len(self.undelivered):,}"
            )
            for line, error in self.undelivered[:examples]:
                lines.append(f"  undelivered line {line}: {error}")
        lines.append(f"invalid         {self.invalid_count:,}"
                     + (" (reported, not produced)" if self.invalid else ""))  # fmt: skip
        width = max((len(k) for k in self.invalid), default=0)
        for kind, where in sorted(self.invalid.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            shown = ", ".join(str(n) for n in where[:examples])
            more = ", ..." if len(where) > examples else ""
            lines.append(f"  {kind:<{width}}  {len(where):>7,}  lines {shown}{more}")
            lines.append(f"  {'':<{width}}           e.g. {self.examples[kind]}")
        if self.out_of_order:
            lines.append(
                f"out of order    {self.out_of_order:,} rows older than an earlier row by more "
                "than the allowed lateness: a worker may count them late (--sort-by-time)"
            )
        lines.append(f"elapsed         {self.elapsed:.1f} s"
                     + ("" if self.dry_run else f"  ({rate:,.0f} events/s)"))  # fmt: skip
        return "\n".join(lines)


ProgressFn = Callable[[int], None]


def replay(
    path: Path,
    mapping: Mapping,
    *,
    bootstrap_servers: list[str] | None,
    topic: str,
    fmt: Format,
    dry_run: bool = False,
    rate: float = 0.0,
    max_event_bytes: int = 256 * 1024,
    allowed_lateness_seconds: float = 600.0,
    sort_by_time: bool = False,
    connect_timeout: float = 15.0,
    progress: ProgressFn | None = None,
    errors_out: IO[str] | None = None,
    compression: Compression = DEFAULT_COMPRESSION,
) -> ReplayReport:
    """Validate every row of ``path`` and (unless ``dry_run``) produce the valid ones.

    ``rate`` is events per second (0 = as fast as possible); record batches are compressed
    with ``compression`` (``NPS_COMPRESSION``). ``progress(rows_done)`` is
    called often; ``errors_out`` receives one JSON line per invalid row. An unreachable
    broker or topic raises :class:`BrokerUnavailable` within ``connect_timeout`` seconds.
    """
    report = ReplayReport(topic=topic, dry_run=dry_run)
    if fmt == "csv":
        check_columns(mapping, csv_header(path))
    t0 = time.monotonic()
    producer = (
        None
        if dry_run
        else _producer(
            bootstrap_servers or [], topic, max_event_bytes, connect_timeout, compression
        )
    )
    seen: dict[bytes, bytes] = {}  # event id -> digest of its last version
    newest: datetime | None = None
    held: dict[bytes, Record] = {}  # --sort-by-time: the last version of each id
    pacer = _Pacer(rate)
    try:
        for row in read_rows(path, fmt, mapping.skip_rows):
            report.rows += 1
            result: Record | Rejection | None = validate_row(row, mapping, max_event_bytes)
            if isinstance(result, Record):
                digest = hashlib.blake2b(result.value, digest_size=16).digest()
                previous = seen.get(result.key)
                seen[result.key] = digest
                if previous == digest:  # an identical repeat: the worker would drop it
                    report.duplicates += 1
                    result = None
                elif previous is not None:  # an update, as the worker treats it
                    report.updates += 1
            if isinstance(result, Rejection):
                report.reject(row.line, result)
                if errors_out is not None:
                    errors_out.write(orjson.dumps({
                        "line": row.line, "kind": kind_of(result), "reason": result.reason.value,
                        "field": result.field, "message": result.message,
                    }).decode() + "\n")  # fmt: skip
            elif isinstance(result, Record):
                report.valid += 1
                lag = (newest - result.event_time).total_seconds() if newest else 0.0
                if lag > allowed_lateness_seconds:
                    report.out_of_order += 1
                newest = max(newest or result.event_time, result.event_time)
                if sort_by_time:
                    held[result.key] = result  # an update replaces the earlier version
                elif producer is not None:
                    pacer.wait()
                    _send(producer, topic, result, report)
            if progress is not None:
                progress(report.rows)
        if held and producer is not None:
            report.out_of_order = 0
            for record in sorted(held.values(), key=lambda r: r.event_time):
                pacer.wait()
                _send(producer, topic, record, report)
    finally:
        if producer is not None:
            try:
                producer.flush()
            finally:
                producer.close()
        report.elapsed = time.monotonic() - t0
    return report


def _producer(
    bootstrap_servers: list[str],
    topic: str,
    max_event_bytes: int,
    connect_timeout: float,
    compression: Compression,
) -> Any:
    """An acks=all producer whose topic is known to exist (or is auto-created) up front,
    so that a missing topic fails once, clearly, instead of blocking every send."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    timeouts: dict[str, int] = {"max_block_ms": int(connect_timeout * 1000)}
    if "bootstrap_timeout_ms" in KafkaProducer.DEFAULT_CONFIG:  # kafka-python 3
        timeouts["bootstrap_timeout_ms"] = timeouts["max_block_ms"]
    try:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id="nps-replay",
            acks="all",
            compression_type=compression.kafka_codec,
            linger_ms=20,
            batch_size=256 * 1024,
            max_request_size=max(1024 * 1024, 2 * max_event_bytes),
            request_timeout_ms=10_000,
            delivery_timeout_ms=30_000,
            **timeouts,
        )
    except KafkaError as exc:
        raise BrokerUnavailable(f"cannot reach the broker at {bootstrap_servers}: {exc}") from None
    try:
        producer.partitions_for(topic)
    except KafkaError as exc:
        producer.close()
        raise BrokerUnavailable(
            f"topic {topic} is not available ({exc!r}); create it with `nps-pipeline topics`"
        ) from None
    return producer


def _send(producer: Any, topic: str, record: Record, report: ReplayReport) -> None:
    def ok(_metadata: object) -> None:
        report.acknowledged += 1

    def failed(exc: BaseException) -> None:
        report.undelivered.append((record.line, repr(exc)))

    report.produced += 1
    try:
        future = producer.send(topic, key=record.key, value=record.value)
    except Exception as exc:  # a send that cannot even be queued (too large, closed)
        failed(exc)
        return
    future.add_callback(ok).add_errback(failed)


class _Pacer:
    """``rate`` sends per second, no catch-up burst after a stall; 0 = no pacing."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.due = time.monotonic()

    def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        if self.due > now:
            time.sleep(self.due - now)
        elif now - self.due > 1.0:
            self.due = now
        self.due += self.interval


# --------------------------------------------------------------------- progress display


class PlainProgress:
    """Progress lines every ``interval`` seconds (logs, CI: no TTY)."""

    def __init__(self, total: int, interval: float = 5.0, out: IO[str] | None = None) -> None:
        self.total = total
        self.interval = interval
        self.out = out or sys.stderr
        self.t0 = self.last = time.monotonic()

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        rate = done / (now - self.t0) if now > self.t0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        pct = 100 * done / self.total if self.total else 100.0
        self.out.write(
            f"replay: {done:,}/{self.total:,} rows ({pct:.0f}%)  {rate:,.0f} rows/s  "
            f"ETA {eta:,.0f} s\n"
        )
        self.out.flush()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None


class RichProgress:
    """A progress bar with rate and ETA on a terminal (rich, shipped with typer)."""

    def __init__(self, total: int, description: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.task = self.progress.add_task(description, total=total, rate="")
        self.last = 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.1:
            return
        self.last = now
        speed = self.progress.tasks[0].speed
        self.progress.update(
            self.task, completed=done, rate=f"{speed:,.0f} rows/s" if speed else ""
        )

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        task = self.progress.tasks[0]
        self.progress.update(self.task, completed=task.total)
        self.progress.stop()
