"""Rolling windows of one segment: time buckets with running sums (no Kafka, no Faust).

Shape (see ``/work/shared/notes/design.md``): an event updates one *bucket* of
``bucket_seconds`` of event time (aligned to the Unix epoch); each rolling window
keeps a running sum of the buckets inside it, adding a bucket when it enters and
subtracting it when it leaves. Per event the cost is one bucket update, one total
update and at most one add per window; per clock step it is amortized O(1) per
bucket per window (each stored bucket enters and leaves each window once).

Window semantics, with ``w`` the bucket width and ``c = bucket_of(clock)``:

* Window ``L`` covers the buckets whose start ``b`` has ``c - L + w <= b <= c``: the
  last ``L / w`` buckets including the current one, i.e. event time in the half-open
  range ``[c - L + w, c + w)`` (:meth:`SegmentWindows.window_bounds`). An event exactly
  at a bucket start belongs to that bucket.
* The clock is event time chosen by the caller (the partition watermark) and only
  moves forward; before the first :meth:`SegmentWindows.advance` every window is empty.
* :meth:`SegmentWindows.add` may be late (bucket before ``c``): it is added to every
  window that covers its bucket *now*, and leaves each one when the clock passes it,
  exactly as if it had arrived on time. An event ahead of the clock is stored in its
  bucket and enters the windows when the clock reaches it. Every event counts in the
  all-time total at once.
* Buckets that fall out of the retention (default: the longest window) are dropped on
  every advance; they stay counted in the total, and their sum is kept as the segment's
  *pruned base* (:meth:`SegmentWindows.pruned_values`): the total is always the pruned
  base plus the stored buckets, which is how a changelog restores it (only buckets and
  the pruned base are written, see :mod:`pipeline.aggregate`).

Floating-point sums (revenue weights) are kept by adding and subtracting, so a window
can carry a rounding residue of order ``1e-16`` times the largest sum it ever held;
when a window has no revenue answers left its revenue sums are reset to exactly 0,
and :meth:`SegmentWindows.from_buckets` recomputes all sums from the buckets.
"""

from __future__ import annotations

import bisect
import operator
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from pipeline.stats import nps, nps_interval, wilson_interval
from schemas.feedback import SCALES, SurveyType
from schemas.windowstats import WindowStats

DEFAULT_BUCKET_SECONDS = 60
DEFAULT_WINDOWS: tuple[int, ...] = (300, 3600, 86400)

#: Event time: Unix seconds or an aware datetime.
Timestamp = float | int | datetime


def epoch_seconds(ts: Timestamp) -> float | int:
    """Unix seconds of a timestamp; naive datetimes are refused (ambiguous)."""
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise ValueError("naive datetime: event time needs a timezone")
        return ts.timestamp()
    return ts


