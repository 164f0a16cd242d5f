"""``nps-pipeline replay``: survey exports (CSV, JSONL) into the raw topic.

Exports are shaped like the tools' own (Qualtrics: BOM, question-text and ImportId rows
under the header, naive local times; Delighted: nested person properties, epoch times).
"""

from __future__ import annotations

import csv
import io
import math
import random
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
from typer.testing import CliRunner

from pipeline.broker import free_port
from pipeline.cli import app
from pipeline.replay import Mapping, MappingError, replay
from tests.conftest import consume

ROME = ZoneInfo("Europe/Rome")
HEADER = [
    "StartDate", "EndDate", "Status", "Progress", "Finished", "ResponseId",
    "RecipientEmail", "Survey", "Likelihood to recommend", "Why?", "Department", "Agent",
    "Channel", "Tier",
]  # fmt: skip
QUESTION_ROW = [
    "Start Date", "End Date", "Response Type", "Progress", "Finished", "Response ID",
    "Recipient Email", "Survey",
    "How likely are you to recommend us to a friend or colleague?",
    "What is the main reason for your score?", "Department", "Agent", "Channel", "Tier",
]  # fmt: skip
IMPORT_ROW = [f'{{"ImportId":"{h}"}}' for h in HEADER]
MAPPING_YAML = """\
columns:
  event_id: ResponseId
  event_time: EndDate
  survey_type: Survey
  score: Likelihood to recommend
  comment: Why?
  customer_id: RecipientEmail
  department: Department
  agent: Agent
  channel: Channel
  attributes.tier: Tier
constants:
  source: qualtrics-export
time_format: "%Y-%m-%d %H:%M:%S"
timezone: Europe/Rome
skip_rows: 2
"""
COMMENT_QUOTES = 'Servizio ottimo, però l\'attesa "infinita": 40 minuti, davvero!'
COMMENT_LINES = "Prima riga, con virgola;\nseconda riga: è tutto a posto"


def qualtrics_row(rid: str, end: str, score: str, **over: str) -> list[str]:
    row = {
        "StartDate": end, "EndDate": end, "Status": "IP Address", "Progress": "100",
        "Finished": "True", "ResponseId": rid, "RecipientEmail": f"{rid.lower()}@example.it",
        "Survey": "nps", "Likelihood to recommend": score, "Why?": "", "Department": "support",
        "Agent": "agent-7", "Channel": "chat", "Tier": "gold",
    }  # fmt: skip
    row.update(over)
    return [row[h] for h in HEADER]


