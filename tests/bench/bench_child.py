"""Benchmark of the comment-analysis child: its CPU per comment, in process and for real.

Run from the repository root::

    python -m tests.bench.bench_child                 # 20,000 records per record set
    python -m tests.bench.bench_child --events 50000 --repeats 5

Why: with text analytics on, every comment costs the child process of
:mod:`pipeline.text.offload` CPU on a machine whose cores the workers need too, so this
measures what the child spends per comment on three record sets: the simulator's records
with the respondent's language (``attributes.language``: detection skipped), the same
without it (detection runs), and the end-to-end benchmark's dataset
(:func:`pipeline.bench.dataset.generate`: English comments of one to three of 24
sentences, no language).

* **in process**: the child's per-record work (:func:`~pipeline.text.insight.read_comment`
  then :func:`~pipeline.text.insight.insight_of`) over the set's commented records, after
  a warm-up pass (lemma and word caches filled: a long-running child's steady state);
  wall-clock ``perf_counter``, best of ``--repeats``.
* **child process**: a real :class:`~pipeline.text.offload.AnalysisProcess` given the
  records in batches of 1,000 as the scoring stage hands them over (only those with a
  comment), every result collected; the child's CPU time (user + system, from
  ``/proc/<pid>/stat``) per comment, messages and pickling included. Best of
  ``--repeats``, alternating with the in-process runs.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import count

import orjson

from pipeline.bench.dataset import generate
from pipeline.simulator import FeedbackSimulator, SimulatorConfig
from pipeline.text.analyze import CommentAnalyzer
from pipeline.text.insight import insight_of, read_comment
from pipeline.text.offload import AnalysisProcess
from pipeline.text.themes import DEFAULT_TAXONOMY

MAX_EVENT_BYTES = 256 * 1024
_TICK = os.sysconf("SC_CLK_TCK")
_BATCHES = count(1)


def simulator_values(count: int, hints: bool, seed: int = 7) -> list[bytes]:
    """``count`` simulator records (60% commented) as raw values; ``hints=False`` drops
    ``attributes.language``."""
    sim = FeedbackSimulator(SimulatorConfig(seed=seed))
    start = datetime.now(UTC) - timedelta(minutes=5)
    out = []
    for i in range(count):
        event = sim.next_event(start + timedelta(milliseconds=i))
        if not hints:
            del event["attributes"]["language"]
        out.append(orjson.dumps(event))
    return out


def record_sets(count: int) -> dict[str, list[bytes]]:
    """The record sets measured (see the module doc), commented records only."""
    sets = {
        "simulator, hint": simulator_values(count, hints=True),
        "simulator, no hint": simulator_values(count, hints=False),
        "bench dataset": generate(count, 1000, end=time.time()).values,
    }
    return {name: [v for v in values if b'"comment"' in v] for name, values in sets.items()}


def in_process_us(analyzer: CommentAnalyzer, values: list[bytes]) -> float:
    """µs per record of the child's per-record work, in this process."""
    began = time.perf_counter()
    for value in values:
        read = read_comment(value, MAX_EVENT_BYTES)
        if read is not None:
            insight_of(analyzer, True, read[0], read[1], read[2])
    return (time.perf_counter() - began) / len(values) * 1e6


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def child_us(child: AnalysisProcess, values: list[bytes], batch: int = 1000) -> float:
    """The child's CPU µs per record, the records handed over ``batch`` at a time."""
    assert child._proc is not None
    pid = child._proc.pid
    before = _cpu_seconds(pid)
    for i in range(0, len(values), batch):
        chunk = values[i : i + batch]
        number = next(_BATCHES)  # a new number per batch: the child starts it afresh
        child.submit(number, True, chunk)
        got = 0
        while True:
            results, done = child.results(number)
            got += len(results)
            if done:
                break
        assert got == len(chunk), (got, len(chunk))
    return (_cpu_seconds(pid) - before) / len(values) * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="records per set (20,000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measure (3)")
    args = parser.parse_args(argv)

    sets = record_sets(args.events)
    analyzer = CommentAnalyzer()
    child = AnalysisProcess(DEFAULT_TAXONOMY, MAX_EVENT_BYTES)
    child.start()
    try:
        measures: dict[str, Callable[[list[bytes]], float]] = {
            "in process": lambda values: in_process_us(analyzer, values),
            "child process": lambda values: child_us(child, values),
        }
        for values in sets.values():  # warm-up: caches of both analyzers filled
            for measure in measures.values():
                measure(values)
        best: dict[tuple[str, str], float] = {}
        for _ in range(args.repeats):
            for set_name, values in sets.items():
                for name, measure in measures.items():
                    us = measure(values)
                    key = (set_name, name)
                    best[key] = min(us, best.get(key, us))
    finally:
        child.stop()
    print(f"µs per comment, best of {args.repeats} (records with a comment)")
    print(f"{'record set':<20} {'comments':>9} {'in process':>11} {'child CPU':>10}")
    for set_name, values in sets.items():
        print(
            f"{set_name:<20} {len(values):>9,} {best[(set_name, 'in process')]:>11.1f} "
            f"{best[(set_name, 'child process')]:>10.1f}"
        )


if __name__ == "__main__":
    main()
