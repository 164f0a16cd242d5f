"""The benchmark's reproducible dataset and its ground truth.

Events are JSON bytes as a producer would send them, in arrival order: event times
advance evenly over a span ending shortly before the wall clock, with +-20 s of
jitter and a share of events delayed by up to ``max_delay_seconds`` (inside the
allowed lateness, so every valid event counts in the windows). Agents are dealt
round-robin then shuffled, so every one of ``segments`` agents receives answers. A
share of records is invalid (not JSON, score off the scale, missing field) and must
end in the dead-letter topic.

The ground truth is computed here, independently of the pipeline's code: segment
keys are written out by hand (the dataset's values need no escaping), the themes of
each comment too (:data:`SENTENCES`, :func:`comment_themes`: with comment analytics on,
an answer also counts in ``theme=<name>`` for each), and answers are counted with plain arithmetic.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

DEPARTMENTS = ("support", "sales", "billing", "onboarding", "success")
PRODUCTS = ("mobile-app", "web-app", "api", "desktop")
CHANNELS = ("chat", "email", "phone", "in-app")
REGIONS = ("emea", "amer", "apac")
#: The sentences comments are made of, each with its themes in the default taxonomy
#: (``pipeline/text/data/themes.yaml``), written out by hand; a test checks them, and
#: every comment of two and three of them, against the comment analyzer. A comment is
#: one to three distinct sentences (:func:`compose`): 12,720 different texts (~3,200 among
#: 20,000 comments), so that the analysis caches per text (emerging topics) miss on the
#: longer ones, as they do on real comments, and the themes mix. One sentence in eight
#: carries an e-mail address or a phone number (redacted by the pipeline).
SENTENCES: dict[str, tuple[str, ...]] = {
    "Quick and friendly support.": ("staff_attitude",),  # "friendly"
    "Took three calls to get an answer, and the second agent had no notes from the first.": (),
    "ok": (),
    "The new dashboard is confusing; I could not find the export button.": ("ease_of_use",),
    "Great product, pricing is a bit high for small teams.": ("price",),
    "Billing charged me twice, write to anna.rossi@example.com or call +39 347 123 4567.": (
        "billing",  # "billing", "charged me twice"
    ),
    "I waited forty minutes on hold before anyone picked up.": ("wait_time",),
    "The agent was rude and hung up on me.": ("staff_attitude",),
    "Still not working after the last visit.": ("resolution",),
    "My invoice shows a fee I never agreed to.": ("billing",),
    "The app crashes every time I open the camera.": ("product_quality",),
    "The parcel was lost in transit and nobody knows where it is.": ("delivery",),
    "Way too expensive compared to the competition.": ("price",),
    "Nobody called me back as promised.": ("communication",),
    "Thanks, all good.": (),
    "The technician arrived on time and was very professional.": ("staff_attitude",),
    "I had to repeat my account number to every person.": (),
    "Refund requested weeks ago, please contact me at mario.bianchi@example.org.": ("billing",),
    "Setup took five minutes and everything was clear.": ("ease_of_use",),
    "Overall a decent experience.": (),
    "The web page kept logging me out.": (),
    "Call me on +44 20 7946 0958 about the contract.": (),
    "Not bad.": (),
    "The chat bot understood nothing I typed.": (),
}
_SENTENCE_LIST = tuple(SENTENCES)
#: How many sentences a comment has: one (half of them), two or three.
SENTENCE_COUNTS, SENTENCE_COUNT_WEIGHTS = (1, 2, 3), (0.5, 0.35, 0.15)


def compose(rng: random.Random) -> str:
    """A comment: one to three distinct :data:`SENTENCES`, joined by a space."""
    k = rng.choices(SENTENCE_COUNTS, SENTENCE_COUNT_WEIGHTS)[0]
    return " ".join(rng.sample(_SENTENCE_LIST, k))


def comment_themes(comment: str) -> tuple[str, ...]:
    """The themes of a comment :func:`compose` made: its sentences', each once, sorted."""
    themes: set[str] = set()
    rest = comment
    while rest:
        sentence = next(s for s in _SENTENCE_LIST if rest == s or rest.startswith(s + " "))
        themes.update(SENTENCES[sentence])
        rest = rest[len(sentence) + 1 :]
    return tuple(sorted(themes))


SURVEYS = ("nps", "csat", "ces")
SURVEY_WEIGHTS = (0.6, 0.25, 0.15)
SCALES = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
#: Score weights per survey, lowest score first: about 20% NPS detractors, 50% promoters.
SCORE_WEIGHTS = {
    "nps": (*([0.2 / 7] * 7), 0.15, 0.15, 0.25, 0.25),
    "csat": (0.05, 0.07, 0.13, 0.35, 0.40),
    "ces": (0.04, 0.05, 0.08, 0.13, 0.25, 0.25, 0.20),
}
#: Count fields of the ground truth, as named in the HTTP API's window stats.
TRUTH_FIELDS = (
    "responses",
    "promoters",
    "passives",
    "detractors",
    "csat_responses",
    "ces_responses",
)


