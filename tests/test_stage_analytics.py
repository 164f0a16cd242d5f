"""The scoring stage's comment insights: prepared per batch (in a child process by default,
NPS_TEXT_PROCESS), equal to the inline analysis; a child that dies changes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from pipeline.settings import load_settings
from pipeline.text.stage_analytics import NO_INSIGHT, TextAnalytics, answer_timeout, theme_keys
from pipeline.validate import RawRecord
from schemas import FeedbackEvent, categorize
from schemas.feedback import example_event


def raw(offset: int, value: bytes) -> RawRecord:
    return RawRecord("feedback.raw", 0, offset, None, value)


@pytest.mark.parametrize("process", [True, False], ids=["child process", "in thread"])
def test_prepared_insights_equal_the_inline_analysis(process: bool) -> None:
    text = TextAnalytics.from_settings(load_settings(text_process=process))
    assert text is not None
    assert (text.offload is not None) is process
    comments = [
        ("  I was charged twice!! Refund me.  ", 1, {"language": "en"}),
        ("L'operatore è stato scortese e sbrigativo.", 3, {}),
        ("Great service, thanks", 10, {"language": "EN"}),
        ("ok", 8, {}),
    ]
    events = [
        example_event(event_id=f"e{i}", comment=c, score=s, attributes=a)
        for i, (c, s, a) in enumerate(comments)
    ]
    records = [raw(i, orjson.dumps(e)) for i, e in enumerate(events)]
    hostile = [b"not json", b'{"comment": 3}', b'{"comment": "x", "survey_type": "nope"}', b"[]"]
    records += [raw(100 + i, v) for i, v in enumerate(hostile)]
    text.prepare(records)  # invalid records are skipped, not raised
    text.finish()  # all the child's results collected
    assert set(text._prepared) == {id(r) for r in records[: len(events)]}
    fresh = TextAnalytics(text.analyzer)
    for record in records[: len(events)]:
        parsed = FeedbackEvent.model_validate_json(record.value)
        category = categorize(parsed.survey_type, parsed.score).value
        prepared = text.analyze(parsed, category, record)
        assert prepared is text._prepared[id(record)][2]  # reused, not analysed again
        assert prepared == fresh.analyze(parsed, category)  # nothing prepared there
    first = FeedbackEvent.model_validate_json(records[0].value)
    assert orjson.loads(text.analyze(first, "detractor", records[0]).json) == {
        "language": "en",
        "sentiment": "negative",
        "sentiment_score": orjson.loads(fresh.analyze(first, "detractor").json)["sentiment_score"],
        "themes": ["billing"],
        "disagrees": False,
    }
    # a different comment or category than prepared: analysed again, not reused
    other = first.model_copy(update={"comment": "Lovely people, great service"})
    assert orjson.loads(text.analyze(other, "detractor", records[0]).json)["disagrees"] is True
    promoter = text.analyze(first, "promoter", records[0])
    assert orjson.loads(promoter.json)["disagrees"] is True
    blank = first.model_copy(update={"comment": "   "})
    assert text.analyze(blank, "detractor", records[0]) is NO_INSIGHT
    assert theme_keys(["billing", "price"]) == ["theme=billing", "theme=price"]


def test_prepare_never_raises_and_themes_are_counted_once(monkeypatch) -> None:
    from pipeline import metrics

    text = TextAnalytics.from_settings(load_settings(text_process=False))
    assert text is not None
    event = example_event(event_id="t1", comment="Wrong invoice again", score=2)
    good = raw(0, orjson.dumps(event))
    tombstone = RawRecord("feedback.raw", 0, 1, b"k", None)  # type: ignore[arg-type]
    counter = metrics.COMMENT_THEMES.labels("billing", "detractor")
    before = counter._value.get()
    text.prepare([tombstone, good, good])  # analysing is not counting
    assert counter._value.get() == before
    parsed = FeedbackEvent.model_validate_json(good.value)
    text.analyze(parsed, "detractor", good)
    text.analyze(parsed, "detractor", good)
    assert counter._value.get() == before  # counted when the batch is done
    text.finish()
    assert counter._value.get() == before + 2
    text.finish()
    assert counter._value.get() == before + 2

    # an oversize record or an over-long comment is dead-lettered unread, never analysed
    huge = example_event(event_id="t2", comment="wrong invoice " * 1000, score=2)
    text.prepare([raw(2, orjson.dumps(huge)), raw(3, orjson.dumps(huge) + b" " * 300_000)])
    assert text._prepared == {}

    def broken(*_: object) -> None:
        raise RuntimeError("analyzer bug")

    monkeypatch.setattr(text.analyzer, "analyze", broken)
    text.prepare([good])  # the stage's own handling of the record dead-letters it
    assert text._prepared == {}


def test_off_gives_no_analytics() -> None:
    assert TextAnalytics.from_settings(load_settings(text_analytics=False)) is None


def test_without_sentiment_only_language_and_themes() -> None:
    settings = load_settings(text_sentiment=False)
    text = TextAnalytics.from_settings(settings)
    assert text is not None and text.sentiment is False
    event = FeedbackEvent.model_validate(
        example_event(comment="Addebitato due volte, vergognoso!", score=2, attributes={})
    )
    assert orjson.loads(text.analyze(event, "detractor").json) == {
        "language": "it",
        "sentiment": None,
        "sentiment_score": None,
        "themes": ["billing"],
        "disagrees": None,
    }


def _stage_run(records: list[RawRecord], process: bool) -> tuple[list[bytes], list]:
    """The scored events' ``text`` and the deltas of a stage over ``records``, 250 at a time."""
    from pipeline.scoring import ScoringStage

    stage = ScoringStage(load_settings(text_process=process))
    texts, deltas = [], []
    for i in range(0, len(records), 250):
        out = stage.process(records[i : i + 250])
        texts += [orjson.dumps(orjson.loads(value)["text"]) for _, value in out.scored]
        deltas += out.deltas
    return texts, deltas