def bucket_of(ts: Timestamp, bucket_seconds: int = DEFAULT_BUCKET_SECONDS) -> int:
    """Start (Unix seconds) of the bucket holding ``ts``: ``floor(ts / w) * w``."""
    return int(epoch_seconds(ts) // bucket_seconds) * bucket_seconds


# --------------------------------------------------------------------------- counts

_INT_FIELDS = (
    "responses",
    "promoters",
    "passives",
    "detractors",
    "csat_n",
    "csat_sum",
    "csat_satisfied",
    "ces_n",
    "ces_sum",
    "rev_n",
    "ces_sq",
)
_FLOAT_FIELDS = ("rev_weight", "rev_promoters", "rev_detractors")
#: Serialization order: new fields are only ever appended (stored lists stay readable).
_FIELDS = (*_INT_FIELDS[:-1], *_FLOAT_FIELDS, "ces_sq")
_GET_FIELDS = operator.attrgetter(*_FIELDS)


class Counts:
    """Additive counts of one bucket or window: everything a KPI or test needs.

    * NPS: ``responses`` answers, split in ``promoters`` / ``passives`` / ``detractors``.
    * CSAT: ``csat_n`` answers, ``csat_sum`` of scores, ``csat_satisfied`` (4-5).
    * CES: ``ces_n`` answers, ``ces_sum`` of scores, ``ces_sq`` sum of squared scores
      (for the variance of the mean in CES alerts).
    * Revenue (NPS answers with an ``account_value``): ``rev_n`` answers, ``rev_weight``
      the sum of their account values, ``rev_promoters`` / ``rev_detractors`` the sums
      of the account values of promoters / detractors.

    Serialized by :meth:`to_list` as a flat list in :attr:`FIELDS` order (new fields
    will only ever be appended; :meth:`from_list` fills missing trailing ones with 0).
    """

    __slots__ = _INT_FIELDS + _FLOAT_FIELDS
    FIELDS: ClassVar[tuple[str, ...]] = _FIELDS

    def __init__(
        self,
        responses: int = 0,
        promoters: int = 0,
        passives: int = 0,
        detractors: int = 0,
        csat_n: int = 0,
        csat_sum: int = 0,
        csat_satisfied: int = 0,
        ces_n: int = 0,
        ces_sum: int = 0,
        rev_n: int = 0,
        rev_weight: float = 0.0,
        rev_promoters: float = 0.0,
        rev_detractors: float = 0.0,
        ces_sq: int = 0,
    ) -> None:
        self.responses = responses
        self.promoters = promoters
        self.passives = passives
        self.detractors = detractors
        self.csat_n = csat_n
        self.csat_sum = csat_sum
        self.csat_satisfied = csat_satisfied
        self.ces_n = ces_n
        self.ces_sum = ces_sum
        self.rev_n = rev_n
        self.rev_weight = rev_weight
        self.rev_promoters = rev_promoters
        self.rev_detractors = rev_detractors
        self.ces_sq = ces_sq

    @classmethod
    def of_event(
        cls, survey_type: SurveyType | str, score: int, account_value: float | None = None
    ) -> Self:
        """The counts of one answer."""
        counts = cls()
        counts.add_event(survey_type, score, account_value)
        return counts

    def add_event(
        self, survey_type: SurveyType | str, score: int, account_value: float | None = None
    ) -> None:
        """Count one answer. ``account_value`` only weighs NPS answers (others ignore it).

        Raises ``ValueError`` for an unknown survey type or a score off its scale.
        """
        scale = SCALES.get(survey_type)
        if scale is None or not scale[0] <= score <= scale[1]:
            raise ValueError(f"score {score!r} is not on the {survey_type!r} scale")
        if survey_type == "nps":
            self.responses += 1
            if score >= 9:
                self.promoters += 1
            elif score >= 7:
                self.passives += 1
            else:
                self.detractors += 1
            if account_value is not None:
                self.rev_n += 1
                self.rev_weight += account_value
                if score >= 9:
                    self.rev_promoters += account_value
                elif score < 7:
                    self.rev_detractors += account_value
        elif survey_type == "csat":
            self.csat_n += 1
            self.csat_sum += score
            if score >= 4:
                self.csat_satisfied += 1
        else:
            self.ces_n += 1
            self.ces_sum += score
            self.ces_sq += score * score

    def add(self, other: Counts) -> None:
        """Add ``other`` into these counts (in place); ``other`` may be negative (an update
        taking an earlier version of an answer out: see :meth:`settle_revenue`)."""
        self.responses += other.responses
        self.promoters += other.promoters
        self.passives += other.passives
        self.detractors += other.detractors
        self.csat_n += other.csat_n
        self.csat_sum += other.csat_sum
        self.csat_satisfied += other.csat_satisfied
        self.ces_n += other.ces_n
        self.ces_sum += other.ces_sum
        self.rev_n += other.rev_n
        self.rev_weight += other.rev_weight
        self.rev_promoters += other.rev_promoters
        self.rev_detractors += other.rev_detractors
        self.ces_sq += other.ces_sq

    def add_values(self, values: Sequence[int | float]) -> None:
        """:meth:`add` of counts given as a :meth:`to_list` list (all fields, in order),
        without building a :class:`Counts` for them."""
        (r, pr, pa, de, cn, cs, csat, en, es, rn, rw, rp, rd, sq) = values
        self.responses += r
        self.promoters += pr
        self.passives += pa
        self.detractors += de
        self.csat_n += cn
        self.csat_sum += cs
        self.csat_satisfied += csat
        self.ces_n += en
        self.ces_sum += es
        self.ces_sq += sq
        if rn or rw or rp or rd:  # adding 0.0 would only allocate new floats
            self.rev_n += rn
            self.rev_weight += rw
            self.rev_promoters += rp
            self.rev_detractors += rd

    def subtract_values(self, values: Sequence[int | float]) -> None:
        """:meth:`subtract` of counts given as a :meth:`to_list` list."""
        (r, pr, pa, de, cn, cs, csat, en, es, rn, rw, rp, rd, sq) = values
        self.responses -= r
        self.promoters -= pr
        self.passives -= pa
        self.detractors -= de
        self.csat_n -= cn
        self.csat_sum -= cs
        self.csat_satisfied -= csat
        self.ces_n -= en
        self.ces_sum -= es
        self.ces_sq -= sq
        self.rev_n -= rn
        if self.rev_n == 0:
            self.rev_weight = self.rev_promoters = self.rev_detractors = 0.0
        elif rw or rp or rd:  # subtracting 0.0 would only allocate new floats
            self.rev_weight -= rw
            self.rev_promoters -= rp
            self.rev_detractors -= rd

    def settle_revenue(self) -> None:
        """Set the revenue sums to exactly 0 when no revenue answer is left.

        For counts of real answers (a bucket, a window, a total), after adding a delta
        that took answers out (an update); not for deltas themselves, whose ``rev_n`` may
        be 0 while their sums are not (one answer swapped for another)."""
        if self.rev_n == 0:
            self.rev_weight = self.rev_promoters = self.rev_detractors = 0.0

    def subtract(self, other: Counts) -> None:
        """Subtract ``other`` (previously added) from these counts, in place.

        When no revenue answer is left the revenue sums are set to exactly 0, so
        floating-point residue cannot outlive the answers it came from.
        """
        self.responses -= other.responses
        self.promoters -= other.promoters
        self.passives -= other.passives
        self.detractors -= other.detractors
        self.csat_n -= other.csat_n
        self.csat_sum -= other.csat_sum
        self.csat_satisfied -= other.csat_satisfied
        self.ces_n -= other.ces_n
        self.ces_sum -= other.ces_sum
        self.ces_sq -= other.ces_sq
        self.rev_n -= other.rev_n
        if self.rev_n == 0:
            self.rev_weight = self.rev_promoters = self.rev_detractors = 0.0
        else:
            self.rev_weight -= other.rev_weight
            self.rev_promoters -= other.rev_promoters
            self.rev_detractors -= other.rev_detractors

    def copy(self) -> Counts:
        """An independent copy."""
        other = Counts.__new__(Counts)
        other.responses = self.responses
        other.promoters = self.promoters
        other.passives = self.passives
        other.detractors = self.detractors
        other.csat_n = self.csat_n
        other.csat_sum = self.csat_sum
        other.csat_satisfied = self.csat_satisfied
        other.ces_n = self.ces_n
        other.ces_sum = self.ces_sum
        other.rev_n = self.rev_n
        other.rev_weight = self.rev_weight
        other.rev_promoters = self.rev_promoters
        other.rev_detractors = self.rev_detractors
        other.ces_sq = self.ces_sq
        return other

    def is_empty(self) -> bool:
        """True when every count and sum is 0 (nothing was added, or all was subtracted)."""
        return not any(_GET_FIELDS(self))

    def to_list(self) -> list[int | float]:
        """Compact form for a table value / changelog record, in :attr:`FIELDS` order."""
        return list(_GET_FIELDS(self))

    @classmethod
    def from_list(cls, values: Sequence[int | float]) -> Self:
        """Inverse of :meth:`to_list`; missing trailing fields are 0, extra ones an error."""
        if len(values) > len(cls.FIELDS):
            raise ValueError(f"Counts has {len(cls.FIELDS)} fields, got {len(values)} values")
        counts = cls()
        for name, value in zip(cls.FIELDS, values, strict=False):
            if name in _INT_FIELDS:
                if value != int(value):
                    raise ValueError(f"Counts.{name} must be an integer, got {value!r}")
                value = int(value)
            else:
                value = float(value)
            setattr(counts, name, value)
        return counts

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Counts):
            return NotImplemented
        return self.to_list() == other.to_list()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={v!r}" for n in self.FIELDS if (v := getattr(self, n)))
        return f"Counts({shown})"