def agent_name(index: int) -> str:
    return f"agent-{index:06d}"


@dataclass
class Dataset:
    values: list[bytes]
    #: segment key -> API field -> count, over the valid events
    truth: dict[str, Counter[str]] = field(default_factory=dict)
    valid: int = 0
    invalid: int = 0
    first_event_time: float = 0.0
    last_event_time: float = 0.0

    @property
    def segments(self) -> int:
        return len(self.truth)


def segment_keys(event: dict[str, object], themes: bool = False) -> list[str]:
    """The default configuration's segments of a dataset event, spelled out; with
    ``themes`` (comment analytics on) its comment's theme segments too."""
    comment = event.get("comment")
    theme_keys = [f"theme={t}" for t in comment_themes(str(comment))] if themes and comment else []
    return [
        "overall",
        f"department={event['department']}",
        f"agent={event['agent']}",
        f"product={event['product']}",
        f"channel={event['channel']}",
        f"region={event['region']}",
        f"department={event['department']}|channel={event['channel']}",
        *theme_keys,
    ]


def count(truth: dict[str, Counter[str]], event: dict[str, object], themes: bool) -> None:
    survey, score = event["survey_type"], event["score"]
    assert isinstance(score, int)
    names: list[str]
    if survey == "nps":
        kind = "promoters" if score >= 9 else "passives" if score >= 7 else "detractors"
        names = ["responses", kind]
    else:
        names = [f"{survey}_responses"]
    for key in segment_keys(event, themes):
        counts = truth.setdefault(key, Counter())
        for name in names:
            counts[name] += 1


def invalid_record(i: int, rng: random.Random, event: dict[str, object]) -> bytes:
    kind = i % 3
    if kind == 0:
        return orjson.dumps(event)[:-7]  # truncated: not JSON
    if kind == 1:
        return orjson.dumps({**event, "score": 11 if event["survey_type"] == "nps" else 9})
    return orjson.dumps({k: v for k, v in event.items() if k != "survey_type"})


def generate(
    count_: int,
    segments: int,
    *,
    seed: int = 1,
    span_seconds: float = 2 * 3600,
    end: float,
    comment_share: float = 0.4,
    late_share: float = 0.02,
    max_delay_seconds: float = 300.0,
    invalid_share: float = 0.01,
    id_prefix: str = "bench",
    themes: bool = False,
) -> Dataset:
    """``count_`` records ending at event time ``end`` (Unix seconds); ``themes``: the
    ground truth has the comments' theme segments (the pipeline has them when comment
    analytics are on)."""
    rng = random.Random(seed)
    agents = [i % segments for i in range(count_)]
    rng.shuffle(agents)
    start = end - span_seconds
    step = span_seconds / max(count_, 1)
    data = Dataset(values=[])
    first, last = float("inf"), float("-inf")
    for i, agent in enumerate(agents):
        ts = start + i * step + rng.uniform(-20.0, 20.0)
        if rng.random() < late_share:
            ts -= rng.uniform(0.0, max_delay_seconds)
        ts = min(ts, end)
        survey = rng.choices(SURVEYS, SURVEY_WEIGHTS)[0]
        low, high = SCALES[survey]
        event: dict[str, object] = {
            "event_id": f"{id_prefix}-{i:09d}",
            "event_time": datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds"),
            "survey_type": survey,
            "score": rng.choices(range(low, high + 1), SCORE_WEIGHTS[survey])[0],
            "customer_id": f"cust-{rng.randrange(50_000)}",
            "department": rng.choice(DEPARTMENTS),
            "agent": agent_name(agent),
            "product": rng.choice(PRODUCTS),
            "channel": rng.choice(CHANNELS),
            "region": rng.choice(REGIONS),
            "source": "bench",
        }
        if rng.random() < comment_share:
            event["comment"] = compose(rng)
        if survey == "nps" and rng.random() < 0.3:
            event["account_value"] = round(rng.uniform(1_000, 250_000), 2)
        if rng.random() < invalid_share:
            data.values.append(invalid_record(i, rng, event))
            data.invalid += 1
            continue
        data.values.append(orjson.dumps(event))
        data.valid += 1
        count(data.truth, event, themes)
        first, last = min(first, ts), max(last, ts)
    data.first_event_time, data.last_event_time = first, last
    return data
