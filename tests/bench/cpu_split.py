"""Where the CPU goes during ``nps-pipeline bench``: per process and per thread, from /proc.

Run from the repository root (Linux only)::

    python -m tests.bench.cpu_split                    # 1 worker, 500,000 records, 8 s
    python -m tests.bench.cpu_split --workers 2
    python -m tests.bench.cpu_split --compression snappy

It starts ``nps-pipeline bench --events N --workers W --naive-seconds 0
--latency-seconds 0``, waits for the pipeline's first progress line (the workers have
been at full load for ~5 s then), and reads ``/proc/<pid>/task/<tid>/stat`` and
``status`` of the broker, the workers and their analysis children (the processes that
bench started, none other) and of the bench itself (polling the workers' counts) at the
start and the end of a ``--seconds`` window.

Printed per thread: CPU share of one core (user + system), voluntary and involuntary
context switches (involuntary ones: the thread was runnable and preempted, i.e. waited
for a CPU); then per process, and the total against the machine's cores. A process that
exited inside the window is reported: the window then overlapped the end of the run,
and its figures are not the steady state (use more ``--events`` or fewer ``--seconds``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.settings import DEFAULT_COMPRESSION

#: command-line patterns of the processes measured, and the name they are shown with
#: (the bench itself: its producer is done by then, what it does is poll the workers)
ROLES = (
    ("tansu", "broker"),
    ("pipeline worker", "worker"),
    ("pipeline.text.offload", "child"),
    ("pipeline bench", "bench"),
)
#: the bench's first progress line: the pipeline has been at full load for a while
READY_LINE = "answers in the windows"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    role: str
    pid: int
    tid: int
    name: str
    ticks: int
    voluntary: int
    involuntary: int


def _role(pid: int) -> str | None:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    for pattern, role in ROLES:
        if pattern in command:
            return role
    return None


def descendants(root: int) -> set[int]:
    """The processes started, directly or not, by ``root`` (from each one's parent pid)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def sample(root: int) -> dict[tuple[int, int], Sample]:
    """Every thread of the measured processes under ``root``, keyed by (pid, tid) (other
    brokers and workers on the machine, e.g. of tests running meanwhile, are not read)."""
    found: dict[tuple[int, int], Sample] = {}
    for pid in sorted(descendants(root) | {root}):
        if (role := _role(pid)) is None:
            continue
        entry = Path(f"/proc/{pid}")
        for task in (entry / "task").glob("*"):
            try:
                stat = (task / "stat").read_text()
                status = (task / "status").read_text()
            except OSError:
                continue  # exited meanwhile
            fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm)"
            switches = dict(re.findall(r"^(\w+_ctxt_switches):\s+(\d+)", status, re.M))
            found[(pid, int(task.name))] = Sample(
                role=role,
                pid=pid,
                tid=int(task.name),
                name=stat[stat.index("(") + 1 : stat.rindex(")")],
                ticks=int(fields[11]) + int(fields[12]),  # utime + stime
                voluntary=int(switches.get("voluntary_ctxt_switches", 0)),
                involuntary=int(switches.get("nonvoluntary_ctxt_switches", 0)),
            )
    return found


def report(
    before: dict[tuple[int, int], Sample], after: dict[tuple[int, int], Sample], seconds: float
) -> list[str]:
    lines = [f"{'CPU':>7} {'vol/s':>7} {'invol/s':>7}  role   pid/tid  thread"]
    per_process: dict[tuple[str, int], float] = {}
    for key, end in sorted(after.items()):
        start = before.get(key)
        if start is None:
            continue  # started inside the window
        share = (end.ticks - start.ticks) / CLOCK_TICKS / seconds * 100
        per_process[(end.role, end.pid)] = per_process.get((end.role, end.pid), 0.0) + share
        if share < 0.5:
            continue
        lines.append(
            f"{share:6.1f}% {(end.voluntary - start.voluntary) / seconds:7.0f} "
            f"{(end.involuntary - start.involuntary) / seconds:7.0f}  {end.role:<6} "
            f"{end.pid}/{end.tid}  {end.name}"
        )
    lines.append("per process:")
    for (role, pid), share in sorted(per_process.items()):
        lines.append(f"{share:6.1f}%  {role:<6} {pid}")
    total = sum(per_process.values())
    cores = os.cpu_count() or 1
    lines.append(f"total {total:.0f}% of {cores * 100}% ({total / cores:.0f}% of the machine)")
    gone = sorted({(s.role, s.pid) for k, s in before.items() if k not in after})
    if gone:
        lines.append(
            "EXITED inside the window (the run ended: not the steady state): "
            + ", ".join(f"{role} {pid}" for role, pid in gone)
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000, help="records (500,000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (1)")
    parser.add_argument("--seconds", type=float, default=8.0, help="sampling window (8)")
    parser.add_argument(
        "--compression",
        default=DEFAULT_COMPRESSION.value,
        help="the workers' NPS_COMPRESSION (bench --compression)",
    )
    args = parser.parse_args(argv)
    if not Path("/proc/self/task").is_dir():
        parser.error("needs Linux's /proc")
    command = [
        sys.executable, "-m", "pipeline", "bench", "--events", str(args.events),
        "--workers", str(args.workers), "--naive-seconds", "0", "--latency-seconds", "0",
        "--compression", args.compression,
    ]  # fmt: skip
    print(" ".join(command[1:]), flush=True)
    bench = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert bench.stdout is not None
    output: list[str] = []
    try:
        for line in bench.stdout:
            output.append(line)
            if READY_LINE in line:
                break
        else:
            print("".join(output[-20:]), file=sys.stderr)
            print("the run ended before its first progress line: use more --events")
            return 1
        before, started = sample(bench.pid), time.monotonic()
        time.sleep(args.seconds)
        after, seconds = sample(bench.pid), time.monotonic() - started
        print("\n".join(report(before, after, seconds)))
        output.extend(bench.stdout)
    finally:
        bench.wait(timeout=900)
    print("".join(line for line in output if line.startswith(("pipeline ", "verified"))), end="")
    return bench.returncode


if __name__ == "__main__":
    sys.exit(main())
