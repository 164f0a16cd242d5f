"""Adding one answer's :class:`~pipeline.windows.Counts` into a segment's: only the fields
the answer has.

Why: the scoring stage adds each answer's counts into every segment it belongs to
(~6.4 per answer), and ``Counts.add`` reads and writes all 14 fields when an answer has
2 to 5 that are not zero (an NPS promoter: ``responses`` and ``promoters``, plus
``rev_n``, ``rev_weight`` and ``rev_promoters`` with an account value): ~1.5 µs of the
stage's ~30 µs per event. :func:`adder_for` gives a function that adds only the fields
that can be non-zero in counts of that kind, generated once per set of fields.

The same result as ``Counts.add``, bit for bit: a skipped field of the answer is ``0``
or ``0.0``, and ``x + 0 == x``, ``x + 0.0 == x`` for every ``x`` except ``-0.0``, which
the counts of answers never hold (``Counts.add_event`` starts from ``0.0``, and a sum of
floats that are not ``-0.0`` is never ``-0.0``). Property-tested against ``Counts.add``
in ``tests/test_stage1_fast.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pipeline.windows import Counts

#: adds its second argument's counts into its first (only the fields it was made for)
Adder = Callable[[Counts, Counts], None]

_ADDERS: dict[tuple[str, ...], Adder] = {}


def adder(fields: Iterable[str]) -> Adder:
    """A function ``add(total, counts)`` doing ``total.<f> += counts.<f>`` for each of
    ``fields`` (Counts field names) and nothing else; one per set of fields."""
    wanted = set(fields)
    unknown = wanted - set(Counts.FIELDS)
    if unknown:
        raise ValueError(f"not fields of Counts: {sorted(unknown)}")
    names = tuple(name for name in Counts.FIELDS if name in wanted)
    found = _ADDERS.get(names)
    if found is None:
        body = "".join(f"    total.{name} += counts.{name}\n" for name in names) or "    pass\n"
        namespace: dict[str, Adder] = {}
        exec(f"def add(total, counts):\n{body}", namespace)  # noqa: S102 - field names only
        found = _ADDERS[names] = namespace["add"]
    return found


def adder_for(counts: Counts) -> Adder:
    """The :func:`adder` of the fields that are not zero in ``counts``."""
    return adder(name for name in Counts.FIELDS if getattr(counts, name))