# --------------------------------------------------------------------------- labels

_LABEL = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
ALL_TIME = "all"


def window_label(seconds: int | None) -> str:
    """Short name of a window length: 300 -> "5m", 3600 -> "1h", 86400 -> "24h".

    Whole hours are written in hours (a day is "24h"), else whole minutes, else
    seconds; ``None`` (the all-time total) is ``"all"``.
    """
    if seconds is None:
        return ALL_TIME
    if seconds <= 0:
        raise ValueError(f"window length must be positive, got {seconds}")
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def parse_window_label(label: str) -> int | None:
    """Seconds of a window label ("90s", "5m", "1h", "24h", "7d", "300"); "all" -> None."""
    if label.strip().lower() == ALL_TIME:
        return None
    match = _LABEL.match(label.lower())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"not a window length: {label!r} (examples: 5m, 1h, 24h, all)")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


# --------------------------------------------------------------------------- windows


class _Shape:
    """The configuration every segment of a worker shares (one object, not one per
    segment): bucket width, window lengths longest first, retention, and the index of
    each window's running sum."""

    __slots__ = ("desc", "index", "retain", "width")

    def __init__(self, width: int, desc: tuple[int, ...], retain: int) -> None:
        self.width = width
        self.desc = desc
        self.retain = retain
        self.index = {length: i for i, length in enumerate(desc)}


_SHAPES: dict[tuple[int, tuple[int, ...], int], _Shape] = {}


def _shape(bucket_seconds: int, windows: Sequence[int], retain_seconds: int | None) -> _Shape:
    """The validated, shared :class:`_Shape` of a configuration."""
    if not isinstance(bucket_seconds, int) or bucket_seconds <= 0:
        raise ValueError(f"bucket_seconds must be a positive integer, got {bucket_seconds!r}")
    lengths = sorted(set(windows))
    if not lengths:
        raise ValueError("at least one window length is needed")
    for length in lengths:
        if not isinstance(length, int) or length <= 0 or length % bucket_seconds:
            raise ValueError(
                f"window {length!r} s is not a positive multiple of the {bucket_seconds} s bucket"
            )
    retain = lengths[-1] if retain_seconds is None else retain_seconds
    if retain < lengths[-1]:
        raise ValueError(f"retain_seconds {retain} is shorter than the longest window")
    desc = tuple(reversed(lengths))
    key = (bucket_seconds, desc, retain)
    shape = _SHAPES.get(key)
    if shape is None:
        shape = _SHAPES[key] = _Shape(bucket_seconds, desc, retain)
    return shape


