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
from collections.abc import Iterable, Mapping, Sequence
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