def _simulator_records(count: int, seed: int) -> list[RawRecord]:
    from tests.bench.bench_text import stage_records

    return stage_records(count, 0.6, seed=seed)


def test_the_child_process_gives_the_stage_exactly_the_inline_results(monkeypatch) -> None:
    records = _simulator_records(1500, seed=11)
    # two languages, with and without hints, a comment pydantic strips differently
    records += [
        raw(9000 + i, orjson.dumps(example_event(event_id=f"x{i}", comment=c, score=s)))
        for i, (c, s) in enumerate(
            [("Addebito doppio, vergognoso", 1), ("\u2003great staff\u2003", 10), ("", 3)]
        )
    ]
    from pipeline import metrics
    from pipeline.text import stage_analytics

    failures = metrics.TEXT_PROCESS_FAILURES._value.get()
    inline = []  # comments the worker analysed itself instead of the child
    real = stage_analytics.insight_of

    def counted(*args: object) -> stage_analytics.Insight:
        inline.append(args[2])
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(stage_analytics, "insight_of", counted)
    in_child = _stage_run(records, True)
    monkeypatch.undo()
    in_thread = _stage_run(records, False)
    assert in_child == in_thread
    assert sum(t != b"null" for t in in_child[0]) > 800  # the comments were analysed
    assert metrics.TEXT_PROCESS_FAILURES._value.get() == failures
    assert len(inline) <= 1, inline  # by the child (but a comment pydantic reads otherwise)


