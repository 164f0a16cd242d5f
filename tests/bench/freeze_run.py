"""Two-worker benchmark runs with one worker frozen past its session timeout mid-run.

Run from the repository root::

    python -m tests.bench.freeze_run                  # 4 runs, 300,000 records, 8 s freeze
    python -m tests.bench.freeze_run --runs 6 --freeze 8 --delay 3

Each run is ``nps-pipeline bench``'s pipeline phase with two workers (the same dataset,
workers, ground-truth check and mismatch diagnosis, :func:`pipeline.bench.run.run_pipeline`)
and, ``--delay`` seconds after the records start to be produced, one worker stopped with
SIGSTOP for ``--freeze`` seconds (the benchmark's workers have a 6 s session timeout):
both consumer groups rebalance while data flows, the other worker takes its partitions
over, and the frozen one comes back to refused commits and rejoins (it stopped there
until the twelfth session). The window counts must
still equal the ground truth. Printed per run: events/s, count mismatches and, when
there are some, where the answers went (:mod:`pipeline.bench.diagnose`); the workers'
logs (``info``) are in the directory printed first. Exit 1 if any run differs.

Tenth and eleventh sessions: 2,160 to 4,718 segments short in 5 of 8 runs, the answers all
in the deltas topic; hidden by timing with a rebuild catch-up. Twelfth session: the cause
was Faust's consumer leaving deltas records out around the rebalance and committing past
them; the windows now read such holes themselves (README, "Failure behaviour"; the worker
logs each as ``not delivered by the consumer``). A run whose windows never reach the
answer count ends after 180 s and counts as differing.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pipeline.bench.run as bench
from pipeline.bench.run import BenchConfig, broker_for, dataset_of, run_pipeline


def frozen_later(delay: float, seconds: float) -> None:
    """In ``delay`` seconds, SIGSTOP the newest ``python -m pipeline worker`` for
    ``seconds`` seconds (the benchmark starts nothing else of that name)."""

    def freeze() -> None:
        time.sleep(delay)
        found = subprocess.run(
            ["pgrep", "-f", "-x", ".*-m pipeline worker"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if not found:
            print("  no worker to freeze", flush=True)
            return
        victim = max(int(pid) for pid in found)
        print(f"  freezing worker {victim} for {seconds:.0f} s", flush=True)
        os.kill(victim, signal.SIGSTOP)
        time.sleep(seconds)
        os.kill(victim, signal.SIGCONT)

    threading.Thread(target=freeze, daemon=True).start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--freeze", type=float, default=8.0, help="seconds stopped (8)")
    parser.add_argument("--delay", type=float, default=3.0, help="seconds into producing (3)")
    args = parser.parse_args()

    produce = bench.produce

    async def produce_then_freeze(bootstrap: str, topic: str, values: list[bytes]) -> Any:
        frozen_later(args.delay, args.freeze)
        return await produce(bootstrap, topic, values)

    bench.produce = produce_then_freeze  # run_pipeline's producing of the raw records
    cfg = BenchConfig(
        workers=[2], naive_seconds=0, latency_seconds=0, events=args.events, timeout_seconds=180
    )
    logdir = Path(tempfile.mkdtemp(prefix="nps-freeze-"))
    print(f"logs in {logdir}", flush=True)
    failed = 0
    with broker_for(cfg) as bootstrap:
        data = dataset_of(cfg, end=time.time() - 60)
        for i in range(1, args.runs + 1):
            try:
                result, workers, env = run_pipeline(bootstrap, data, cfg, 2, logdir)
            except TimeoutError as exc:  # the windows never got every answer
                failed += 1
                print(f"run {i}: {exc}", flush=True)
                continue
            for worker in workers:
                worker.stop()
            failed += bool(result["mismatch_count"])
            print(
                f"run {i}: {result['events_per_s']:,.0f} events/s, "
                f"{result['mismatch_count']} count mismatches ({env['NPS_APP_ID']})",
                flush=True,
            )
            for line in result["mismatch_diagnosis"]:
                print(f"  {line}", flush=True)
    print(f"{failed} of {args.runs} runs differ from the ground truth")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
