"""Window counts stay exact when a worker is SIGKILLed at the worst moments (issue 8).

Real worker processes on the embedded broker. The ground truth (tests.soak.truth) is
computed here from the events sent: every distinct event id counts once, resends of
the same answer do not count again.

* Deterministic: ``NPS_FAULT_INJECT`` (pipeline.faults) kills a worker right after a
  scoring batch's outputs were acknowledged and before its offsets were committed (the
  batch is replayed by the next worker), then another one in the middle of a windows
  write to the changelog (recovery must drop the torn part). Resends of answers scored
  before the crash arrive after it: the dedupe memory must have survived.
* Random: SIGKILL at random moments of a steady stream with resends, twice.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from datetime import UTC, datetime

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from pipeline.aggregate import fence_key
from pipeline.changelog import fence_headers
from pipeline.fencing import EPOCH_SHIFT
from pipeline.progress import fence as progress_fence
from pipeline.progress import progress_topic
from pipeline.scoring_service import pack_fence
from pipeline.simulator import FeedbackSimulator, SimulatorConfig
from tests.conftest import WorkerProcess, free_port
from tests.soak.soak import read_topic, wait_for_drain
from tests.soak.truth import Truth, api_counts, mismatches

pytestmark = pytest.mark.integration


def answers(sim: FeedbackSimulator, n: int) -> list[dict]:
    now = datetime.now(UTC)
    return [sim.next_event(now) for _ in range(n)]


def send(
    bootstrap: str,
    topic: str,
    events: list[dict],
    truth: Truth,
    producer: KafkaProducer | None = None,
) -> None:
    """Send ``events`` (keyed by event id) and wait for the broker's acks."""
    own = producer is None
    producer = producer or KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for event in events:
        producer.send(topic, key=event["event_id"].encode(), value=orjson.dumps(event))
        truth.add(event)
    producer.flush()
    if own:
        producer.close()


def killed(worker, timeout: float = 90) -> None:
    """Wait until the worker's fault injection killed it."""
    assert worker.proc is not None
    code = worker.proc.wait(timeout=timeout)
    assert code == -signal.SIGKILL, f"worker ended with {code}, not SIGKILL:\n{worker.log()}"
    worker.stop()


def total(counts: dict[str, dict[str, int]]) -> int:
    row = counts["overall"]
    return row["responses"] + row["csat_responses"] + row["ces_responses"]


def counts_exactly(
    worker, bootstrap: str, raw: str, events: list[dict], truth: Truth, expected: int
) -> None:
    """A worker taking over after a crash in the middle of a changelog write: sent
    ``events`` more, its windows hold every distinct answer once (``expected`` in all),
    the torn write dropped and rewritten."""
    send(bootstrap, raw, events, truth)
    wait_for_drain(worker, len(truth.ids), timeout=120)
    counts = api_counts(worker.url)
    assert mismatches(truth, counts) == []
    assert total(counts) == len(truth.ids) == expected
    assert "interrupted write rewritten" in worker.log()  # the torn changelog write


def test_kills_between_publish_and_commit_and_inside_a_changelog_write(
    broker, start_worker, worker_env
) -> None:
    raw = worker_env["NPS_TOPIC_RAW"]
    sim = FeedbackSimulator(SimulatorConfig(seed=21, comment_probability=0.3))
    truth = Truth()
    small_batches = {"NPS_BATCH_SIZE": "150"}

    first = start_worker(NPS_FAULT_INJECT="scoring-published:4", **small_batches)
    before = answers(sim, 2000)
    send(broker.bootstrap, raw, before, truth)
    killed(first)

    second = start_worker(NPS_FAULT_INJECT="changelog-torn:6", **small_batches)
    rng = random.Random(3)
    resends = rng.sample(before, 300)  # answers scored before the crash, delivered again
    send(broker.bootstrap, raw, [*answers(sim, 1500), *resends], truth)
    killed(second)
    assert "replaying from offset" in second.log()  # the first worker's batch, cut alike

    third = start_worker(**small_batches)
    counts_exactly(third, broker.bootstrap, raw, answers(sim, 500), truth, 4000)

    # downstream sees repeats (at-least-once) but every answer, with its own key
    scored = read_topic(broker.bootstrap, worker_env["NPS_TOPIC_SCORED"])
    keys = [r.key.decode() for r in scored]
    assert set(keys) == truth.ids
    assert len(keys) > len(truth.ids)  # the replayed batch was published again