#: Stored per bucket: the integer fields of :attr:`Counts.FIELDS` (all but the revenue
#: sums, in that order) in one integer array, the revenue sums in one ``array('d')``.
_NI = len(_INT_FIELDS)
#: The running sum of every empty window (shared: never modified).
_NO_COUNTS = Counts()
_NF = len(_FLOAT_FIELDS)
#: The integer arrays' widths, narrowest first: a segment's counts start as 16-bit
#: integers and are widened (all of the segment's buckets) the first time a value does
#: not fit. Most segments are agents with a few answers per bucket: 22 instead of 88
#: bytes of counts per bucket (``bench_memory --events 520000 --text``, 100,000 agents
#: and 511,000 buckets: RSS growth 228.5 against 266.9 MiB).
_WIDTHS = ("h", "i", "q")
_WIDER = {"h": "i", "i": "q"}
_ZEROS_I = {code: array(code, bytes(array(code).itemsize * _NI)) for code in _WIDTHS}
_ZEROS_F = array("d", bytes(8 * _NF))
#: The revenue sums of a segment without revenue answers: no array of its own (most
#: answers carry no account value: 24 bytes a bucket and 64 a segment saved for those)
_NO_FLOATS = array("d")
_ZERO_SUMS = (0.0,) * _NF
_NO_INTS = array(_WIDTHS[0])
#: the clock last set by an advance: the segments advanced to the same bucket share its
#: int object (32 bytes each: 3 MiB with 100,000 segments, measured by tracemalloc)
_last_clock: list[int] = [0]


def _narrowest(values: Sequence[int]) -> array[int]:
    """``values`` in the narrowest integer array that holds them all."""
    for code in _WIDTHS[:-1]:
        try:
            return array(code, values)
        except OverflowError:
            continue
    return array(_WIDTHS[-1], values)


def _counts_of(ints: array[int], o: int, floats: array[float], f: int) -> Counts:
    """A :class:`Counts` of the bucket stored at ``ints[o:o + 11]``, ``floats[f:f + 3]``."""
    c = Counts.__new__(Counts)
    (
        c.responses,
        c.promoters,
        c.passives,
        c.detractors,
        c.csat_n,
        c.csat_sum,
        c.csat_satisfied,
        c.ces_n,
        c.ces_sum,
        c.rev_n,
        c.ces_sq,
    ) = ints[o : o + _NI]
    c.rev_weight, c.rev_promoters, c.rev_detractors = floats[f : f + _NF] or _ZERO_SUMS
    return c


def _values_of(ints: array[int], o: int, floats: array[float], f: int) -> list[int | float]:
    """The bucket stored at ``o`` / ``f`` as a :meth:`Counts.to_list` list."""
    values: list[int | float] = ints[o : o + _NI].tolist()
    values[10:10] = floats[f : f + _NF].tolist() or _ZERO_SUMS
    return values


