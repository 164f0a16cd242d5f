"""The benchmark's diagnosis of differing counts: which segments' answers the deltas topic
holds, read from packed deltas records as the scoring stage writes them."""

from __future__ import annotations

from collections import Counter

from pipeline.bench.dataset import Dataset
from pipeline.bench.diagnose import answers_per_segment, differing_segments, explain
from pipeline.scoring import deltas_document
from pipeline.scoring_service import pack_deltas, pack_fence
from pipeline.windows import Counts


def answers(*events: tuple[str, int]) -> Counts:
    counts = Counts()
    for survey, score in events:
        counts.add(Counts.of_event(survey, score))
    return counts


def record(*groups: tuple[int, int, list[tuple[str, Counts]]]) -> bytes:
    return pack_deltas(
        [
            (raw, end, [(segment, deltas_document({600: c}, 630.0)) for segment, c in items])
            for raw, end, items in groups
        ],
        630.0,
    )


def test_answers_are_summed_per_segment_and_a_replayed_group_counts_once() -> None:
    first = record(
        (0, 100, [("agent=a", answers(("nps", 9), ("csat", 5))), ("agent=b", answers(("ces", 2)))]),
        (1, 80, [("agent=a", answers(("nps", 3)))]),
    )
    replay = record((0, 100, [("agent=a", answers(("nps", 9), ("csat", 5)))]))
    later = record((0, 150, [("agent=b", answers(("nps", 10), ("nps", 0)))]))
    found, where = answers_per_segment([(2, 0, first), (2, 1, replay), (2, 2, later)])
    assert found == Counter({"agent=a": 3, "agent=b": 3})
    assert where == {"agent=a": ["2/0", "2/0"], "agent=b": ["2/0", "2/2"]}
    # the same group in another deltas partition is another group
    found, _ = answers_per_segment([(2, 0, first), (3, 0, replay)])
    assert found["agent=a"] == 5


def test_groups_behind_a_scoring_fence_are_left_out_as_the_windows_skip_them() -> None:
    def group(end: int, token: int) -> bytes:
        items = [("agent=a", deltas_document({600: answers(("nps", 9))}, 630.0))]
        return pack_deltas([(0, end, items, token)], 630.0)

    found, _ = answers_per_segment(
        [
            (1, 0, group(10, 1)),
            (1, 1, pack_fence({0: 2})),
            (1, 2, group(20, 1)),
            (1, 3, group(25, 2)),
        ]
    )
    assert found["agent=a"] == 2  # the late group of token 1 after the fence is not counted


def test_explain_tells_lost_in_the_windows_stage_from_lost_before_it() -> None:
    data = Dataset(
        values=[],
        truth={
            "agent=a": Counter({"responses": 2, "promoters": 1, "detractors": 1}),
            "agent=b": Counter({"responses": 1, "csat_responses": 2}),
            "agent=c": Counter({"ces_responses": 1}),
        },
    )
    records = [
        (1, 7, record((0, 100, [("agent=a", answers(("nps", 9), ("nps", 2)))]))),
        (1, 8, record((0, 200, [("agent=b", answers(("nps", 9), ("csat", 1)))]))),
        (0, 3, record((1, 50, [("agent=c", answers(("ces", 5)))]))),
    ]
    problems = [
        "agent=a.responses: 1 != 2",
        "agent=a.detractors: 0 != 1",
        "agent=b.csat_responses: 1 != 2",
    ]
    assert differing_segments(problems) == ["agent=a", "agent=b"]
    assert explain(records, data, problems) == [
        "2 segments differ; the deltas topic holds every answer of 1 of them (lost in the "
        "windows stage) and not of 1 (lost before it: scoring or the broker)",
        "deltas records (partition/offset) holding the most differing segments: 1/7 (1), 1/8 (1)",
    ]
    assert explain(records, data, []) == []


def test_explain_run_reads_the_deltas_topic_back_from_the_broker(broker, unique) -> None:
    """Records written as the scoring stage writes them (one batch per send), read back
    from the real broker: every partition to its end."""
    import asyncio

    from pipeline.batchio import BatchProducer
    from pipeline.bench.diagnose import explain_run, read_topic
    from pipeline.settings import Settings
    from pipeline.topics import ensure_topics

    topic = f"diagnose-{unique}-deltas"
    ensure_topics(Settings(broker_url=broker.bootstrap, topic_deltas=topic, topic_partitions=2))
    values = [record((0, end, [("agent=a", answers(("nps", 9)))])) for end in range(1, 6)]

    async def write() -> None:
        producer = BatchProducer(broker.bootstrap, max_request_size=1 << 20, client_id="t")
        await producer.start()
        try:
            for value in values:  # five batches on partition 1, nothing on partition 0
                await producer.send([(topic, 1, None, value)])
        finally:
            await producer.stop()

    asyncio.run(write())
    assert asyncio.run(read_topic(broker.bootstrap, topic)) == [
        (1, offset, value) for offset, value in enumerate(values)
    ]
    data = Dataset(values=[], truth={"agent=a": Counter({"responses": 6, "promoters": 6})})
    assert explain_run(broker.bootstrap, topic, data, ["agent=a.responses: 4 != 6"])[0] == (
        "1 segments differ; the deltas topic holds every answer of 0 of them (lost in the "
        "windows stage) and not of 1 (lost before it: scoring or the broker)"
    )
