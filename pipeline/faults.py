"""Crash injection for the recovery tests: SIGKILL this process at a named point.

``NPS_FAULT_INJECT="<point>:<n>"`` kills the worker (SIGKILL, no clean-up) the n-th
time it reaches ``point``; ``"<point>:<n>:raise"`` raises :class:`InjectedFault` there
instead (the code at that point fails and the worker goes on); ``"<point>:<n>:fail"``
raises it the n-th time and every time after (a failure that lasts); ``"<point>:<n>:stop"``
freezes it there (SIGSTOP to itself, every thread: a stalled machine) until the test
sends SIGCONT. Points:

* ``scoring-scored``: a scoring batch is scored, nothing of it is published yet (not
  even its progress record);
* ``scoring-resume``: the scoring stage starts reading the progress of the raw
  partitions just assigned (with ``:raise`` or ``:fail``, the reading fails);
* ``scoring-resumed``: the scoring stage has fenced and read the progress of the raw
  partitions just assigned, and publishes nothing before its next batch;
* ``scoring-published``: a scoring batch's outputs are acknowledged, its input offsets
  are not committed yet (the batch will be replayed);
* ``windows-rebuild``: the windows stage starts rebuilding its state after a rebalance
  (with ``:raise``, the rebuild fails);
* ``changelog-torn``: half of a windows write's changelog records are acknowledged,
  the rest (and its marks) are not sent (with ``:raise``, the windows agent fails in
  mid-write and is restarted).

Unset (always, outside tests) it costs one comparison per batch.
"""

from __future__ import annotations

import os
import signal

_point, _, _rest = os.environ.get("NPS_FAULT_INJECT", "").partition(":")
_count, _, _how = _rest.partition(":")
_remaining = {_point: int(_count)} if _point and _count.isdigit() else {}
_raise, _fail, _stop = _how == "raise", _how == "fail", _how == "stop"


class InjectedFault(RuntimeError):
    """Raised at a fault point configured with ``:raise``."""


def enabled(point: str) -> bool:
    return point in _remaining


def reached(point: str) -> None:
    """SIGKILL this process if ``point`` is the configured one and its count is reached
    (with ``:raise``, raise :class:`InjectedFault`, once; with ``:fail``, from then on;
    with ``:stop``, SIGSTOP it)."""
    if point not in _remaining:
        return
    _remaining[point] -= 1
    if _fail and _remaining[point] <= 0:
        raise InjectedFault(f"fault injected at {point}")
    if _remaining[point] != 0:
        return
    if _raise:
        raise InjectedFault(f"fault injected at {point}")
    os.kill(os.getpid(), signal.SIGSTOP if _stop else signal.SIGKILL)