def test_a_dead_child_is_replaced_and_nothing_is_lost(monkeypatch, caplog) -> None:
    from pipeline import metrics
    from pipeline.text import offload as offload_module

    monkeypatch.setattr(offload_module, "RESTART_AFTER", 0.0)
    records = _simulator_records(600, seed=12)
    expected, _ = _stage_run(records, False)
    text = TextAnalytics(sentiment=True, offload=True)
    offload = text.offload
    assert offload is not None
    failures = metrics.TEXT_PROCESS_FAILURES._value.get()
    text.prepare(records[:10])
    text.finish()
    assert offload.process.running
    os.kill(offload.process._proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
    offload.process._proc.wait()  # type: ignore[union-attr]

    from pipeline.scoring import ScoringStage

    stage = ScoringStage(load_settings())
    assert stage.text is not None and stage.text.offload is offload  # one child per process
    got = []
    for i in range(0, len(records), 200):  # the first batch is analysed in the worker
        out = stage.process(records[i : i + 200])
        got += [orjson.dumps(orjson.loads(value)["text"]) for _, value in out.scored]
    assert got == expected
    assert metrics.TEXT_PROCESS_FAILURES._value.get() == failures + 1
    assert "comment analysis process failed" in caplog.text
    assert offload.process.running  # a new child took over


def test_the_child_exits_when_its_worker_is_killed() -> None:
    script = (
        "import time, orjson\n"
        "from pipeline.text.stage_analytics import TextAnalytics\n"
        "from pipeline.validate import RawRecord\n"
        "from schemas.feedback import example_event\n"
        "text = TextAnalytics(offload=True)\n"
        "value = orjson.dumps(example_event(comment='great staff', score=10))\n"
        "text.prepare([RawRecord('feedback.raw', 0, 0, None, value)])\n"
        "text.finish()\n"
        "print(text.offload.process._proc.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        child = int(worker.stdout.readline())
        os.kill(child, 0)  # running
        worker.kill()
        worker.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            # not our child: once it exits, init reaps it
            time.sleep(0.05)
        else:
            pytest.fail(f"analysis process {child} still runs after its worker was killed")
    finally:
        worker.kill()


def test_a_hung_child_is_given_up_in_time_and_nothing_is_lost() -> None:
    """The stage waits for the child holding the event loop, where the scoring consumer's
    heartbeats run: it gives a hung child up within 0.6 of the session timeout (0.6 s
    here), so that the group does not evict the worker."""
    from pipeline import metrics
    from pipeline.scoring import ScoringStage

    records = _simulator_records(400, seed=13)
    expected, _ = _stage_run(records, False)
    stage = ScoringStage(load_settings(broker_session_timeout_seconds=1))
    assert stage.text is not None and stage.text.offload is not None
    assert stage.text.offload.process.answer_timeout == 0.6
    # the default: 8 s at most, 6 s with the default 10 s session
    assert answer_timeout(load_settings()) == 6.0
    assert answer_timeout(load_settings(broker_session_timeout_seconds=60)) == 8.0
    stage.process(records[:5])  # the child is up and answering
    process = stage.text.offload.process
    hung = process._proc
    assert hung is not None
    failures = metrics.TEXT_PROCESS_FAILURES._value.get()
    os.kill(hung.pid, signal.SIGSTOP)  # alive, never answers
    try:
        began = time.monotonic()
        got = []
        for i in range(0, len(records), 200):
            out = stage.process(records[i : i + 200])
            got += [orjson.dumps(orjson.loads(value)["text"]) for _, value in out.scored]
        assert time.monotonic() - began < 4  # given up after 0.6 s, not waited for
    finally:
        if hung.poll() is None:
            os.kill(hung.pid, signal.SIGKILL)
        process.answer_timeout = answer_timeout(load_settings())  # the child is shared
    assert got == expected[5:]  # every insight (the first 5 were scored before)
    assert metrics.TEXT_PROCESS_FAILURES._value.get() == failures + 1
    assert hung.wait(timeout=5) == -signal.SIGKILL  # killed, not left behind


def test_the_child_uses_the_workers_taxonomy_without_loading_pydantic(tmp_path) -> None:
    """The worker validates the taxonomy file and sends the child its themes: the child
    matches a custom taxonomy's themes, and pydantic (~17 MiB of resident memory) is
    never loaded into it (its compiled core is not mapped in the child's memory)."""
    from pipeline.text.offload import AnalysisProcess

    path = tmp_path / "themes.yaml"
    path.write_text("themes:\n  parking:\n    en: [car park, parking]\n", encoding="utf-8")
    child = AnalysisProcess(path, 256 * 1024)
    child.start()
    try:
        event = example_event(comment="No parking spaces at the car parks", score=3)
        child.submit(1, True, [orjson.dumps(event)])
        results, done = child.results(1)
        assert done and [r[4] for r in results] == [["parking"]]
        assert child._proc is not None
        maps = Path(f"/proc/{child._proc.pid}/maps").read_text()
        assert "lingua" in maps  # the analyzer's own extension is there: the check reads
        assert "pydantic_core" not in maps
    finally:
        child.stop()


def test_the_child_outlives_signals_to_its_group_and_stops_with_its_worker() -> None:
    """Ctrl-C (SIGINT) and a stop by `timeout` or systemd (SIGTERM) reach every process
    of the group: the child keeps answering until its worker closes the socket."""
    from pipeline.text.offload import AnalysisProcess
    from pipeline.text.themes import DEFAULT_TAXONOMY

    child = AnalysisProcess(DEFAULT_TAXONOMY, 256 * 1024)
    child.start()
    proc = child._proc
    assert proc is not None
    try:
        event = orjson.dumps(example_event(comment="The agent was rude", score=2))
        child.submit(1, True, [event])
        assert child.results(1)[1]  # ready and answering
        for sig in (signal.SIGINT, signal.SIGTERM):
            os.kill(proc.pid, sig)
        time.sleep(0.3)
        assert proc.poll() is None
        child.submit(2, True, [event])
        results, done = child.results(2)
        assert done and results[0][3] is not None
    finally:
        child.stop(wait=5.0)
    assert proc.returncode == 0  # exited on its own when the socket closed, not killed
