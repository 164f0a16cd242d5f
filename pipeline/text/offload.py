"""Comment analysis in a separate process, in parallel with the rest of the scoring stage.

The scoring stage spends about 20 µs per comment in the analyzer (sentiment, themes,
language) and the rest of its work -- validation, dedupe, scoring, fan-out, output -- is
about 35 µs per event, all in one Python thread (see tests/bench/bench_text.py). On a
machine with a second core the analysis can run beside it: :meth:`TextAnalytics.prepare
<pipeline.text.stage_analytics.TextAnalytics.prepare>` hands the batch's commented records to
an :class:`AnalysisProcess` at the start of the batch, and the stage picks each insight
up when it reaches the record, by then long computed (the analysis of a batch takes
about a third of the time the stage needs for it).

The child is ``python -m pipeline.text.offload`` (a fresh interpreter, not a fork of a
worker with an event loop and threads), joined by a socket pair; it builds its own
:class:`~pipeline.text.analyze.CommentAnalyzer` for the taxonomy it is given. Messages
are pickled (:mod:`multiprocessing.connection`):

* parent -> child, once: the taxonomy's themes as plain data, validated by the parent
  (the child imports no pydantic: ~17 MiB less resident memory per child);
* child -> parent, once: ``("ready",)`` when the analyzer is built;
* parent -> child: ``(batch, sentiment, values, total)``, the raw record values of a
  batch of ``total``, in two messages (the first few, then the rest);
* child -> parent: ``(batch, results, done)``, ``results`` as ``(slot, comment,
  category, insight json, themes)`` or ``(slot, None, None, None, None)`` for a record
  it could not prepare (the stage analyses that one itself), in small chunks so the
  first records are ready early.

When the worker exits, even by SIGKILL, the socket closes and the child exits at its
next read. A child that dies or does not answer in time is stopped; the stage analyses
inline meanwhile and starts a new child after :data:`RESTART_AFTER` seconds (counted in
``nps_pipeline_text_process_failures_total``). It has :data:`RESULT_TIMEOUT` seconds per
answer.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Seconds to wait for the next results of a batch (a chunk of 128 comments of the
#: longest kind takes ~1 s) before giving the child up, at most. The stage waits
#: synchronously, holding the worker's event loop, so it waits well inside the consumer
#: session timeout too (NPS_BROKER_SESSION_TIMEOUT_SECONDS, default 10 s; see
#: :func:`pipeline.text.stage_analytics.answer_timeout`): a hung child must not cost a
#: rebalance.
RESULT_TIMEOUT = 8.0
#: Seconds to wait for a new child's analyzer, whatever the session timeout: the worker
#: starts its child before its consumer joins the group (several seconds), so a child
#: is ready before the first batch unless the machine is badly overloaded.
STARTUP_TIMEOUT = 8.0
#: Seconds after a failure before a new child is started.
RESTART_AFTER = 30.0
#: Results per message: a small first chunk, then each a quarter larger up to the
#: largest. The stage spends ~35 µs per event on the rest of its work (~58 µs per
#: comment at 60% of the answers commented) and the child ~28 µs per comment measured
#: alone (more while both run; ~18-27 µs of CPU since issue 11's cuts, see
#: tests/bench/bench_child.py), so the stage reaches a chunk's first record after the
#: child has sent it while each chunk is less than ~1.5-2 times the one before.
FIRST_CHUNK, CHUNK = 8, 128

#: (slot, comment, category, insight json, themes); all but slot None if not prepared
Result = tuple[int, str | None, str | None, bytes | None, list[str] | None]


class AnalysisFailed(RuntimeError):
    """The child died, closed its end, or did not answer in time."""


class AnalysisProcess:
    """One child process analysing batches of raw records for the scoring stage."""

    def __init__(self, taxonomy: Path, max_event_bytes: int) -> None:
        self.taxonomy = taxonomy
        #: seconds to wait for the next answer once the child is ready (the stage sets
        #: it from its settings: :func:`pipeline.text.stage_analytics.answer_timeout`)
        self.answer_timeout = RESULT_TIMEOUT
        self.themes: dict[str, dict[str, list[str]]] | None = None  # loaded at start
        self.max_event_bytes = max_event_bytes
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._poller: select.poll | None = None
        self._ready = False

    @property
    def running(self) -> bool:
        return self._proc is not None

    def start(self) -> None:
        """Start the child (it loads its analyzer meanwhile; :meth:`results` waits)."""
        if self.themes is None:  # the worker validated the file at start: no error here
            from pipeline.text.taxonomy import Taxonomy

            self.themes = Taxonomy.load(self.taxonomy).themes
        parent, child = socket.socketpair()
        with child:
            self._proc = subprocess.Popen(  # noqa: S603 - our own module, no shell
                [
                    sys.executable,
                    "-m",
                    __name__,
                    str(child.fileno()),
                    str(self.max_event_bytes),
                ],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        self._conn = Connection(parent.detach())
        try:
            self._conn.send(self.themes)
        except OSError as exc:
            raise AnalysisFailed(f"cannot send to the analysis process: {exc}") from exc
        self._poller = select.poll()  # cheaper than Connection.poll's selector per call
        self._poller.register(self._conn.fileno(), select.POLLIN)
        self._ready = False

    def submit(self, batch: int, sentiment: bool, values: list[bytes]) -> None:
        """Send a batch's raw record values (a child busy with nothing else reads at once):
        the first few on their own, so the child starts on them while the rest arrive."""
        try:
            assert self._conn is not None
            self._conn.send((batch, sentiment, values[:FIRST_CHUNK], len(values)))
            if len(values) > FIRST_CHUNK:
                self._conn.send((batch, sentiment, values[FIRST_CHUNK:], len(values)))
        except (OSError, AssertionError) as exc:
            raise AnalysisFailed(f"cannot send to the analysis process: {exc}") from exc

    def results(self, batch: int) -> tuple[list[Result], bool]:
        """The next results of ``batch`` and whether they are its last (older batches'
        leftovers are skipped); :class:`AnalysisFailed` if the child does not answer."""
        while True:
            message = self._receive(self.answer_timeout if self._ready else STARTUP_TIMEOUT)
            if message == ("ready",):
                self._ready = True
                continue
            got, results, done = message
            if got == batch:
                return results, done

    def _receive(self, timeout: float) -> Any:
        conn = self._conn
        try:
            assert conn is not None and self._poller is not None
            if not self._poller.poll(timeout * 1000):
                raise AnalysisFailed(f"the analysis process did not answer in {timeout:.0f} s")
            return conn.recv()
        except (OSError, EOFError, AssertionError) as exc:
            code = None if self._proc is None else self._proc.poll()
            raise AnalysisFailed(f"the analysis process is gone (exit code {code})") from exc

    def stop(self, wait: float = 5.0) -> None:
        """Close the socket (the child exits at its next read) and reap the child,
        killed if it has not exited after ``wait`` seconds."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Offload:
    """The stage's side of the child: one batch at a time, restarts after a failure."""

    def __init__(self, taxonomy: Path, max_event_bytes: int) -> None:
        self.process = AnalysisProcess(taxonomy, max_event_bytes)
        self.batch = 0
        self.waiting = False
        self._retry_at = 0.0

    def available(self) -> bool:
        """Whether a child runs, starting one if none does and no failure is recent."""
        if not self.process.running:
            if time.monotonic() < self._retry_at:
                return False
            try:
                self.process.start()
            except Exception as exc:  # e.g. out of processes or memory: analyse inline
                self.fail(exc)
                return False
        return True

    def submit(self, sentiment: bool, values: list[bytes]) -> bool:
        """Hand a batch over; False (and the child given up) if that fails."""
        self.batch += 1
        try:
            self.process.submit(self.batch, sentiment, values)
        except AnalysisFailed as exc:
            self.fail(exc)
            return False
        self.waiting = True
        return True

    def next_results(self) -> list[Result]:
        """The next results of the batch handed over (empty once it failed or is done)."""
        if not self.waiting:
            return []
        try:
            results, done = self.process.results(self.batch)
        except Exception as exc:  # AnalysisFailed, or a message that does not unpickle
            self.fail(exc)
            return []
        self.waiting = not done
        return results

    def fail(self, exc: Exception) -> None:
        log.error("comment analysis process failed, analysing in the worker meanwhile: %s", exc)
        from pipeline import metrics  # not at the top: the child never needs it

        metrics.TEXT_PROCESS_FAILURES.inc()
        self.waiting = False
        self.process.stop(wait=0.1)  # dead, or hung: not worth waiting for
        self._retry_at = time.monotonic() + RESTART_AFTER

    def close(self) -> None:
        self.waiting = False
        self.process.stop()


