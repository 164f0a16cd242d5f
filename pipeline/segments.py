"""Segment keys: which aggregates an event belongs to.

An event is counted once in ``"overall"``, once per configured dimension it carries
(``"department=support"``) and once per configured combination whose fields it all
carries (``"department=support|channel=chat"``, fields in the order the combination
lists them). A missing (``None`` or blank) field gives no key for that dimension and
none for the combinations that use it.

Keys are the record keys of the windowed state and appear in the HTTP API, so they
are plain text. Values are written as they are except for three characters that
would make a key ambiguous: ``%``, ``|`` and ``=`` are percent-encoded (``%25``,
``%7C``, ``%3D``); :func:`parse_segment_key` decodes them. Dimension names are
configuration and must not contain ``|`` or ``=``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Protocol, runtime_checkable

OVERALL = "overall"

#: Dimensions with a segment of their own, by default every segment field of the event.
DIMENSIONS: tuple[str, ...] = ("department", "agent", "product", "channel", "region")
#: Combinations of dimensions with a segment of their own.
COMBINATIONS: tuple[tuple[str, ...], ...] = (("department", "channel"),)

_ESCAPES = (("%", "%25"), ("|", "%7C"), ("=", "%3D"))
_DECODE = {encoded: raw for raw, encoded in _ESCAPES}
_ENCODED = re.compile("%(?:25|7C|3D)", re.IGNORECASE)


@runtime_checkable
class HasSegments(Protocol):
    """Anything with a ``segments()`` mapping, such as ``schemas.feedback.FeedbackEvent``."""

    def segments(self) -> Mapping[str, str]: ...


def _escape(value: str) -> str:
    if "%" in value or "|" in value or "=" in value:
        for raw, encoded in _ESCAPES:
            value = value.replace(raw, encoded)
    return value


def _unescape(value: str) -> str:
    if "%" in value:
        return _ENCODED.sub(lambda m: _DECODE[m.group(0).upper()], value)
    return value


def _present(fields: Mapping[str, object]) -> dict[str, str]:
    """The non-blank segment values, as stripped strings."""
    out: dict[str, str] = {}
    for name, value in fields.items():
        if value is None:
            continue
        text = value.strip() if isinstance(value, str) else str(value)
        if text:
            out[name] = text
    return out


def segment_key(fields: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """The key of one segment, fields in the given order; no fields gives ``"overall"``."""
    pairs = fields.items() if isinstance(fields, Mapping) else fields
    key = "|".join(f"{name}={_escape(value)}" for name, value in pairs)
    return key or OVERALL


def segment_keys(
    source: HasSegments | Mapping[str, object],
    dimensions: Sequence[str] = DIMENSIONS,
    combinations: Sequence[Sequence[str]] = COMBINATIONS,
) -> list[str]:
    """Every segment key of an event: ``"overall"``, then dimensions, then combinations.

    ``source`` is an event with ``segments()`` or a mapping of field -> value (other
    keys of the mapping are ignored). Order: ``"overall"``, the configured dimensions
    the event carries in configured order, then the complete combinations in
    configured order. Duplicates (a one-field combination that is also a dimension,
    a combination listed twice) appear once.
    """
    # not isinstance(source, HasSegments): a runtime Protocol check costs ~10 µs per call
    raw = source if isinstance(source, Mapping) else source.segments()
    values = _present(raw)
    keys = [OVERALL]
    seen = {OVERALL}
    for name in dimensions:
        if name in values:
            key = f"{name}={_escape(values[name])}"
            if key not in seen:
                seen.add(key)
                keys.append(key)
    for combination in combinations:
        if combination and all(name in values for name in combination):
            key = segment_key([(name, values[name]) for name in combination])
            if key not in seen:
                seen.add(key)
                keys.append(key)
    return keys


def segment_labels(key: str) -> tuple[str, str]:
    """The ``(dimension, segment)`` labels of a key, as on ``/metrics`` and in alerts.

    ``overall`` -> ``("overall", "all")``; ``department=support`` ->
    ``("department", "support")``; ``department=support|channel=chat`` ->
    ``("department,channel", "support|chat")``.
    """
    if key == OVERALL:
        return OVERALL, "all"
    fields = parse_segment_key(key)
    return ",".join(fields), "|".join(fields.values())


def parse_segment_key(key: str) -> dict[str, str]:
    """Field -> value of a segment key (``{}`` for ``"overall"``), in key order.

    Raises ``ValueError`` for a malformed key (empty, a part without ``=``, an empty
    field name or a field repeated).
    """
    if key == OVERALL:
        return {}
    if not key:
        raise ValueError("empty segment key")
    fields: dict[str, str] = {}
    for part in key.split("|"):
        name, sep, value = part.partition("=")
        if not sep or not name:
            raise ValueError(f"malformed segment key {key!r}: part {part!r} is not field=value")
        if name in fields:
            raise ValueError(f"malformed segment key {key!r}: field {name!r} repeated")
        fields[name] = _unescape(value)
    return fields


#: Distinct values a :class:`SegmentKeyCache` holds before it starts over: bounds its
#: memory (~224 B per value with its key, tracemalloc: ~21 MiB for 100,000 agents).
KEY_CACHE_MAX = 200_000

#: per value of one field: (the value interned, its dimension key or None, its
#: stripped text or None when blank)
_Value = tuple[str | None, str | None, str | None]
#: what a missing field (None) gives
_ABSENT: _Value = (None, None, None)
_FIRST = itemgetter(0)
_STRIPPED = itemgetter(2)


def _picker(positions: Sequence[int]) -> Callable[[Sequence[_Value]], tuple[_Value, ...]]:
    """The items at ``positions`` (not empty) of a sequence, always as a tuple
    (``itemgetter`` of one position returns the item itself)."""
    if len(positions) == 1:
        position = positions[0]
        return lambda items: (items[position],)
    return itemgetter(*positions)


class SegmentKeyCache:
    """:func:`segment_keys` of events given as tuples of segment-field values, faster.

    Why: the scoring stage needs every event's segment keys, and building them from a
    mapping (strip, escape, join, de-duplicate) was ~12% of the stage's CPU per event.
    Values repeat (thousands of agents, a few departments, channels, regions) though
    whole tuples rarely do, so the work is cached per value of each field (its
    dimension key) and per tuple of combination values (the combination's key); which
    dimensions and combinations can give a key, and that none gives a key twice, is
    worked out once. Same keys in the same order as :func:`segment_keys` (property
    test). The values come back interned (the dedupe memory keeps one copy of each).
    Bounded: past ``max_entries`` cached values the cache starts over.
    """

    def __init__(
        self,
        fields: Sequence[str],
        dimensions: Sequence[str] = DIMENSIONS,
        combinations: Sequence[Sequence[str]] = COMBINATIONS,
        max_entries: int = KEY_CACHE_MAX,
    ) -> None:
        self.fields = tuple(fields)
        self.max_entries = max_entries
        index = {name: i for i, name in enumerate(self.fields)}
        #: field positions with a dimension, in configured order, each once
        self._dimensions: list[int] = []
        for name in dimensions:
            if name in index and index[name] not in self._dimensions:
                self._dimensions.append(index[name])
        dimension_names = {self.fields[i] for i in self._dimensions}
        #: (field names, their positions) per combination that can give a key of its own
        self._combinations: list[tuple[tuple[str, ...], tuple[int, ...]]] = []
        for combination in combinations:
            names = tuple(combination)
            if not names or not all(name in index for name in names):
                continue  # empty, or a field events never carry: never a key
            if len(names) == 1 and names[0] in dimension_names:
                continue  # the same key as that dimension's
            if any(names == known for known, _ in self._combinations):
                continue
            self._combinations.append((names, tuple(index[name] for name in names)))
        self._in_dimensions = [i in self._dimensions for i in range(len(self.fields))]
        self._values: list[dict[str | None, _Value]] = [{None: _ABSENT} for _ in self.fields]
        self._combined: list[dict[tuple[str, ...], str]] = [{} for _ in self._combinations]
        #: per combination: its field names, its keys by stripped values (the dict of
        #: ``_combined``) and what picks its fields' cached values in one C-level call.
        #: One list, not a zip: ``zip(..., strict=True)`` takes Python 3.11's slow
        #: keyword-call path (~0.45 µs per event) and a list comprehension per event
        #: cost about as much
        self._combination_lookups = [
            (names, known, _picker(positions))
            for (names, positions), known in zip(self._combinations, self._combined, strict=True)
        ]
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def lookup(self, values: tuple[str | None, ...]) -> tuple[tuple[str | None, ...], list[str]]:
        """``(values interned, segment keys)`` of an event's values of :attr:`fields`
        (None for a missing field), as ``segment_keys`` gives them."""
        if len(values) != len(self.fields):
            raise ValueError(f"expected {len(self.fields)} segment values, got {len(values)}")
        # one C-level pass over the fields: each dict also maps None to _ABSENT
        cached: list[_Value] = list(map(dict.get, self._values, values))
        if None in cached:  # values not seen yet
            cached = [
                found if found is not None else self._value(i, values[i])
                for i, found in enumerate(cached)
            ]
        keys = [OVERALL]
        for i in self._dimensions:
            key = cached[i][1]
            if key is not None:
                keys.append(key)
        for names, known, pick in self._combination_lookups:
            combined = tuple(map(_STRIPPED, pick(cached)))
            if None in combined:
                continue  # a field missing or blank: no key
            key = known.get(combined)
            if key is None:
                key = known[combined] = segment_key(zip(names, combined, strict=True))
                self._size += 1
            keys.append(key)
        return tuple(map(_FIRST, cached)), keys

    def _value(self, i: int, value: str) -> _Value:
        if self._size >= self.max_entries:
            for known in self._values:
                known.clear()
                known[None] = _ABSENT
            for combined in self._combined:
                combined.clear()
            self._size = 0
        text = value.strip()
        stripped = text or None
        key = None
        if stripped is not None and self._in_dimensions[i]:
            key = f"{self.fields[i]}={_escape(stripped)}"
        found = self._values[i][value] = (sys.intern(value), key, stripped)
        self._size += 1
        return found


class ThemeCombinationKeys:
    """Segment keys of the combinations that include a derived dimension (``theme``):
    ``department,theme`` gives an answer in department ``support`` whose comment has the
    themes ``billing`` and ``price`` the keys ``department=support|theme=billing`` and
    ``department=support|theme=price``, fields in the combination's order; none when one
    of its other fields is missing or blank (as :func:`segment_keys` gives none).

    ``fields`` are the names of the values :meth:`keys` is given (``SEGMENT_FIELDS``);
    a combination of ``combinations`` is taken when it names ``derived`` once and its
    other names are all ``fields``. Keys are cached per combination, themes and the
    combination's field values, bounded like :class:`SegmentKeyCache`.
    """

    def __init__(
        self,
        fields: Sequence[str],
        combinations: Sequence[Sequence[str]],
        derived: str,
        max_entries: int = KEY_CACHE_MAX,
    ) -> None:
        index = {name: i for i, name in enumerate(fields)}
        #: per combination: its names, the field position per name (None: derived)
        self.combinations: list[tuple[tuple[str, ...], tuple[int | None, ...]]] = []
        for combination in combinations:
            names = tuple(combination)
            if names.count(derived) != 1 or not all(n in index or n == derived for n in names):
                continue
            if any(names == known for known, _ in self.combinations):
                continue
            self.combinations.append((names, tuple(index.get(n) for n in names)))
        self.max_entries = max_entries
        #: per combination: (themes, its fields' values) -> its keys
        self._cache: list[dict[tuple[str, tuple[str | None, ...]], list[str]]] = [
            {} for _ in self.combinations
        ]
        self._size = 0

    def keys(self, values: Sequence[str | None], themes: str) -> list[str]:
        """The keys of an answer with segment field ``values`` (None when missing) and
        ``themes`` (theme names joined by ``|``, as the scoring stage stores them)."""
        keys: list[str] = []
        for (names, positions), cache in zip(self.combinations, self._cache, strict=True):
            picked = tuple(None if i is None else values[i] for i in positions)
            found = cache.get((themes, picked))
            if found is None:
                found = self._keys(names, positions, picked, themes)
                if self._size >= self.max_entries:
                    for known in self._cache:
                        known.clear()
                    self._size = 0
                cache[(themes, picked)] = found
                self._size += 1
            keys += found
        return keys

    @staticmethod
    def _keys(
        names: tuple[str, ...],
        positions: tuple[int | None, ...],
        picked: tuple[str | None, ...],
        themes: str,
    ) -> list[str]:
        stripped = [None if v is None else v.strip() or None for v in picked]
        if any(v is None for v, i in zip(stripped, positions, strict=True) if i is not None):
            return []  # a field missing or blank: no key
        fields = list(zip(names, stripped, strict=True))
        return [
            segment_key([(n, theme if v is None else v) for n, v in fields])
            for theme in themes.split("|")
        ]