def test_random_sigkills_during_a_stream(broker, start_worker, worker_env) -> None:
    raw = worker_env["NPS_TOPIC_RAW"]
    sim = FeedbackSimulator(SimulatorConfig(seed=5, comment_probability=0.3))
    truth = Truth()
    rng = random.Random(8)
    worker = start_worker()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    sent: list[dict] = []
    for kill in range(3):
        deadline = time.monotonic() + rng.uniform(2, 4)
        while time.monotonic() < deadline:  # ~400 answers/s, a few resends
            chunk = answers(sim, 40)
            if sent:
                chunk.extend(rng.sample(sent, 2))
            send(broker.bootstrap, raw, chunk, truth, producer)
            sent.extend(chunk)
            time.sleep(0.1)
        if kill < 2:
            worker.stop(signal.SIGKILL)
            worker = start_worker()
    producer.close()
    wait_for_drain(worker, len(truth.ids), timeout=120)
    assert mismatches(truth, api_counts(worker.url)) == []


def test_a_windows_write_that_fails_stops_the_worker_and_is_not_committed(
    broker, start_worker, worker_env
) -> None:
    """The windows agent fails in the middle of a batch's changelog write (half of it
    acknowledged, no marks): the worker stops (an agent left failed would stop counting
    unnoticed) without committing that batch's deltas records, and the next worker,
    rebuilding from the changelog, reads them again. Faust's ``take_events`` acked a
    batch whenever its consumer stopped, done or not: a benchmark worker frozen past its
    session timeout crashed while its agent was writing, committed what the changelog
    never got, and ~2,000 segments came out short."""
    raw = worker_env["NPS_TOPIC_RAW"]
    sim = FeedbackSimulator(SimulatorConfig(seed=34, comment_probability=0.3))
    truth = Truth()
    small_batches = {"NPS_BATCH_SIZE": "150"}

    first = start_worker(NPS_FAULT_INJECT="changelog-torn:3:raise", **small_batches)
    send(broker.bootstrap, raw, answers(sim, 2000), truth)
    assert first.proc is not None
    code = first.proc.wait(timeout=90)
    log = first.log()
    assert code not in (0, -signal.SIGKILL), f"worker ended with {code}:\n{log}"
    assert "windows agent failed: InjectedFault" in log
    first.stop()

    second = start_worker(**small_batches)
    counts_exactly(second, broker.bootstrap, raw, answers(sim, 500), truth, 2500)


def test_a_windows_rebuild_that_fails_stops_the_worker(worker_env, tmp_path) -> None:
    """Faust reads no exception of the callback that rebuilds the windows after a
    rebalance and resumes the partitions anyway: a failed rebuild must stop the worker,
    not leave it counting on windows without the changelog's state."""
    worker = WorkerProcess(
        {**worker_env, "NPS_FAULT_INJECT": "windows-rebuild:1:raise"}, tmp_path / "w.log"
    )
    try:
        with pytest.raises(AssertionError, match="worker exited early"):
            worker.start(timeout=90)
        assert worker.proc is not None and worker.proc.returncode != 0
        assert "rebuilding the windows failed: InjectedFault" in worker.log()
    finally:
        worker.stop()