def serve(conn: Connection, max_event_bytes: int) -> None:
    """The child's loop: analyse each batch it receives until the parent closes the socket."""
    from pipeline.text.analyze import CommentAnalyzer
    from pipeline.text.insight import insight_of, read_comment

    try:
        themes = conn.recv()  # validated by the worker
    except (EOFError, OSError):
        return
    analyzer = CommentAnalyzer(themes=themes)
    conn.send(("ready",))
    current, slot = None, 0  # the batch being analysed, the slot of its next value
    chunk: list[Result] = []
    limit = FIRST_CHUNK
    while True:
        try:
            batch, sentiment, values, total = conn.recv()
        except (EOFError, OSError):
            return  # the worker is gone or done
        if batch != current:
            current, slot, chunk, limit = batch, 0, [], FIRST_CHUNK
        for value in values:
            try:
                read = read_comment(value, max_event_bytes)
                if read is None:
                    chunk.append((slot, None, None, None, None))
                else:
                    comment, category, hint = read
                    insight = insight_of(analyzer, sentiment, comment, category, hint)
                    chunk.append((slot, comment, category, insight.json, insight.themes))
            except Exception:  # the stage validates the record itself and says what is wrong
                chunk.append((slot, None, None, None, None))
            slot += 1
            if len(chunk) >= limit or slot == total:
                try:
                    conn.send((batch, chunk, slot == total))
                except OSError:
                    return  # the worker is gone
                chunk, limit = [], min(CHUNK, limit * 5 // 4)


def main(argv: list[str]) -> None:
    fd, max_event_bytes = argv
    # Ctrl-C reaches the whole process group, and so does a stop by `timeout` or systemd
    # (SIGTERM to every process of the group or unit): the worker decides when this one
    # stops (by closing the socket; it kills a child that does not exit), not the
    # signal. Killed first, the child left the worker's last batch to be analysed
    # inline and logged as a failure of the analysis process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    conn = Connection(int(fd))
    code = 0
    try:
        serve(conn, int(max_event_bytes))
    except Exception:
        log.exception("comment analysis process stopped")
        code = 1
    conn.close()
    os._exit(code)  # no interpreter teardown (lingua's models): nothing is buffered


if __name__ == "__main__":
    main(sys.argv[1:])
