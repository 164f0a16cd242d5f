"""Where the answers went when a benchmark run's window counts differ from the truth.

Read back after the run, before the workers stop: the packed deltas records
(:func:`pipeline.scoring_service.pack_deltas`) hold what the scoring stage published for
the windows stage. Summed per segment, each (deltas partition, raw partition, batch end)
group once as the windows stage applies them (a replayed group is skipped there too),
they tell the two places apart: a differing segment whose answers are all in the deltas
topic lost them in the windows stage (a record not applied, or applied to state that a
rebalance had moved), one whose answers are not all there lost them before (scoring, or
the broker). The packed records holding the most differing segments are named, so that
they can be looked up in the workers' logs (the benchmark's workers log at ``info``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable

import orjson

from pipeline.bench.dataset import Dataset
from pipeline.changelog import scan

#: (partition, offset, value) of a record read back
Read = tuple[int, int, bytes]


def answers_per_segment(records: Iterable[Read]) -> tuple[Counter[str], dict[str, list[str]]]:
    """Answers per segment in packed deltas records (NPS, CSAT and CES answers: fields 0,
    4 and 7 of a bucket's counts), each group once and none a scoring fence skips (see
    :meth:`pipeline.aggregate.WindowState.apply_packed`); and per segment the records
    holding it, as ``partition/offset``."""
    answers: Counter[str] = Counter()
    where: dict[str, list[str]] = {}
    seen: set[tuple[int, int, int]] = set()
    fences: dict[tuple[int, int], int] = {}  # (deltas partition, raw partition) -> token
    for partition, offset, value in records:
        document = orjson.loads(value)
        for raw, token in document.get("f", ()):
            fences[partition, raw] = max(token, fences.get((partition, raw), -1))
        for raw, end, segments, *token in document["g"]:
            if token and token[0] is not None and token[0] < fences.get((partition, raw), -1):
                continue  # fenced off, as the windows stage skips it
            if (partition, raw, end) in seen:
                continue
            seen.add((partition, raw, end))
            for segment, deltas in segments:
                answers[segment] += sum(c[0] + c[4] + c[7] for _, c in deltas["b"])
                where.setdefault(segment, []).append(f"{partition}/{offset}")
    return answers, where


def differing_segments(problems: list[str]) -> list[str]:
    """The segment keys of :func:`pipeline.bench.run.verify`'s problems
    (``agent=agent-000042.responses: 17 != 18``)."""
    found = {p.split(": ", 1)[0].rsplit(".", 1)[0] for p in problems if " != " in p}
    return sorted(found)


def explain(records: Iterable[Read], data: Dataset, problems: list[str]) -> list[str]:
    """A few lines saying where the differing segments' answers are."""
    segments = differing_segments(problems)
    if not segments:
        return []
    answers, where = answers_per_segment(records)
    held = []
    short = []
    for segment in segments:
        truth = data.truth.get(segment, Counter())
        expected = truth["responses"] + truth["csat_responses"] + truth["ces_responses"]
        (held if answers[segment] >= expected else short).append(segment)
    lines = [
        f"{len(segments)} segments differ; the deltas topic holds every answer of "
        f"{len(held)} of them (lost in the windows stage) and not of {len(short)} "
        "(lost before it: scoring or the broker)"
    ]
    records_of: Counter[str] = Counter(r for s in segments for r in set(where.get(s, ())))
    if records_of:
        lines.append(
            "deltas records (partition/offset) holding the most differing segments: "
            + ", ".join(f"{record} ({n})" for record, n in records_of.most_common(5))
        )
    return lines


async def read_topic(bootstrap: str, topic: str) -> list[Read]:
    """Every record of ``topic``, from its start to its end as of now."""
    found: list[Read] = []
    await scan(bootstrap, topic, None, lambda m: found.append((m.partition, m.offset, m.value)))
    return found


def explain_run(bootstrap: str, deltas_topic: str, data: Dataset, problems: list[str]) -> list[str]:
    """:func:`explain` for a run's deltas topic; a line saying why when it cannot."""
    try:
        records = asyncio.run(read_topic(bootstrap, deltas_topic))
    except Exception as exc:  # a diagnosis must not hide the failure it explains
        return [f"the deltas topic could not be read back: {type(exc).__name__}: {exc}"]
    return explain(records, data, problems)