def test_scoring_progress_that_cannot_be_read_is_retried_then_stops_the_worker(
    broker, start_worker, worker_env, tmp_path
) -> None:
    """A worker taking raw partitions over must read their scoring progress before it
    scores them: without it a batch the earlier owner published but did not commit is
    replayed in full, not cut where it ended, and counts twice. A reading that fails
    once is tried again (the counts stay exact); one that keeps failing stops the worker
    (it used to score on without the progress), and the group's other member takes the
    partitions over."""
    raw = worker_env["NPS_TOPIC_RAW"]
    sim = FeedbackSimulator(SimulatorConfig(seed=61, comment_probability=0.3))
    truth = Truth()
    small_batches = {"NPS_BATCH_SIZE": "150"}

    first = start_worker(NPS_FAULT_INJECT="scoring-published:4", **small_batches)
    send(broker.bootstrap, raw, answers(sim, 1500), truth)
    killed(first)  # its fourth batch published, not committed

    second = start_worker(NPS_FAULT_INJECT="scoring-resume:1:raise", **small_batches)
    send(broker.bootstrap, raw, answers(sim, 300), truth)
    wait_for_drain(second, len(truth.ids), timeout=120)
    assert mismatches(truth, api_counts(second.url)) == []
    assert total(api_counts(second.url)) == len(truth.ids) == 1800
    log = second.log()
    assert "could not read the scoring progress of raw partitions [0, 1, 2, 3]" in log
    assert "attempt 1 of 4" in log
    assert "replaying from offset" in log  # the first worker's last batch, cut alike

    third = WorkerProcess(
        {
            **worker_env,
            "NPS_FAULT_INJECT": "scoring-resume:1:fail",
            "NPS_WEB_PORT": str(free_port()),
        },
        tmp_path / "third.log",
    )
    try:
        with contextlib.suppress(AssertionError):  # ready or not before it stops
            third.start(timeout=60)
        assert third.proc is not None
        code = third.proc.wait(timeout=120)
        log = third.log()
        assert code != 0, log
        assert "attempt 3 of 4" in log
        assert "in 4 attempts, the last failing with InjectedFault" in log
    finally:
        third.stop()
    send(broker.bootstrap, raw, answers(sim, 300), truth)  # the second one scores them
    wait_for_drain(second, len(truth.ids), timeout=120)
    assert mismatches(truth, api_counts(second.url)) == []
    assert total(api_counts(second.url)) == len(truth.ids) == 2100


def test_a_worker_frozen_past_its_session_timeout_works_on(
    broker, start_worker, worker_env
) -> None:
    """Two workers share a steady stream; one is frozen (SIGSTOP: a stalled VM, a
    machine starved of CPU) for 10 s, past its 6 s session timeout, and both groups
    rebalance without it. Thawed, it finds its last commits refused and rejoins: it goes
    on working (it used to exit with the refused commit), and every answer counts once
    (the rebalances drop records out of Faust's streams: the windows read them; the
    frozen worker is mostly stopped in the middle of its scoring group's first resume,
    which it finishes when thawed, after the new owner's: fenced off, or it publishes
    a batch from its stale position that the windows count twice, 2 of 13 runs)."""
    raw = worker_env["NPS_TOPIC_RAW"]
    sim = FeedbackSimulator(SimulatorConfig(seed=55, comment_probability=0.3))
    truth = Truth()
    survivor = start_worker()
    frozen = start_worker()
    assert frozen.proc is not None
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)

    def stream(seconds: float) -> None:  # ~400 answers/s
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            send(broker.bootstrap, raw, answers(sim, 40), truth, producer)
            time.sleep(0.1)

    stream(4)
    os.kill(frozen.proc.pid, signal.SIGSTOP)
    try:
        stream(10)
    finally:
        os.kill(frozen.proc.pid, signal.SIGCONT)
    stream(6)
    producer.close()
    wait_for_drain(survivor, len(truth.ids), timeout=120)
    assert mismatches(truth, api_counts(survivor.url)) == []
    assert frozen.proc.poll() is None, f"the frozen worker exited:\n{frozen.log()}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and b'"ready":true' not in _readyz(frozen):
        time.sleep(0.5)
    assert b'"ready":true' in _readyz(frozen), frozen.log()
    assert mismatches(truth, api_counts(frozen.url)) == []  # its API answers the same


