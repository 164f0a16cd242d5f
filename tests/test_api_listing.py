"""The segment listing keeps only the first ``limit`` rows while it ranks a dimension, in
steps with the event loop free between them: its total and rows equal a full sort of
every segment (hypothesis, brute force). It finds a dimension's segments by their keys'
field names, without parsing every key: the same as parsing them."""

from __future__ import annotations

import asyncio
from unittest.mock import patch

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import api
from pipeline.aggregate import WindowState, dimension_of, dimension_test
from pipeline.api import SORTS, as_of, listing_json, row_of, sort_rows, top_rows
from pipeline.segments import OVERALL, segment_key
from pipeline.settings import load_settings
from pipeline.windows import Counts
from schemas.windows import SegmentList, SegmentRow
from tests.deltas import deltas_record, every_segment

SETTINGS = load_settings()
NOW = 1_800_000_000.0


def state_of(answers: list[tuple[int, str, int]]) -> WindowState:
    """(agent, survey, score) answers, one minute apart, in a fresh state (an agent's
    segment in partition agent % 4, as a key lands in one partition)."""
    state = WindowState(SETTINGS)
    for i, (agent, survey, score) in enumerate(answers):
        partition = agent % 4
        ts = NOW - 3600 + i * 60
        counts = Counts.of_event(survey, score)
        value = deltas_record(f"agent=a{agent}", {int(ts // 60) * 60: counts}, ts)
        state.apply_packed([(partition, value)])
    state.apply_packed([(p, deltas_record("overall", {}, NOW)) for p in range(4)])
    return state


answer = st.tuples(
    st.integers(0, 30),
    st.sampled_from(["nps", "csat", "ces"]),
    st.integers(0, 10),
).map(lambda a: (a[0], a[1], a[2] if a[1] == "nps" else a[2] % 5 + 1 + (a[1] == "ces")))


@settings(max_examples=60, deadline=None)
@given(
    answers=st.lists(answer, min_size=1, max_size=60),
    sort=st.sampled_from(sorted(SORTS)),
    order=st.sampled_from(["asc", "desc"]),
    window=st.sampled_from(["5m", "1h", "24h", "all"]),
    limit=st.integers(1, 12),
    min_responses=st.integers(0, 3),
    step=st.sampled_from([1, 3, 1_000]),
)
def test_first_rows_equal_a_full_sort(
    answers: list[tuple[int, str, int]],
    sort: str,
    order: str,
    window: str,
    limit: int,
    min_responses: int,
    step: int,
) -> None:
    state = state_of(answers)
    every = []  # brute force: every segment's row, sorted whole
    models: dict[bytes, SegmentRow] = {}  # each row's JSON -> its contract model
    for segment, windows in every_segment(state):
        if not segment.startswith("agent="):
            continue
        stats = windows.stats(None if window == "all" else window)
        if stats.responses + stats.csat_responses + stats.ces_responses >= min_responses:
            row = SegmentRow(segment=segment, fields={"agent": segment[6:]}, stats=stats)
            every.append(row_of(row.model_dump(), sort, order))
            models[every[-1].json] = row
    with patch.object(api, "LISTING_STEP", step):  # the event loop runs every `step` segments
        total, rows = asyncio.run(
            top_rows(state, "agent", window, min_responses, sort, order, limit)
        )
    assert total == len(every)
    assert rows == sort_rows(every)[:limit]
    # merging workers' parts: the first rows of the union are among each part's first
    half = len(rows) // 2
    assert sort_rows(rows[half:] + rows[:half]) == rows
    # the answer's JSON is the contract model's, byte for byte; a peer's rows read back
    # from it (orjson) give the same rows again
    body = {"dimension": "agent", "window": window, "sort": sort, "order": order,
            "as_of": as_of(state), "total": total}  # fmt: skip
    model = SegmentList(**body, segments=[models[row.json] for row in rows])
    assert listing_json({**body, "segments": rows}) == model.model_dump_json().encode()
    part = orjson.loads(listing_json({"total": total, "segments": rows}))
    assert [row_of(row, sort, order) for row in part["segments"]] == rows


field_value = st.text(min_size=1, max_size=6, alphabet=st.sampled_from("ab|=%2 é"))
fields = st.dictionaries(
    st.sampled_from(["department", "agent", "channel", "dep"]), field_value, max_size=3
)


@settings(max_examples=300, deadline=None)
@given(fields=fields, other=fields)
def test_the_dimension_test_equals_parsing_the_key(
    fields: dict[str, str], other: dict[str, str]
) -> None:
    key = segment_key(fields)
    for dimension in {dimension_of(key), dimension_of(segment_key(other)), "department",
                      "dep", "department,channel", "agent,channel", OVERALL}:  # fmt: skip
        assert dimension_test(dimension)(key) == (dimension_of(key) == dimension), dimension


def test_every_sort_has_its_kpi_function() -> None:
    """A sort field added to ``api.SORTS`` without its ``windows.KPIS`` function would
    raise KeyError in every listing sorted by it."""
    from pipeline.windows import KPIS

    assert set(SORTS) == set(KPIS)
