"""The hostile input corpus: every kind of bad (or merely strange) record, with its fate.

Each :class:`Item` is one Kafka record for ``feedback.raw`` and what the pipeline must
do with it: score it, dead-letter it with a precise reason (and, where one is known, the
offending field), or drop it as an exact duplicate. The large items (a 10 MB payload,
100,000 levels of nesting) are built here at test time, never committed.

The Big List of Naughty Strings (``blns.json`` beside this file, MIT, see
``LICENSE-blns.txt``) is sent twice: each string as a comment, and each string as a
segment value (``department``).

``python -m tests.data.hostile.corpus DIR`` writes the corpus to ``DIR`` (one file per
item, plus ``index.json`` with the expectations) for use with other tools.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from schemas import FeedbackEvent

HERE = Path(__file__).parent
#: The pipeline's default NPS_DEADLETTER_MAX_ORIGINAL_BYTES (a dead letter keeps this much).
MAX_ORIGINAL_BYTES = 4 * 1024 * 1024

SCORED = "scored"
DUPLICATE = "duplicate"  # an exact repeat: dropped and counted, no output record
UPDATE = "update"  # same id, other content: scored as the next revision, counted once


@dataclass(frozen=True, slots=True)
class Item:
    """One hostile record and its expected fate.

    ``expect`` is :data:`SCORED`, :data:`DUPLICATE`, :data:`UPDATE` or a dead-letter reason
    (``schemas.Reason`` value). ``late``/``future`` items are scored *and*
    dead-lettered. ``field`` is the expected dead-letter field path (its first part
    is compared), ``message`` a fragment the dead letter's message must contain.
    """

    name: str
    value: bytes | None
    expect: str
    key: bytes | None = b"hostile"
    field: str | None = None
    message: str | None = None
    #: for scored naughty items: the string and where it was put ("comment"/"department")
    naughty: str | None = None
    naughty_in: str | None = None


def naughty_strings() -> list[str]:
    """The Big List of Naughty Strings (JSON form, comments and blank lines removed)."""
    strings: list[str] = json.loads((HERE / "blns.json").read_text(encoding="utf-8"))
    return strings


def event(ident: str, when: datetime, **overrides: Any) -> dict[str, Any]:
    """A valid NPS answer (plain dict) at ``when``; ``overrides`` replace fields
    (a value of ``...`` removes the field)."""
    document: dict[str, Any] = {
        "event_id": ident,
        "event_time": when.isoformat(),
        "survey_type": "nps",
        "score": 3,
        "comment": "Waited 40 minutes on hold.",
        "customer_id": "cust-1",
        "department": "support",
        "channel": "phone",
        "source": "hostile-corpus",
    }
    for name, value in overrides.items():
        if value is ...:
            document.pop(name, None)
        else:
            document[name] = value
    return document


def dumps(document: Any) -> bytes:
    """Compact JSON; integers beyond 64 bits (which orjson refuses) through ``json``."""
    try:
        return orjson.dumps(document)
    except TypeError:
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _replace_score(document: dict[str, Any], raw: bytes) -> bytes:
    """``document`` as JSON with the score written as the literal ``raw`` bytes."""
    marker = "__SCORE__"
    encoded = dumps({**document, "score": marker})
    return encoded.replace(f'"{marker}"'.encode(), raw)


def _with_attribute(document: dict[str, Any], raw: bytes) -> bytes:
    marker = "__ATTR__"
    encoded = dumps({**document, "attributes": {"x": marker}})
    return encoded.replace(f'"{marker}"'.encode(), raw)


#: Wrong types for every field of the contract: (field, wrong value, ...).
WRONG_TYPES: dict[str, list[Any]] = {
    "schema_version": ["one", [1], {"v": 1}, 2, 0],
    "event_id": [123, None, [], {"id": "x"}, "", "   ", "x" * 201],
    "event_time": [True, [], {"t": 1}, "yesterday", "2026-11-25T10:00:00", "2026-13-45T99:00Z"],
    "survey_type": [1, "NPS-ish", None, ["nps"]],
    "score": ["9", 9.5, 9.0, True, None, [9], {"v": 9}],
    "comment": [5, ["text"], {"c": 1}, "c" * 10_001],
    "customer_id": [42, [], None, ""],
    "department": [7, ["support"], {"d": 1}, "", "d" * 121],
    "agent": [7, False, ["a"]],
    "product": [1.5, {"p": 1}],
    "channel": [0, ["chat"]],
    "region": [True, {"r": "emea"}],
    "attributes": ["tier=gold", [1, 2], {"nested": {"a": 1}}, {"list": [1]}],
    "account_value": ["lots", [], -1, {"v": 1}],
    "source": [{}, 99, ""],
}


def build(now: datetime | None = None) -> list[Item]:
    """The whole corpus, in sending order (all on one partition, in this order)."""
    now = now or datetime.now(UTC)
    when = now - timedelta(seconds=60)
    items: list[Item] = []
    add = items.append
    ok = event("anchor-0", when)
    # first a valid event: the partition's watermark, so far-past events are late
    add(Item("anchor", dumps(ok), SCORED))

    # --- not JSON, not UTF-8, empty ---------------------------------------------------
    good = dumps(event("trunc-src", when))
    add(Item("plain text", b"this is not json", "not_json"))
    for cut in (1, 10, len(good) // 2, len(good) - 1):
        add(Item(f"truncated at {cut}", good[:cut], "not_json"))
    add(Item("trailing garbage", good + b"}", "not_json"))
    add(Item("two documents", good + good, "not_json"))
    add(Item("single quotes", good.replace(b'"', b"'"), "not_json"))
    add(Item("trailing comma", good[:-1] + b",}", "not_json"))
    add(Item("comment in JSON", b"/* hi */" + good, "not_json"))
    add(Item("UTF-8 BOM", b"\xef\xbb\xbf" + good, "not_json"))
    add(Item("lone surrogate escape", good.replace(b"Waited", b"\\ud800Waited"), "not_json"))
    add(Item("empty value", b"", "not_json"))
    add(Item("whitespace only", b" \n\t ", "not_json"))
    add(Item("null value (tombstone)", None, "schema_violation", message="empty record"))
    add(Item("invalid UTF-8 start", b"\xff\xfe\x00garbage", "bad_encoding"))
    add(Item("latin-1 in JSON", good.replace(b"Waited", b"Attesi caff\xe9"), "bad_encoding"))
    add(Item("overlong UTF-8", good.replace(b"Waited", b"\xc0\xafWaited"), "bad_encoding"))
    add(Item("UTF-16", json.dumps(event("u16", when)).encode("utf-16"), "bad_encoding"))
    add(Item("NUL bytes", b"\x00" * 64, "not_json"))

    # --- valid JSON, not an object ------------------------------------------------------
    for name, value in [("array", [1, 2]), ("string", "hi"), ("number", 7), ("null", None)]:
        add(
            Item(f"JSON {name}", dumps(value), "schema_violation", message="expected a JSON object")
        )
    add(Item("empty object", b"{}", "schema_violation"))
    add(
        Item(
            "unknown field",
            dumps(event("unk", when, sentiment="good")),
            "schema_violation",
            field="sentiment",
        )
    )

    # --- wrong types in every field ---------------------------------------------------
    for field_name, wrongs in WRONG_TYPES.items():
        for i, wrong in enumerate(wrongs):
            document = event(f"wrong-{field_name}-{i}", when, **{field_name: wrong})
            add(
                Item(
                    f"{field_name} = {wrong!r:.40}",
                    dumps(document),
                    "schema_violation",
                    field=field_name,
                )
            )
    for field_name in ("event_id", "event_time", "survey_type", "score", "customer_id"):
        document = event(f"missing-{field_name}", when, **{field_name: ...})
        add(Item(f"missing {field_name}", dumps(document), "schema_violation", field=field_name))

    # --- scores out of range, non-integers, NaN/Infinity, huge numbers ------------------
    for survey, bad in [
        ("nps", -1),
        ("nps", 11),
        ("csat", 0),
        ("csat", 6),
        ("ces", 0),
        ("ces", 8),
        ("nps", 10**30),
        ("nps", -(10**30)),
    ]:
        document = event(f"range-{survey}-{bad}", when, survey_type=survey, score=bad)
        add(Item(f"{survey} score {bad}", dumps(document), "score_out_of_range", field="score"))
    base = event("num", when)
    for raw in (b"NaN", b"-NaN", b"Infinity", b"-Infinity", b"1e400", b"9" * 5000):
        add(Item(f"score {raw[:12]!r}", _replace_score(base, raw), "not_json"))
    for raw in (b"9.0", b"9e0", b"0.9e1", b"9.5", b"1e2"):
        add(Item(f"score {raw!r}", _replace_score(base, raw), "schema_violation", field="score"))
    for raw in (b"NaN", b"Infinity", b"-Infinity", b"1e400"):
        add(Item(f"attribute {raw!r}", _with_attribute(base, raw), "not_json"))
    add(Item("account_value 1e400", dumps(base)[:-1] + b',"account_value":1e400}', "not_json"))
    add(Item("account_value NaN", dumps(base)[:-1] + b',"account_value":NaN}', "not_json"))
    huge = event("huge-ok", when, account_value=1.7e308, attributes={"big": 2**63, "neg": -(2**63)})
    add(Item("huge but valid numbers", dumps(huge), SCORED))
    add(Item("score -0", _replace_score(event("minus-zero", when), b"-0"), SCORED))

    # --- size and depth -----------------------------------------------------------------
    big_comment = event("big-10mb", when, comment="z" * (10 * 1024 * 1024))
    add(Item("10 MB payload", dumps(big_comment), "oversize"))
    add(Item("10 MB of spaces", b"{" + b" " * (10 * 1024 * 1024) + b"}", "oversize"))
    deep = 100_000
    add(Item("100k nested arrays", b"[" * deep + b"]" * deep, "not_json", message="depth"))
    nested = b"[" * deep + b"1" + b"]" * deep
    add(
        Item(
            "100k nested arrays in an attribute",
            _with_attribute(base, nested),
            "not_json",
            message="depth",
        )
    )
    objects = b'{"a":' * deep + b"1" + b"}" * deep  # 600 kB: over the size limit first
    add(Item("100k nested objects", objects, "oversize"))
    add(Item("unclosed 100k nesting", b"[" * deep, "not_json"))

    # --- timestamps far in the past and future --------------------------------------------
    for i, stamp in enumerate(
        [
            "1970-01-01T00:00:00+00:00",
            "0001-01-01T00:00:00+00:00",
            "1900-02-28T23:59:59-12:00",
            "2001-01-01T00:00:00+14:00",
        ]
    ):
        add(Item(f"past {stamp}", dumps(event(f"past-{i}", when, event_time=stamp)), "late"))
    future = (now + timedelta(days=3650)).isoformat()
    for i, stamp in enumerate(["9999-12-31T23:59:59+00:00", future, "3000-01-01T00:00:00+05:30"]):
        add(Item(f"future {stamp}", dumps(event(f"future-{i}", when, event_time=stamp)), "future"))
    for stamp in (
        "10000-01-01T00:00:00+00:00",
        "2026-02-30T10:00:00+00:00",
        "2026-11-25T10:00:00+25:00",
        "0000-01-01T00:00:00+00:00",
    ):
        add(
            Item(
                f"impossible time {stamp}",
                dumps(event("bad-time", when, event_time=stamp)),
                "schema_violation",
                field="event_time",
            )
        )

    # --- duplicates and keys ------------------------------------------------------------
    twice = dumps(event("dup-1", when))
    add(Item("duplicate: first", twice, SCORED))
    add(Item("duplicate: exact repeat", twice, DUPLICATE))
    add(Item("duplicate: exact repeat, null key", twice, DUPLICATE, key=None))
    add(Item("duplicate: different content", dumps(event("dup-1", when, score=10)), UPDATE))
    add(Item("null key, valid", dumps(event("nullkey-1", when)), SCORED, key=None))
    add(Item("null key, invalid", b"nope", "not_json", key=None))
    add(Item("empty key, valid", dumps(event("emptykey-1", when)), SCORED, key=b""))
    add(Item("binary key, valid", dumps(event("binkey-1", when)), SCORED, key=b"\xff\x00\xfe"))

    # --- the Big List of Naughty Strings ----------------------------------------------------
    ids: set[str] = set()
    for i, text in enumerate(naughty_strings()):
        document = event(f"blns-comment-{i}", when, comment=text, department="naughty-comments")
        add(Item(f"blns comment {i}", dumps(document), SCORED, naughty=text, naughty_in="comment"))
        document = event(f"blns-segment-{i}", when, department=text, comment=None, channel=...)
        if _valid(document):
            add(
                Item(
                    f"blns segment {i}",
                    dumps(document),
                    SCORED,
                    naughty=text,
                    naughty_in="department",
                )
            )
        else:  # blank, or longer than the contract's 120 characters of a segment value
            add(Item(f"blns segment {i}", dumps(document), "schema_violation", field="department"))
        # as an event id and record key too: ids must survive (blank/too long ones and
        # ids equal to an earlier one after whitespace stripping are left out)
        document = event(text, when, department="naughty-ids")
        if (
            _valid(document)
            and (normal := FeedbackEvent.model_validate(document).event_id) not in ids
        ):
            ids.add(normal)
            add(
                Item(
                    f"blns event id {i}",
                    dumps(document),
                    SCORED,
                    key=text.encode(),
                    naughty=text,
                    naughty_in="event_id",
                )
            )

    # a valid event after everything: the partition is still being processed
    add(Item("sentinel", dumps(event("sentinel-0", when)), SCORED))
    return items


def _valid(document: dict[str, Any]) -> bool:
    """Whether the contract accepts ``document`` (blank or over-long naughty strings)."""
    try:
        FeedbackEvent.model_validate(document)
    except ValidationError:
        return False
    return True


def write(directory: Path) -> None:
    """Write every item to ``directory`` (``NNNN.bin``) and the expectations to
    ``index.json``; a ``None`` value (tombstone) gets no file."""
    directory.mkdir(parents=True, exist_ok=True)
    index = []
    for n, item in enumerate(build()):
        path = None
        if item.value is not None:
            path = f"{n:04d}.bin"
            (directory / path).write_bytes(item.value)
        index.append(
            {
                "file": path,
                "name": item.name,
                "expect": item.expect,
                "field": item.field,
                "key": None if item.key is None else item.key.hex(),
            }
        )
    (directory / "index.json").write_text(json.dumps(index, indent=1))


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-corpus"))