def test_a_batch_published_late_by_a_frozen_scoring_stage_counts_once(
    broker, start_worker, worker_env
) -> None:
    """Point 5 of the README's processing guarantees, staged with fault points that
    freeze a worker (SIGSTOP to itself): the second worker freezes with a scored batch
    not yet published; the first takes its raw partitions over, fences them and reads
    their progress, and freezes before its first batch. Then the frozen one is thawed
    and publishes its late batch (its progress record and deltas groups) before the
    first one replays the same records in a batch of its own, ending elsewhere: the
    windows see the late groups first and the replay after, which the marks cannot
    match up. The fence skips the late groups (without it those answers count twice)."""
    raw = worker_env["NPS_TOPIC_RAW"]
    sim = FeedbackSimulator(SimulatorConfig(seed=89, comment_probability=0.3))
    truth = Truth()
    # the first worker's resumes: alone, beside the second, taking the second's over
    first = start_worker(NPS_FAULT_INJECT="scoring-resumed:3:stop")
    late = start_worker(NPS_FAULT_INJECT="scoring-scored:3:stop")
    assert first.proc is not None and late.proc is not None
    streaming = threading.Event()
    streaming.set()

    def stream() -> None:  # ~200 answers/s until told to stop
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
        while streaming.is_set():
            send(broker.bootstrap, raw, answers(sim, 20), truth, producer)
            time.sleep(0.1)
        producer.close()

    sender = threading.Thread(target=stream)
    sender.start()
    try:
        _until_stopped(late.proc.pid, late, timeout=60)
        _until_stopped(first.proc.pid, first, timeout=60)
    finally:
        os.kill(late.proc.pid, signal.SIGCONT)
        time.sleep(3)  # it publishes its late batch; its commit is refused
        os.kill(first.proc.pid, signal.SIGCONT)
        time.sleep(3)
        streaming.clear()
        sender.join()
    wait_for_drain(first, len(truth.ids), timeout=120)
    assert mismatches(truth, api_counts(first.url)) == []
    logs = first.log() + late.log()
    assert "groups skipped, published by a scoring stage after another" in logs, logs


def _until_stopped(pid: int, worker, timeout: float) -> None:
    """Until process ``pid`` is stopped (SIGSTOP: state ``T``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.1)
    raise AssertionError(f"worker {pid} did not reach its fault point:\n{worker.log()}")


def test_groups_the_broker_forgot_fence_above_their_earlier_life(
    broker, start_worker, worker_env
) -> None:
    """Kafka deletes a consumer group once every member has been gone past the offsets'
    retention; its generations then start again from 1, below the fences its earlier
    life left (here of generation 1,000: in the changelog, and the scoring fences in the
    progress topic and the deltas topic). The rebuild and the scoring resume find their
    generation below the fenced one, the broker confirms it is current, and they fence
    in a new epoch: the windows count what the scoring stage publishes, and what the
    windows write survives the next worker's rebuild (fenced in the old epoch, all of
    it would be skipped or ignored)."""
    raw = worker_env["NPS_TOPIC_RAW"]
    app_id = worker_env["NPS_APP_ID"]
    changelog = f"{app_id}-windows-state-changelog"
    deltas, progress = worker_env["NPS_TOPIC_DELTAS"], progress_topic(app_id)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics(
        [NewTopic(name, 4, replication_factor=1) for name in (changelog, deltas, progress)]
    )
    admin.close()
    earlier = 1 << EPOCH_SHIFT | 1000
    scoring_fence = pack_fence(dict.fromkeys(range(4), earlier))
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for partition in range(4):
        producer.send(
            changelog,
            key=fence_key(partition),
            value=str(earlier).encode(),
            partition=partition,
            headers=fence_headers(earlier),
        )
        key, value = progress_fence(partition, earlier)
        producer.send(progress, key=key, value=value, partition=partition)
        producer.send(deltas, value=scoring_fence, partition=partition)
    producer.close()

    sim = FeedbackSimulator(SimulatorConfig(seed=34, comment_probability=0.3))
    truth = Truth()
    first = start_worker()
    send(broker.bootstrap, raw, answers(sim, 800), truth)
    wait_for_drain(first, len(truth.ids), timeout=120)
    assert mismatches(truth, api_counts(first.url)) == []
    first.stop()
    assert "consumer group is over" not in first.log()

    second = start_worker()
    send(broker.bootstrap, raw, answers(sim, 200), truth)
    wait_for_drain(second, len(truth.ids), timeout=120)
    assert mismatches(truth, api_counts(second.url)) == []
    assert "records ignored" not in second.log()
    assert "groups skipped" not in first.log() + second.log()


def _readyz(worker) -> bytes:
    try:
        return worker.get("/readyz").replace(b" ", b"")
    except OSError:  # 503 while it rebalances
        return b""
