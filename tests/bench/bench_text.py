"""Benchmark of comment analytics: µs per comment for each part and the whole analyzer.

Run from the repository root::

    python -m tests.bench.bench_text                  # 10,000 simulator comments
    python -m tests.bench.bench_text --count 50000 --high-accuracy

Input: the comments of :class:`pipeline.simulator.FeedbackSimulator` (every answer with a
comment, English and Italian as the simulator mixes them), generated before timing.
Each part runs over all comments once as a warm-up (lingua's models and simplemma's
dictionaries are loaded, lemma caches filled: the steady state of a long-running
worker), then is timed over all of them; the whole analyzer is also timed with the lemma
caches cleared first ("cold"), and with the respondent's language given as a hint
(``attributes.language``, which skips detection). Single thread, wall-clock time with
``perf_counter``.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pipeline.simulator import FeedbackSimulator, SimulatorConfig
from pipeline.text import CommentAnalyzer
from pipeline.text.normalize import lemma, word_forms


def simulator_comments(count: int, seed: int = 7) -> list[str]:
    """``count`` realistic comments from the simulator (every answer commented)."""
    sim = FeedbackSimulator(SimulatorConfig(seed=seed, comment_probability=1.0))
    start = datetime(2026, 1, 5, 9, tzinfo=UTC)
    return [sim.next_event(start + timedelta(seconds=i))["comment"] for i in range(count)]


def simulator_languages(count: int, seed: int = 7) -> list[str]:
    """The respondents' languages (``attributes.language``) of :func:`simulator_comments`."""
    sim = FeedbackSimulator(SimulatorConfig(seed=seed, comment_probability=1.0))
    start = datetime(2026, 1, 5, 9, tzinfo=UTC)
    return [
        sim.next_event(start + timedelta(seconds=i))["attributes"]["language"] for i in range(count)
    ]


def _per_comment_us(run: Callable[[int], object], count: int) -> float:
    began = time.perf_counter()
    for i in range(count):
        run(i)
    return (time.perf_counter() - began) / count * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="comments (default 10,000)")
    parser.add_argument(
        "--high-accuracy", action="store_true", help="lingua high-accuracy mode (default: low)"
    )
    args = parser.parse_args(argv)

    comments = simulator_comments(args.count)
    hints = simulator_languages(args.count)
    categories = ["promoter", "passive", "detractor"]
    began = time.perf_counter()
    analyzer = CommentAnalyzer(low_accuracy=not args.high_accuracy)
    build_s = time.perf_counter() - began

    languages = [analyzer.detector.detect(c) for c in comments]
    n = len(comments)
    parts: dict[str, Callable[[int], object]] = {
        "language": lambda i: analyzer.detector.detect(comments[i]),
        "sentiment": lambda i: analyzer.sentiment.score(comments[i], languages[i]),
        "themes": lambda i: analyzer.themes.match(comments[i], languages[i]),
        "analyzer (all)": lambda i: analyzer.analyze(comments[i], categories[i % 3]),
        "analyzer, hint": lambda i: analyzer.analyze(comments[i], categories[i % 3], hints[i]),
    }
    lemma.cache_clear()
    word_forms.cache_clear()
    cold = _per_comment_us(parts["analyzer (all)"], n)

    mode = "high (preloaded models)" if args.high_accuracy else "low"
    mix = Counter(languages)
    print(f"{n:,} simulator comments, mean {sum(map(len, comments)) / n:.0f} chars, "
          f"languages {dict(mix)}; lingua accuracy mode: {mode}")  # fmt: skip
    print(f"analyzer built in {build_s * 1000:.0f} ms")
    print(f"{'part':<16} {'µs/comment':>11}")
    for name, run in parts.items():
        _per_comment_us(run, n)  # warm-up
        print(f"{name:<16} {_per_comment_us(run, n):>11.1f}")
    print(f"{'analyzer (cold)':<16} {cold:>11.1f}   (lemma caches empty, first pass)")
    flagged = sum(analyzer.analyze(c, categories[i % 3]).disagrees for i, c in enumerate(comments))
    print(f"disagreements flagged (categories dealt round-robin): {flagged:,}")


if __name__ == "__main__":
    main()