class SegmentWindows:
    """Buckets, rolling-window running sums and all-time total of one segment.

    ``bucket_seconds`` is the bucket width ``w``; ``windows`` the window lengths in
    seconds (each a positive multiple of ``w``); ``retain_seconds`` how far back
    buckets are kept (default and minimum: the longest window). See the module
    docstring for the window semantics.

    Storage is columnar, for memory: a worker holds hundreds of thousands of segments
    with a few buckets each. The stored buckets are three flat arrays (their starts,
    ascending; their integer counts, 11 per bucket; their revenue sums, 3 per bucket,
    only once the segment has a revenue answer), 30 bytes a bucket while the counts fit
    16 bits (54 with revenue sums) and no Python object per bucket; the window sums are
    :class:`Counts` (read on every alert round, see :meth:`peek`), the all-time total is
    derived from the longest one when read (:meth:`_all_time`); the
    configuration is one shared object. Integer counts stay exact: they are stored in
    16-bit integers until one does not fit, then 32-bit, then 64-bit (see
    :meth:`_widen`).
    """

    __slots__ = ("_clock", "_floats", "_ints", "_pruned", "_shape", "_starts", "_sums")

    def __init__(
        self,
        bucket_seconds: int = DEFAULT_BUCKET_SECONDS,
        windows: Sequence[int] = DEFAULT_WINDOWS,
        retain_seconds: int | None = None,
    ) -> None:
        shape = _shape(bucket_seconds, windows, retain_seconds)
        self._shape = shape
        self._starts: array[int] = array("q")
        self._ints: array[int] = _NO_INTS
        self._floats: array[float] = _NO_FLOATS
        #: running sum per window, longest first (``_shape.desc`` order); an empty window
        #: holds the shared, never modified :data:`_NO_COUNTS` (most windows of most
        #: agents are empty at any one time)
        #: (a tuple, replaced when a window's sum object changes: a list is two objects,
        #: ~32 bytes more per segment)
        self._sums: tuple[Counts, ...] = (_NO_COUNTS,) * len(shape.desc)
        #: the sum of the buckets dropped by the retention (shared :data:`_NO_COUNTS`
        #: until one is): total = pruned base + stored buckets (:meth:`_all_time`)
        self._pruned = _NO_COUNTS
        self._clock: int | None = None

    # -- configuration and state ------------------------------------------------------

    @property
    def bucket_seconds(self) -> int:
        return self._shape.width

    @property
    def windows(self) -> tuple[int, ...]:
        """Configured window lengths in seconds, ascending."""
        return self._shape.desc[::-1]

    @property
    def retain_seconds(self) -> int:
        return self._shape.retain

    @property
    def clock(self) -> int | None:
        """Start of the current bucket (the last advance), ``None`` before the first."""
        return self._clock

    def bucket_of(self, ts: Timestamp) -> int:
        """Start of the bucket holding ``ts``."""
        width = self._shape.width
        return int(epoch_seconds(ts) // width) * width

    def __len__(self) -> int:
        """Number of stored (non-pruned) buckets."""
        return len(self._starts)

    # -- updates ----------------------------------------------------------------------

    def add(self, ts: Timestamp, delta: Counts) -> int:
        """Add ``delta`` (counts of events at time ``ts``) and return its bucket start.

        Updates the bucket (and so the total) and every window covering the bucket at the
        current clock; a bucket ahead of the clock enters the windows on
        :meth:`advance`. ``delta`` is not kept (it may be reused by the caller).
        """
        return self.add_values(ts, delta.to_list())

    def add_values(self, ts: Timestamp, values: Sequence[int | float]) -> int:
        """:meth:`add` of counts given as a :meth:`Counts.to_list` list (all 14 fields,
        integers where the field is one): the windows stage's path, no Counts built."""
        width = self._shape.width
        start = int(epoch_seconds(ts) // width) * width
        starts = self._starts
        n = len(starts)
        if n and starts[-1] == start:  # the newest bucket: most events
            i = n - 1
        elif not n or start > starts[-1]:
            # new arrays of the exact size (``+``), not grown in place (``append`` and
            # ``extend`` over-allocate: ~150 B per segment of a few buckets)
            i = n
            self._starts = starts + array("q", (start,))
            self._ints = self._ints + _ZEROS_I[self._ints.typecode]
            if self._floats:
                self._floats = self._floats + _ZEROS_F
        else:
            i = bisect.bisect_left(starts, start)
            if starts[i] != start:
                self._starts = starts[:i] + array("q", (start,)) + starts[i:]
                ints, floats = self._ints, self._floats
                zeros = _ZEROS_I[ints.typecode]
                self._ints = ints[: i * _NI] + zeros + ints[i * _NI :]
                if floats:
                    self._floats = floats[: i * _NF] + _ZEROS_F + floats[i * _NF :]
        (r, pr, pa, de, cn, cs, csat, en, es, rn, rw, rp, rd, sq) = values
        ints = self._ints
        o = i * _NI
        # new values first, then stored: an assignment that does not fit raises before
        # it changes anything, so the same assignments are made again once widened
        v = ints[o] + r, ints[o + 1] + pr, ints[o + 2] + pa, ints[o + 3] + de
        try:
            ints[o], ints[o + 1], ints[o + 2], ints[o + 3] = v
        except OverflowError:
            ints = self._widen(o, v)
        if cn or cs or csat:  # (an update can swap one score for another: cn 0, cs not)
            v = ints[o + 4] + cn, ints[o + 5] + cs, ints[o + 6] + csat
            try:
                ints[o + 4], ints[o + 5], ints[o + 6] = v
            except OverflowError:
                ints = self._widen(o + 4, v)
        if en or es or sq:
            # (rev_n, between them, stored again as it is)
            v = ints[o + 7] + en, ints[o + 8] + es, ints[o + 9], ints[o + 10] + sq
            try:
                ints[o + 7], ints[o + 8], ints[o + 9], ints[o + 10] = v
            except OverflowError:
                ints = self._widen(o + 7, v)
        removal = rn < 0  # an update took a revenue answer out
        if rn or rw or rp or rd:
            try:
                ints[o + 9] += rn
            except OverflowError:
                ints = self._widen(o + 9, (ints[o + 9] + rn,))
            floats = self._floats
            if not floats:  # the segment's first revenue: its sums get an array
                floats = self._floats = array("d", bytes(8 * _NF * len(self._starts)))
            f = i * _NF
            if removal and ints[o + 9] == 0:
                floats[f] = floats[f + 1] = floats[f + 2] = 0.0
            else:
                floats[f] += rw
                floats[f + 1] += rp
                floats[f + 2] += rd
        clock = self._clock
        if clock is not None and start <= clock:
            oldest = clock + width - start  # bucket is in window L iff L >= oldest
            sums = self._sums
            for j, length in enumerate(self._shape.desc):
                if length < oldest:
                    break
                acc = sums[j]
                if acc is _NO_COUNTS:
                    acc = self._set_sum(j, Counts())
                acc.add_values(values)
                if removal:
                    acc.settle_revenue()
        return start

    def add_event(
        self,
        ts: Timestamp,
        survey_type: SurveyType | str,
        score: int,
        account_value: float | None = None,
    ) -> int:
        """:meth:`add` of one answer; returns its bucket start."""
        return self.add(ts, Counts.of_event(survey_type, score, account_value))

    def _set_sum(self, j: int, counts: Counts) -> Counts:
        """Make ``counts`` the running sum of window ``j``; return it."""
        sums = self._sums
        self._sums = (*sums[:j], counts, *sums[j + 1 :])
        return counts

    def _widen(self, o: int, values: Sequence[int]) -> array[int]:
        """Widen the segment's integer counts until ``values`` fit at ``o``; store them
        there and return the new array (the values' earlier fields may already be
        stored: they are stored again, the same)."""
        ints = self._ints
        while True:
            wider = _WIDER.get(ints.typecode)
            if wider is None:
                raise OverflowError(f"counts {values} do not fit in 64-bit integers")
            ints = array(wider, ints)
            try:
                ints[o : o + len(values)] = array(ints.typecode, values)
            except OverflowError:
                continue
            self._ints = ints
            return ints

    def _indices(self, low: int, high: int) -> range:
        """Indices of the stored buckets whose start ``b`` has ``low <= b <= high``."""
        if low > high:
            return range(0)
        i = bisect.bisect_left(self._starts, low)
        return range(i, bisect.bisect_right(self._starts, high, lo=i))

    def _sum_range(self, low: int, high: int) -> Counts:
        """Sum of the stored buckets in ``[low, high]``: a new Counts, or the shared
        :data:`_NO_COUNTS` when there is none (never modify the result in place)."""
        indices = self._indices(low, high)
        if not indices:
            return _NO_COUNTS
        acc = Counts()
        ints, floats = self._ints, self._floats
        for i in indices:
            acc.add_values(_values_of(ints, i * _NI, floats, i * _NF))
        return acc

    def advance(self, now: Timestamp) -> list[int]:
        """Move the clock to ``now``'s bucket (never backwards), then :meth:`prune`.

        For each window, buckets that leave it are subtracted and buckets that enter
        it (stored earlier while ahead of the clock) are added; a jump longer than
        the window rebuilds its sum from the buckets of the new range. Returns the
        starts of the buckets dropped by the retention (for changelog deletes).
        """
        new = self.bucket_of(now)
        old = self._clock
        if old is not None and new <= old:
            return self.prune()
        if new == _last_clock[0]:  # one int object for every segment at this clock
            new = _last_clock[0]
        else:
            _last_clock[0] = new
        w = self._shape.width
        ints, floats = self._ints, self._floats
        sums = self._sums
        for j, length in enumerate(self._shape.desc):
            new_low = new - length + w
            if old is None or new_low > old:  # first position, or disjoint ranges
                fresh = self._sum_range(new_low, new)
                if fresh is not sums[j]:  # (both the shared empty sum: nothing to do)
                    self._set_sum(j, fresh)
                continue
            leaving = self._indices(old - length + w, new_low - w)
            entering = self._indices(old + w, new)
            if not leaving and not entering:
                continue
            acc = sums[j]
            if acc is _NO_COUNTS:
                acc = self._set_sum(j, Counts())
            for i in leaving:
                acc.subtract_values(_values_of(ints, i * _NI, floats, i * _NF))
            for i in entering:
                acc.add_values(_values_of(ints, i * _NI, floats, i * _NF))
            if not (acc.responses or acc.csat_n or acc.ces_n) and acc.is_empty():
                self._set_sum(j, _NO_COUNTS)  # the window emptied: its Counts is freed
        self._clock = new
        return self.prune()

    def prune(self, retain_seconds: int | None = None) -> list[int]:
        """Drop buckets that left a window of ``retain_seconds`` (default: the retention).

        ``retain_seconds`` may not be shorter than the longest window. Dropped buckets
        stay in the total. Returns the dropped starts, ascending.
        """
        shape = self._shape
        retain = shape.retain if retain_seconds is None else retain_seconds
        if retain < shape.desc[0]:
            raise ValueError(f"retain_seconds {retain} is shorter than the longest window")
        if self._clock is None:
            return []
        starts = self._starts
        if not starts or starts[0] >= self._clock - retain + shape.width:
            return []  # the usual case, without a search
        cut = bisect.bisect_left(starts, self._clock - retain + shape.width)
        dropped = starts[:cut].tolist()
        pruned = self._pruned
        if pruned is _NO_COUNTS:
            pruned = self._pruned = Counts()
        ints, floats = self._ints, self._floats
        for i in range(cut):
            pruned.add_values(_values_of(ints, i * _NI, floats, i * _NF))
        pruned.settle_revenue()
        self._starts = starts[cut:]  # new arrays of the exact size, as in add_values
        self._ints = self._ints[cut * _NI :]
        self._floats = self._floats[cut * _NF :]
        return dropped

    # -- queries ----------------------------------------------------------------------

    def _index(self, window: int | str) -> int:
        length = parse_window_label(window) if isinstance(window, str) else window
        index = self._shape.index.get(length)  # type: ignore[arg-type]
        if index is None:
            raise ValueError(f"window {window!r} is not configured (have {self.windows})")
        return index

    def window(self, window: int | str, now: Timestamp | None = None) -> Counts:
        """Counts of a configured window (seconds or label), a copy.

        With ``now`` the clock is first advanced to it (a ``now`` before the clock
        changes nothing). Before any advance every window is empty.
        """
        index = self._index(window)
        if now is not None:
            self.advance(now)
        return self._sums[index].copy()

    def peek(self, window: int | None) -> Counts:
        """The running sum of a window (seconds; None: all time), not a copy: read it,
        never change it."""
        return self._all_time(True) if window is None else self._sums[self._shape.index[window]]

    def window_bounds(self, window: int | str) -> tuple[int, int] | None:
        """Event-time range ``[start, end)`` of a window at the clock; None before any."""
        length = self._shape.desc[self._index(window)]
        if self._clock is None:
            return None
        return self._clock - length + self._shape.width, self._clock + self._shape.width

    @property
    def oldest_start(self) -> int | None:
        """Start of the oldest stored bucket (None when none is stored)."""
        return self._starts[0] if self._starts else None

    def bucket_series(self, start: int, end: int) -> Iterator[tuple[int, Counts]]:
        """Stored buckets ``(start, counts)`` with ``start <= b < end``, ascending (each
        ``Counts`` built for the caller from the stored values)."""
        starts, ints, floats = self._starts, self._ints, self._floats
        for i in self._indices(start, end - 1):
            yield starts[i], _counts_of(ints, i * _NI, floats, i * _NF)

    def range_counts(self, start: int, end: int) -> Counts:
        """Sum of the stored buckets whose start ``b`` has ``start <= b < end`` (a copy)."""
        return self._sum_range(start, end - 1)

    def total(self) -> Counts:
        """All-time counts, including pruned buckets (a copy)."""
        return self._all_time()

    def _all_time(self, shared: bool = False) -> Counts:
        """The all-time counts, a new :class:`Counts`: the pruned base, the longest
        window's running sum and the stored buckets outside that window (ahead of the
        clock, or older and not pruned yet: none with the default retention but a late
        answer's until the next advance). ``shared``: when the longest window holds
        everything (nothing pruned, nothing outside it), its own running sum, not a copy
        (:meth:`peek`: read it, never change it).

        Derived, not kept: a kept total was one more :class:`Counts` per segment (13.7
        MiB at 100,000 segments by tracemalloc in a worker, besides its revenue floats)
        and one more addition per delta, for reads that are rarer (snapshots, all-time
        listings)."""
        starts, ints, floats = self._starts, self._ints, self._floats
        clock = self._clock
        if clock is None:  # before the first advance every window is empty
            acc = Counts()
            outside: Iterable[int] = range(len(starts))
        else:
            longest = self._sums[0]
            low = bisect.bisect_left(starts, clock - self._shape.desc[0] + self._shape.width)
            high = bisect.bisect_right(starts, clock, lo=low)
            if low == 0 and high == len(starts) and self._pruned is _NO_COUNTS:
                return longest if shared else longest.copy()
            acc = longest.copy()
            outside = (*range(low), *range(high, len(starts)))
        if self._pruned is not _NO_COUNTS:
            acc.add(self._pruned)
        for i in outside:
            acc.add_values(_values_of(ints, i * _NI, floats, i * _NF))
        acc.settle_revenue()
        return acc

    def pruned_values(self) -> list[int | float] | None:
        """The pruned base (the sum of the buckets the retention dropped) as a
        :meth:`Counts.to_list` list, None while none was dropped."""
        return None if self._pruned is _NO_COUNTS else self._pruned.to_list()

    def _find(self, start: int) -> int | None:
        starts = self._starts
        i = bisect.bisect_left(starts, start)
        return i if i < len(starts) and starts[i] == start else None

    def bucket(self, start: int) -> Counts | None:
        """The stored bucket starting at ``start`` (built from the stored values), or
        None when there is none."""
        i = self._find(start)
        return None if i is None else _counts_of(self._ints, i * _NI, self._floats, i * _NF)

    def bucket_values(self, start: int) -> list[int | float] | None:
        """:meth:`bucket` as a :meth:`Counts.to_list` list (for the changelog)."""
        i = self._find(start)
        return None if i is None else _values_of(self._ints, i * _NI, self._floats, i * _NF)

    def buckets(self) -> Iterator[tuple[int, Counts]]:
        """Stored buckets ``(start, counts copy)``, ascending, for persistence."""
        starts, ints, floats = self._starts.tolist(), self._ints, self._floats
        for i, start in enumerate(starts):
            yield start, _counts_of(ints, i * _NI, floats, i * _NF)

    def stats(
        self,
        window: int | str | None = None,
        now: Timestamp | None = None,
        confidence: float = 0.95,
    ) -> WindowStats:
        """:class:`WindowStats` of a window, or of the all-time total for ``None``/"all"."""
        return WindowStats(**self.kpis(window, now, confidence))

    def kpis(
        self,
        window: int | str | None = None,
        now: Timestamp | None = None,
        confidence: float = 0.95,
    ) -> dict[str, Any]:
        """:meth:`stats` as the dict of its fields (:func:`window_kpis`)."""
        if window is None or (isinstance(window, str) and parse_window_label(window) is None):
            if now is not None:
                self.advance(now)
            return window_kpis(self._all_time(), None, confidence=confidence)
        length = self._shape.desc[self._index(window)]
        counts = self.window(length, now)
        bounds = self.window_bounds(length)
        start = end = None
        if bounds is not None:
            start = datetime.fromtimestamp(bounds[0], UTC)
            end = datetime.fromtimestamp(bounds[1], UTC)
        return window_kpis(counts, length, start=start, end=end, confidence=confidence)

    # -- rebuild ----------------------------------------------------------------------

    @classmethod
    def from_buckets(
        cls,
        buckets: Iterable[tuple[int | str, Counts | Sequence[int | float]]],
        total: Counts | Sequence[int | float] | None = None,
        now: Timestamp | None = None,
        *,
        pruned: Counts | Sequence[int | float] | None = None,
        bucket_seconds: int = DEFAULT_BUCKET_SECONDS,
        windows: Sequence[int] = DEFAULT_WINDOWS,
        retain_seconds: int | None = None,
    ) -> SegmentWindows:
        """Rebuild from stored buckets (``Counts`` or :meth:`Counts.to_list` lists).

        ``pruned`` is the stored pruned base (:meth:`pruned_values`): the total is it
        plus the given buckets. ``total`` (the all-time total, as changelogs before the
        pruned base stored it) may be given instead: the pruned base is then the total
        minus the buckets. With neither the total is the sum of the given buckets
        (wrong if some were pruned). With ``now`` (the restored
        watermark) the clock is set and every window sum is computed from the
        buckets, which gives the same windows as the instance that stored them.
        Each start must be aligned to the bucket width and appear once.
        """
        sw = cls(bucket_seconds, windows, retain_seconds)
        given: dict[int, Counts] = {}
        for key, counts in buckets:
            start = int(key)  # tolerates "60" (a JSON object key) but not 60.5
            if float(key) != start:
                raise ValueError(f"bucket start {key!r} is not a whole number of seconds")
            if start % bucket_seconds:
                raise ValueError(f"bucket start {start} is not aligned to {bucket_seconds} s")
            if start in given:
                raise ValueError(f"bucket {start} given twice")
            given[start] = counts if isinstance(counts, Counts) else Counts.from_list(counts)
        ordered = sorted(given)
        sw._starts = array("q", ordered)
        sw._ints = _narrowest([getattr(given[b], name) for b in ordered for name in _INT_FIELDS])
        sums = [getattr(given[b], n) for b in ordered for n in _FLOAT_FIELDS]
        sw._floats = array("d", sums) if any(sums) else _NO_FLOATS
        if pruned is not None and total is not None:
            raise ValueError("give the pruned base or the total, not both")
        if pruned is not None:
            sw._pruned = pruned.copy() if isinstance(pruned, Counts) else Counts.from_list(pruned)
        if total is not None:
            base = total.copy() if isinstance(total, Counts) else Counts.from_list(total)
            stored = Counts()
            for start in ordered:
                stored.add(given[start])
            base.subtract(stored)  # the total less the buckets' sum
            if not base.is_empty():
                sw._pruned = base
        if now is not None:
            sw.advance(now)
        return sw


# --------------------------------------------------------------------------- stats


def window_stats(
    counts: Counts,
    window_seconds: int | None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    confidence: float = 0.95,
) -> WindowStats:
    """The KPIs of ``counts``; ``window_seconds=None`` labels them "all"."""
    return WindowStats(
        **window_kpis(counts, window_seconds, start=start, end=end, confidence=confidence)
    )


def window_kpis(
    counts: Counts,
    window_seconds: int | None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """:func:`window_stats` as the dict of its fields, in their order, without building
    the model: what the window snapshots serialize directly (``pipeline.snapshots``)."""
    c = counts
    n = c.responses
    nps_low: float | None = None
    nps_high: float | None = None
    share_low: float | None = None
    share_high: float | None = None
    if n:
        nps_low, nps_high = nps_interval(c.promoters, c.detractors, n, confidence)
        share_low, share_high = wilson_interval(c.detractors, n, confidence)
    return {
        "window": window_label(window_seconds),
        "window_seconds": window_seconds,
        "start": start,
        "end": end,
        "confidence": confidence,
        "responses": n,
        "promoters": c.promoters,
        "passives": c.passives,
        "detractors": c.detractors,
        "nps": _nps(c),
        "nps_low": nps_low,
        "nps_high": nps_high,
        "detractor_share": _detractor_share(c),
        "detractor_share_low": share_low,
        "detractor_share_high": share_high,
        "csat_responses": c.csat_n,
        "csat_satisfied_share": _csat_satisfied_share(c),
        "csat_mean": _csat_mean(c),
        "ces_responses": c.ces_n,
        "ces_mean": _ces_mean(c),
        "revenue_responses": c.rev_n,
        "revenue_weighted_nps": _revenue_weighted_nps(c),
    }


def _nps(c: Counts) -> float | None:
    return nps(c.promoters, c.detractors, c.responses)


def _detractor_share(c: Counts) -> float | None:
    return c.detractors / c.responses if c.responses else None


def _csat_satisfied_share(c: Counts) -> float | None:
    return c.csat_satisfied / c.csat_n if c.csat_n else None


def _csat_mean(c: Counts) -> float | None:
    return c.csat_sum / c.csat_n if c.csat_n else None


def _ces_mean(c: Counts) -> float | None:
    return c.ces_sum / c.ces_n if c.ces_n else None


def _revenue_weighted_nps(c: Counts) -> float | None:
    if c.rev_n and c.rev_weight > 0:
        return 100.0 * (c.rev_promoters - c.rev_detractors) / c.rev_weight
    return None


#: field of :class:`WindowStats` -> its value from a window's counts, as
#: :func:`window_kpis` computes it (for ranking segments without building their stats)
KPIS: dict[str, Callable[[Counts], float | None]] = {
    "nps": _nps,
    "detractor_share": _detractor_share,
    "responses": operator.attrgetter("responses"),
    "csat_satisfied_share": _csat_satisfied_share,
    "csat_mean": _csat_mean,
    "ces_mean": _ces_mean,
    "revenue_weighted_nps": _revenue_weighted_nps,
}