def csv_bytes(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return buf.getvalue().encode("utf-8")


@pytest.fixture
def qualtrics_export(tmp_path: Path) -> tuple[Path, Path]:
    """A Qualtrics-shaped export: 3 valid answers, an update of one, a repeat of the
    update, and every kind of bad row."""
    rows = [
        HEADER,  # line 1
        QUESTION_ROW,  # line 2
        IMPORT_ROW,  # line 3
        qualtrics_row("R_ok1", "2026-01-15 09:30:00", "9"),  # 4: winter, +01:00
        qualtrics_row("R_ok2", "2026-07-15 18:05:00", "3", **{"Why?": COMMENT_QUOTES,
                      "Department": "billing", "Channel": "phone"}),  # 5: summer, +02:00
        qualtrics_row("R_ok3", "2026-07-15 18:06:00", "7", **{"Why?": COMMENT_LINES,
                      "Survey": "nps", "Tier": ""}),  # lines 6-7: a two-line comment
        qualtrics_row("R_bad1", "2026-07-15 18:07:00", "11"),  # 8
        qualtrics_row("R_bad2", "", "8"),  # 9: no time
        qualtrics_row("R_bad3", "2026-07-15 18:08:00", "7.5"),  # 10
        qualtrics_row("R_bad4", "2026-07-15 18:09:00", "4", Survey="star-rating"),  # 11
        qualtrics_row("R_bad5", "2026-07-15 18:10:00", "0", Survey="csat"),  # 12
        qualtrics_row("R_ok1", "2026-01-15 09:30:00", "2"),  # 13: same id, other score
        qualtrics_row("R_ok1", "2026-01-15 09:30:00", "2"),  # 14: an identical repeat
        qualtrics_row("R_bad6", "2026-07-15 18:11:00", "9", **{"Why?": "@@"}),  # 15
        ["R_bad7", "2026-07-15 18:12:00", "9"],  # 16: a truncated row
        qualtrics_row("R_bad8", "15/07/2026 18:13", "9"),  # 17: another time format
    ]  # fmt: skip
    data = b"\xef\xbb\xbf" + csv_bytes(rows)
    data = data.replace(b"@@", "Non funziona più".encode("latin-1"))  # not UTF-8
    path = tmp_path / "qualtrics-export.csv"
    path.write_bytes(data)
    mapping = tmp_path / "qualtrics-mapping.yaml"
    mapping.write_text(MAPPING_YAML)
    return path, mapping


EXPECTED_INVALID = {
    "score_out_of_range": [8, 12],
    "schema_violation (event_time)": [9, 17],
    "schema_violation (score)": [10],
    "schema_violation (survey_type)": [11],
    "bad_encoding": [15],
    "schema_violation": [16],
}


def test_dry_run_reports_each_bad_line_by_kind(qualtrics_export, tmp_path) -> None:
    path, mapping_file = qualtrics_export
    mapping = Mapping.build(mapping_file)
    report = replay(path, mapping, bootstrap_servers=None, topic="t", fmt="csv", dry_run=True)
    assert report.invalid == EXPECTED_INVALID
    assert (report.rows, report.valid, report.duplicates, report.produced) == (13, 4, 1, 0)
    assert report.updates == 1
    assert report.exit_code == 1

    errors = tmp_path / "errors.jsonl"
    result = CliRunner().invoke(
        app,
        ["replay", str(path), "--mapping", str(mapping_file), "--dry-run",
         "--examples", "1", "--errors-file", str(errors), "--progress-interval", "0"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert "rows read       13" in out and "valid           4" in out
    assert "updates         1 (later rows of an event id with other content" in out
    assert "invalid         8 (reported, not produced)" in out
    assert re.search(r"score_out_of_range +2  lines 8, \.\.\.\n", out)
    assert re.search(r"schema_violation \(survey_type\) +1  lines 11\n", out)
    assert "e.g. score 11 is outside the NPS scale 0-10" in out
    # every invalid row, not only the examples, is in the errors file
    written = [orjson.loads(line) for line in errors.read_text().splitlines()]
    assert [(e["line"], e["kind"]) for e in written] == sorted(
        (line, kind) for kind, lines in EXPECTED_INVALID.items() for line in lines
    )
    assert written[-1]["message"] == (
        "event_time: '15/07/2026 18:13' does not match time_format '%Y-%m-%d %H:%M:%S'"
    )
    # not a terminal: plain progress lines on stderr
    assert "replay: 13/13 rows (100%)" in result.stderr


def test_dry_run_of_a_clean_file_exits_0_and_mapping_errors_exit_2(tmp_path) -> None:
    path = tmp_path / "clean.csv"
    path.write_bytes(csv_bytes([HEADER, qualtrics_row("R_1", "2026-11-25T10:00:00+01:00", "10")]))
    flags = ["--map", "event_id=ResponseId", "--map", "event_time=EndDate",
             "--map", "score=Likelihood to recommend", "--map", "customer_id=RecipientEmail",
             "--set", "survey_type=nps"]  # fmt: skip
    ok = CliRunner().invoke(app, ["replay", str(path), *flags, "--dry-run"])
    assert ok.exit_code == 0, ok.output
    assert "valid           1" in ok.stdout and "invalid         0" in ok.stdout

    typo = CliRunner().invoke(app, ["replay", str(path), *flags, "--map", "agent=Agnet",
                                    "--dry-run"])  # fmt: skip
    assert typo.exit_code == 2
    assert "mapped columns not in the file: ['Agnet']" in typo.stderr
    zone = CliRunner().invoke(app, ["replay", str(path), *flags, "--timezone", "Europe/Roma",
                                    "--dry-run"])  # fmt: skip
    assert zone.exit_code == 2 and "unknown timezone 'Europe/Roma'" in zone.stderr
    field = CliRunner().invoke(app, ["replay", str(path), "--map", "scroe=Q1", "--dry-run"])
    assert field.exit_code == 2 and "unknown event field 'scroe'" in field.stderr
    naive = CliRunner().invoke(app, ["replay", str(path), "--format", "jsonl", "--dry-run"])
    assert naive.exit_code == 1 and "not_json" in naive.stdout  # --format overrides .csv


def test_jsonl_delighted_export(tmp_path) -> None:
    created = int(datetime(2026, 11, 25, 8, 0, tzinfo=UTC).timestamp())
    lines = [
        orjson.dumps({"id": "d-1", "survey_type": "nps", "score": 3,
                      "comment": "Fattura sbagliata, di nuovo.", "created_at": created,
                      "permalink": "https://delighted.com/r/abc",
                      "person": {"email": "anna@example.it",
                                 "properties": {"Department": "billing"}}}),
        b"",
        b'{"id": "d-2", "score": 9',
        orjson.dumps({"id": "d-3", "survey_type": "nps", "score": "10", "created_at": created,
                      "person": {"email": "bo@example.it"}}),
        orjson.dumps({"id": "d-4", "survey_type": "nps", "created_at": created,
                      "person": {"email": "cy@example.it"}}),
        orjson.dumps({"id": "d-5", "survey_type": "csat", "score": 5,
                      "created_at": "2026-11-25T09:00:00Z", "person": {"email": "di@example.it"}}),
        b"[1, 2]",
    ]  # fmt: skip
    path = tmp_path / "delighted.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    mapping = Mapping.build(
        maps=["event_id=id", "event_time=created_at", "customer_id=person.email",
              "department=person.properties.Department"],
        sets=["source=delighted"],
    )  # fmt: skip
    report = replay(path, mapping, bootstrap_servers=None, topic="t", fmt="jsonl", dry_run=True)
    assert report.invalid == {
        "not_json": [3],
        "schema_violation (score)": [5],
        "schema_violation": [7],
    }
    assert (report.rows, report.valid) == (6, 3)


def test_newest_first_export_is_flagged_out_of_order(tmp_path) -> None:
    start = datetime(2026, 11, 25, 12, 0)
    rows = [HEADER] + [
        qualtrics_row(f"R_{i}", (start - timedelta(minutes=3 * i)).isoformat(" "), "9")
        for i in range(20)
    ]
    path = tmp_path / "newest-first.csv"
    path.write_bytes(csv_bytes(rows))
    mapping = Mapping.build(
        maps=["event_id=ResponseId", "event_time=EndDate", "survey_type=Survey",
              "score=Likelihood to recommend", "customer_id=RecipientEmail"],
        timezone="Europe/Rome",
    )  # fmt: skip
    report = replay(path, mapping, bootstrap_servers=None, topic="t", fmt="csv", dry_run=True)
    # rows 4 and later are > 600 s (the allowed lateness) older than the first
    assert report.out_of_order == 16 and report.valid == 20
    assert "out of order    16 rows" in report.summary()
    with pytest.raises(MappingError, match="fields both mapped to a column and set constant"):
        Mapping.build(maps=["score=Q1"], sets=["score=9"])


@pytest.mark.integration
def test_replay_into_broker_produces_exactly_the_valid_rows(
    broker, unique, qualtrics_export
) -> None:
    path, mapping_file = qualtrics_export
    topic = f"replay-{unique}"
    result = CliRunner().invoke(
        app,
        ["replay", str(path), "--mapping", str(mapping_file), "--broker", broker.bootstrap,
         "--topic", topic],
    )  # fmt: skip
    assert result.exit_code == 1, result.output  # 1: bad rows reported, valid ones produced
    assert f"produced        4 to {topic}, acknowledged 4, undelivered 0" in result.stdout

    records = consume(broker.bootstrap, topic, 4, timeout=30)
    assert sorted(r.key for r in records) == [b"R_ok1", b"R_ok1", b"R_ok2", b"R_ok3"]
    # the update (line 13) follows the first version on the same key; its repeat is not sent
    updates = [orjson.loads(r.value) for r in records if r.key == b"R_ok1"]
    assert [u["score"] for u in updates] == [9, 2]
    events = {r.key.decode(): orjson.loads(r.value) for r in records if r.key != b"R_ok1"}
    ok1, ok2, ok3 = updates[0], events["R_ok2"], events["R_ok3"]
    assert ok1["event_time"] == "2026-01-15T09:30:00+01:00"  # CET
    assert ok2["event_time"] == "2026-07-15T18:05:00+02:00"  # CEST
    assert datetime.fromisoformat(ok2["event_time"]).astimezone(UTC) == datetime(
        2026, 7, 15, 16, 5, tzinfo=UTC
    )
    assert [ok1["score"], ok2["score"], ok3["score"]] == [9, 3, 7]
    assert ok1 == {
        "event_id": "R_ok1", "event_time": "2026-01-15T09:30:00+01:00", "survey_type": "nps",
        "score": 9, "customer_id": "r_ok1@example.it", "department": "support",
        "agent": "agent-7", "channel": "chat", "attributes": {"tier": "gold"},
        "source": "qualtrics-export",
    }  # fmt: skip
    assert (ok2["department"], ok2["channel"], ok2["comment"]) == (
        "billing",
        "phone",
        COMMENT_QUOTES,
    )
    assert ok3["comment"] == COMMENT_LINES and "attributes" not in ok3  # empty Tier left out


@pytest.mark.integration
def test_replay_through_a_worker_fills_the_windows(start_worker, worker_env, tmp_path) -> None:
    worker = start_worker(NPS_TOPIC_PARTITIONS="1")  # one partition: one clock, exact windows
    now = datetime.now(ROME).replace(tzinfo=None, microsecond=0)
    newest = now - timedelta(hours=1)
    # 60 answers over 3 hours, newest first as exports often are; naive Rome times
    scores = [(i * 7) % 11 for i in range(60)]
    departments = ["support" if i % 3 else "billing" for i in range(60)]
    times = [newest - timedelta(minutes=3 * i) for i in range(60)]
    rows = [["Response ID", "Submitted", "NPS", "Team"]] + [
        [f"R_{i:03d}", times[i].strftime("%d/%m/%Y %H:%M:%S"), str(scores[i]), departments[i]]
        for i in range(60)
    ]
    # a later line updates R_001 (a passive becomes a detractor): with --sort-by-time only
    # the last version is produced, so the windows count it once, as a detractor
    rows.append(["R_001", times[1].strftime("%d/%m/%Y %H:%M:%S"), "0", departments[1]])
    assert (scores[1], departments[1]) == (7, "support")
    scores[1] = 0
    path = tmp_path / "export.csv"
    path.write_bytes(csv_bytes(rows))
    result = CliRunner().invoke(
        app,
        ["replay", str(path), "--broker", worker_env["NPS_BROKER_URL"],
         "--topic", worker_env["NPS_TOPIC_RAW"], "--map", "event_id=Response ID",
         "--map", "event_time=Submitted", "--map", "score=NPS", "--map", "department=Team",
         "--map", "customer_id=Response ID", "--set", "survey_type=nps",
         "--time-format", "%d/%m/%Y %H:%M:%S", "--timezone", "Europe/Rome",
         "--sort-by-time", "--rate", "500"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "acknowledged 60, undelivered 0" in result.stdout
    assert "updates         1 " in result.stdout

    clock = newest.replace(tzinfo=ROME).timestamp()
    current = math.floor(clock / 60) * 60
    support = [i for i in range(60) if departments[i] == "support"]

    def expected(length: int) -> dict[str, int]:
        low = current - length + 60
        chosen = [
            scores[i] for i in support
            if low <= math.floor(times[i].replace(tzinfo=ROME).timestamp() / 60) * 60
        ]  # fmt: skip
        return {
            "responses": len(chosen),
            "promoters": sum(s >= 9 for s in chosen),
            "detractors": sum(s <= 6 for s in chosen),
        }

    deadline = time.monotonic() + 30
    view: dict = {}
    while time.monotonic() < deadline:
        try:
            view = orjson.loads(worker.get("/api/v1/segments/department/support"))
        except OSError:  # 404 until the first event of the segment is counted
            view = {}
        if view.get("all_time", {}).get("responses") == len(support):
            break
        time.sleep(0.3)
    assert view["all_time"]["responses"] == len(support) == 40, view
    assert datetime.fromisoformat(view["as_of"]).timestamp() == clock  # the file's time
    for label, length in (("5m", 300), ("1h", 3600), ("24h", 86400)):
        got = {k: view["windows"][label][k] for k in ("responses", "promoters", "detractors")}
        assert got == expected(length), label
    assert expected(3600)["responses"] == 13  # the last hour: 20 answers, 13 of support


@pytest.mark.integration
def test_100k_line_export_with_1_percent_bad_lines(broker, unique, tmp_path, capsys) -> None:
    """The issue's acceptance case and the replay benchmark (prints events/s)."""
    rng = random.Random(6)
    bad_kinds = {
        "score_out_of_range": lambda row: row.__setitem__(2, "12"),
        "schema_violation (score)": lambda row: row.__setitem__(2, "n/a"),
        "schema_violation (event_time)": lambda row: row.__setitem__(1, ""),
        "schema_violation (survey_type)": lambda row: row.__setitem__(4, "rating"),
    }
    start = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [["ResponseId", "EndDate", "Score", "Department", "Survey"]]
    expected: dict[str, list[int]] = {}
    bad_lines = set(rng.sample(range(2, 100_002), 1000))  # line 1 is the header
    for line in range(2, 100_002):
        i = line - 2
        row = [f"R_{i:06d}", (start + timedelta(seconds=20 * i)).isoformat(), str(i % 11),
               rng.choice(["support", "billing", "sales"]), "nps"]  # fmt: skip
        if line in bad_lines:
            kind = rng.choice(sorted(bad_kinds))
            bad_kinds[kind](row)
            expected.setdefault(kind, []).append(line)
        rows.append(row)
    path = tmp_path / "year.csv"
    path.write_bytes(csv_bytes(rows))
    mapping = Mapping.build(
        maps=["event_id=ResponseId", "event_time=EndDate", "score=Score", "survey_type=Survey",
              "customer_id=ResponseId", "department=Department"],
    )  # fmt: skip
    topic = f"year-{unique}"
    report = replay(path, mapping, bootstrap_servers=[broker.bootstrap], topic=topic, fmt="csv")
    assert report.invalid == expected
    assert (report.rows, report.valid, report.produced, report.acknowledged) == (
        100_000,
        99_000,
        99_000,
        99_000,
    )
    assert report.undelivered == [] and report.exit_code == 1

    # every valid row exactly once (read back: Tansu's end offsets lag what it acked)
    records = consume(broker.bootstrap, topic, 99_000, timeout=60)
    keys = sorted(r.key for r in records)
    assert keys == [f"R_{line - 2:06d}".encode() for line in range(2, 100_002)
                    if line not in bad_lines]  # fmt: skip
    with capsys.disabled():
        rate = report.produced / report.elapsed
        print(f"\nreplay benchmark: {report.produced:,} events in {report.elapsed:.1f} s = "
              f"{rate:,.0f} events/s (acks=all, embedded broker)")  # fmt: skip


def test_unreachable_broker_exits_2(tmp_path) -> None:
    path = tmp_path / "one.csv"
    path.write_bytes(csv_bytes([HEADER, qualtrics_row("R_1", "2026-11-25T10:00:00+01:00", "10")]))
    result = CliRunner().invoke(
        app, ["replay", str(path), "--broker", f"127.0.0.1:{free_port()}", "--set",
              "survey_type=nps", "--map", "event_id=ResponseId", "--connect-timeout", "1"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "cannot reach the broker" in result.stderr


def test_replayed_and_webhook_answers_get_the_same_event_id(tmp_path) -> None:
    """With the webhook's prefix (``event_id_prefix``), an answer that arrives by webhook
    and again in an export replay has one event id, so the worker counts it once."""
    from pipeline.ingest.adapters import from_delighted, from_qualtrics
    from pipeline.replay import Record, read_rows, validate_row
    from tests.test_ingest import QUALTRICS_MSG, delighted_payload

    received = datetime(2026, 11, 25, tzinfo=UTC)
    topic = f"acmecorp.surveyengine.completedResponse.{QUALTRICS_MSG['SurveyID']}"
    envelope = from_qualtrics(topic, QUALTRICS_MSG, received)
    mapping_file = tmp_path / "qualtrics.yaml"
    mapping_file.write_text(MAPPING_YAML + "event_id_prefix: qualtrics-\n")
    export = tmp_path / "qualtrics.csv"
    rid = QUALTRICS_MSG["ResponseID"]
    export.write_bytes(csv_bytes([HEADER, QUESTION_ROW, IMPORT_ROW,
                                  qualtrics_row(rid, "2026-11-25 09:30:05", "9")]))  # fmt: skip
    mapping = Mapping.build(mapping_file)
    [row] = read_rows(export, "csv", mapping.skip_rows)
    record = validate_row(row, mapping, 64 * 1024)
    assert isinstance(record, Record), record
    assert record.key.decode() == envelope.event_id == f"qualtrics-{rid}"

    payload = delighted_payload()
    [webhook_event] = from_delighted(payload)
    export = tmp_path / "delighted.jsonl"
    export.write_bytes(orjson.dumps(payload["event_data"]) + b"\n")
    mapping = Mapping.build(
        None,
        ["event_id=id", "event_time=created_at", "customer_id=person.id"],
        ["survey_type=nps", "source=delighted"],
        event_id_prefix="delighted-",
    )
    [row] = read_rows(export, "jsonl")
    record = validate_row(row, mapping, 64 * 1024)
    assert isinstance(record, Record), record
    assert record.key.decode() == webhook_event["event_id"] == "delighted-85420871"
    assert orjson.loads(record.value)["event_time"] == webhook_event["event_time"]
