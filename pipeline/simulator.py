"""Feedback simulator: realistic NPS, CSAT and CES answers produced to Kafka.

The simulated world (all of it fixed by ``seed``):

* **Segments.** Departments, ``num_agents`` agents (``agent-001``...) each in one
  department, products, channels and regions. Customers come from a pool of
  :data:`CUSTOMER_POOL`; each has a home region, a language (Italian for 40% of the
  ``emea`` customers, English otherwise), a tenure, a mood and, for half of them, an
  account value (lognormal, median ~1,100).
* **Quality.** Every department, product, channel, region, agent and customer has a
  quality effect on a logit scale (agents ~N(0, 0.35), 6% "problem" agents at -1.6, 5%
  "stars" at +0.9). An answer sums the effects of its segments into ``q`` and an
  ordered-logit model gives P(negative) = sigmoid(-1.0 - q), P(negative or middle) =
  sigmoid(0.35 - q). Negative / middle / positive are NPS detractor 0-6 / passive 7-8 /
  promoter 9-10, CSAT 1-2 / 3 / 4-5, CES 1-3 / 4 / 5-7. With q = 0 the NPS is about +14;
  the best and worst departments are ~50 NPS points apart.
* **Surveys.** 70% NPS, 20% CSAT, 10% CES. A comment comes with ``comment_probability``
  of the answers, in the customer's language, matching the class: praise, lukewarm, or a
  complaint about one of nine topics (wait time, rude staff, billing error, unresolved
  issue, broken product, late delivery, price, hard to use, poor communication), with the
  topics typical of the department three times as likely.
* **Incidents.** While the event time is inside an :class:`Incident` (offset from the
  simulation start), answers of its segment have the incident's share of negative answers
  (detractors for NPS, unsatisfied for CSAT/CES); middle and positive keep their ratio.
  With a ``topic`` (one of the nine above, or ``double_charge``: "double charged" /
  "addebito doppio", see :data:`INCIDENT_TOPICS`) the segment's negative answers with a
  comment talk about that topic during the incident (what alert evidence should surface
  as an emerging topic). An incident changes the *answers*, not the *traffic*: the
  segment keeps its normal
  share, e.g. one agent of 300 gets ~1/300 of the events (~0.7/s at 200 events/s, so
  ~140 NPS answers in a 5-minute incident).
* **Daily rhythm.** :func:`produce` paces events at ``rate`` x :func:`rate_factor`
  (event-time hour of day: busy 9-17, quiet at night; the factor averages 1 over a day).
* **Bad records.** ``invalid_ratio`` of the records are :func:`bad_record` s: not JSON,
  invalid UTF-8, score out of range, or a missing field, to exercise the dead-letter path.

Event ids are ``sim-<seed>-<n>``: the same seed and event times give the same events.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from itertools import accumulate
from typing import Any, Literal, NamedTuple

import orjson
from kafka import KafkaProducer
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from pipeline.settings import DEFAULT_COMPRESSION, Compression
from schemas.feedback import SCALES, SEGMENT_FIELDS

log = logging.getLogger(__name__)

Dimension = Literal["department", "agent", "product", "channel", "region"]

# name -> (traffic weight, quality effect on the logit scale; positive = happier customers)
DEPARTMENTS: dict[str, tuple[float, float]] = {
    "support": (0.30, 0.0), "billing": (0.16, -0.45), "sales": (0.14, 0.35),
    "onboarding": (0.10, 0.55), "technical": (0.18, -0.2), "returns": (0.12, -0.7),
}  # fmt: skip
PRODUCTS: dict[str, tuple[float, float]] = {
    "fiber-home": (0.22, 0.1), "mobile-plan": (0.25, 0.0), "streaming": (0.14, 0.25),
    "smart-router": (0.12, -0.55), "mobile-app": (0.17, 0.3), "business-cloud": (0.10, -0.2),
}  # fmt: skip
CHANNELS: dict[str, tuple[float, float]] = {
    "email": (0.18, -0.3), "chat": (0.24, 0.15), "phone": (0.25, -0.1),
    "web": (0.13, 0.0), "app": (0.12, 0.25), "store": (0.08, 0.4),
}  # fmt: skip
REGIONS: dict[str, tuple[float, float]] = {
    "emea": (0.40, 0.0), "na": (0.32, 0.1), "latam": (0.14, -0.15), "apac": (0.14, 0.05),
}  # fmt: skip
SURVEY_MIX: dict[str, float] = {"nps": 0.70, "csat": 0.20, "ces": 0.10}
CUSTOMER_POOL = 20_000
ITALIAN_SHARE_EMEA = 0.4
_CUT_NEGATIVE, _CUT_MIDDLE = -1.0, 0.35
# Per survey: (scores, weights) of the negative, middle and positive class.
_SCORES: dict[str, tuple[tuple[tuple[int, ...], tuple[float, ...]], ...]] = {
    "nps": (((0, 1, 2, 3, 4, 5, 6), (3, 1, 2, 3, 4, 7, 8)), ((7, 8), (1, 1)), ((9, 10), (5, 4))),
    "csat": (((1, 2), (5, 4)), ((3,), (1,)), ((4, 5), (5, 4))),
    "ces": (((1, 2, 3), (3, 3, 4)), ((4,), (1,)), ((5, 6, 7), (4, 4, 3))),
}
_HOURLY = (0.15, 0.1, 0.08, 0.08, 0.1, 0.2, 0.4, 0.8, 1.2, 1.6, 1.8, 1.7,
           1.4, 1.4, 1.6, 1.6, 1.5, 1.3, 1.1, 1.0, 0.9, 0.7, 0.5, 0.3)  # fmt: skip
#: Relative event rate per hour of the day (event time); averages exactly 1.
HOURLY_PROFILE: tuple[float, ...] = tuple(w * 24 / sum(_HOURLY) for w in _HOURLY)

_NEGATIVE: dict[str, dict[str, tuple[str, ...]]] = {
    "wait_time": {
        "en": ("Waited {minutes} minutes on hold before anyone answered.",
               "Far too slow: {days} days to get a reply to a simple question."),
        "it": ("Ho aspettato {minutes} minuti in linea prima che qualcuno rispondesse.",
               "Troppo lenti: {days} giorni per una risposta a una domanda semplice.")},
    "rude_staff": {
        "en": ("The agent was rude and dismissive.", "{agent} was impatient and talked over me."),
        "it": ("L'operatore è stato scortese e sbrigativo.",
               "{agent} è stato maleducato e non mi ha lasciato parlare.")},
    "billing_error": {
        "en": ("I was charged twice this month, {amount} EUR for nothing.",
               "My invoice is wrong again and nobody fixes it."),
        "it": ("Mi avete addebitato due volte {amount} euro questo mese.",
               "La fattura è di nuovo sbagliata e nessuno la corregge.")},
    "unresolved": {
        "en": ("My issue is still not resolved after three contacts.",
               "They closed the ticket but the problem with {product} is still there."),
        "it": ("Il mio problema non è ancora risolto dopo tre chiamate.",
               "Hanno chiuso la pratica ma il problema con {product} c'è ancora.")},
    "broken_product": {
        "en": ("{product} stopped working after a week.", "{product} keeps failing, unreliable."),
        "it": ("{product} ha smesso di funzionare dopo una settimana.",
               "{product} si blocca di continuo, del tutto inaffidabile.")},
    "late_delivery": {
        "en": ("The delivery arrived {days} days late.", "Still waiting for my order, no updates."),
        "it": ("La consegna è arrivata con {days} giorni di ritardo.",
               "Sto ancora aspettando l'ordine, nessun aggiornamento sulla spedizione.")},
    "price": {
        "en": ("Too expensive for what you get.", "The price went up again with no improvement."),
        "it": ("Troppo caro per quello che offre.",
               "Il prezzo è aumentato di nuovo senza nessun miglioramento.")},
    "hard_to_use": {
        "en": ("Setting up {product} is confusing and hard to use.",
               "Impossible to find how to change my plan online."),
        "it": ("Configurare {product} è complicato e poco chiaro.",
               "Impossibile capire come cambiare il piano dal sito.")},
    "poor_communication": {
        "en": ("Nobody called me back as promised.", "Everyone I spoke to said something else."),
        "it": ("Nessuno mi ha richiamato come promesso.",
               "Ogni operatore mi ha dato informazioni diverse.")},
}  # fmt: skip
_POSITIVE: dict[str, tuple[str, ...]] = {
    "en": ("Quick and friendly support, thank you!", "{agent} solved my problem in minutes.",
           "Great experience, {product} works perfectly.", "Very helpful and clear explanations.",
           "Fast delivery and easy setup.", "Excellent service, I recommend you to my friends.",
           "Fixed on the first call, well done.", "Good value for money, happy with {product}."),
    "it": ("Assistenza rapida e cortese, grazie!", "{agent} ha risolto tutto in pochi minuti.",
           "Ottima esperienza, {product} funziona perfettamente.", "Disponibili e chiarissimi.",
           "Consegna veloce e installazione semplice.", "Servizio eccellente, vi consiglio.",
           "Risolto alla prima chiamata, bravi.", "Buon rapporto qualità prezzo per {product}."),
}  # fmt: skip
_NEUTRAL: dict[str, tuple[str, ...]] = {
    "en": ("It was okay, nothing special.", "Solved in the end, but it took a while.",
           "Decent service, the app could be better.", "Fine overall, a bit pricey.",
           "Average experience, the agent was polite.", "Got what I needed eventually."),
    "it": ("Tutto sommato nella media.", "Risolto alla fine, ma ci è voluto un po'.",
           "Servizio discreto, l'app potrebbe migliorare.", "Nel complesso bene, un po' caro.",
           "Esperienza normale, operatore gentile.", "Alla fine ho avuto ciò che serviva."),
}  # fmt: skip
_TOPICS = tuple(_NEGATIVE)
#: Complaints that only incidents inject (``topic=`` of an :class:`Incident`).
INCIDENT_TOPICS: dict[str, dict[str, tuple[str, ...]]] = {
    "double_charge": {
        "en": ("I was double charged for the same order.",
               "Double charged on my card, {amount} EUR taken twice!",
               "Another double charged payment, refund it now."),
        "it": ("Addebito doppio sulla carta per lo stesso ordine.",
               "Ancora un addebito doppio di {amount} euro!",
               "Addebito doppio sul conto, rimborsatemi subito.")},
}  # fmt: skip
_TYPICAL_TOPICS: dict[str, tuple[str, ...]] = {
    "support": ("wait_time", "rude_staff", "unresolved"), "billing": ("billing_error", "price"),
    "sales": ("price", "poor_communication"), "onboarding": ("hard_to_use", "poor_communication"),
    "technical": ("broken_product", "unresolved"), "returns": ("late_delivery", "unresolved"),
}  # fmt: skip

BAD_KINDS: tuple[str, ...] = ("not_json", "bad_encoding", "score_out_of_range", "missing_field")
_NOT_JSON = (b'{"event_id": "oops", "score": 7', b"survey=nps;score=9;comment=ok",
             b"<feedback score='8'/>", b"\x00\x01\x02")  # fmt: skip


class Incident(BaseModel):
    """A segment whose answers turn bad for a while (event time, from the simulation start)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dimension: Dimension
    value: str = Field(min_length=1)
    detractor_share: float = Field(ge=0, le=1, description="Share of negative answers.")
    start_after_seconds: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    duration_seconds: float = Field(gt=0, allow_inf_nan=False)
    topic: str | None = Field(
        default=None,
        description="What the segment's negative comments are about during the incident: "
        "a simulator topic (wait_time, billing_error, ...) or one of INCIDENT_TOPICS.",
    )

    @field_validator("topic")
    @classmethod
    def _known_topic(cls, value: str | None) -> str | None:
        if value is not None and value not in _NEGATIVE and value not in INCIDENT_TOPICS:
            known = ", ".join([*_NEGATIVE, *INCIDENT_TOPICS])
            raise ValueError(f"unknown topic {value!r}; use one of {known}")
        return value

    def active_at(self, offset_seconds: float) -> bool:
        """Whether the incident is on ``offset_seconds`` after the simulation start."""
        return 0 <= offset_seconds - self.start_after_seconds < self.duration_seconds

    @classmethod
    def parse(cls, spec: str) -> Incident:
        """Parse ``"agent=agent-042,detractors=0.6,start=60,duration=300"``.

        ``start`` is optional (default 0), and so is ``topic`` (``topic=double_charge``);
        ``start`` and ``duration`` take seconds or a number with an ``s``, ``m`` or ``h``
        suffix. Raises ValueError saying what is wrong.
        """
        hint = "expected e.g. 'agent=agent-042,detractors=0.6,start=60,duration=300'"
        fields: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, raw = (s.strip() for s in part.partition("="))
            key = key.lower()
            if not sep or not key or not raw:
                raise ValueError(f"incident {spec!r}: {part!r} is not key=value; {hint}")
            if key in SEGMENT_FIELDS:
                if "dimension" in fields:
                    raise ValueError(
                        f"incident {spec!r} names two segments ({fields['dimension']} and {key});"
                        " an incident affects exactly one"
                    )
                fields["dimension"], fields["value"] = key, raw
            elif key in ("detractors", "detractor_share", "share"):
                share = _number(raw, key, spec)
                if not 0 <= share <= 1:
                    raise ValueError(
                        f"incident {spec!r}: {key}={raw} must be a share between 0 and 1 (e.g. 0.6)"
                    )
                fields["detractor_share"] = share
            elif key in ("start", "start_after", "start_after_seconds"):
                fields["start_after_seconds"] = _seconds(raw, key, spec)
            elif key == "topic":
                fields["topic"] = raw
            elif key in ("duration", "duration_seconds"):
                fields["duration_seconds"] = _seconds(raw, key, spec)
                if fields["duration_seconds"] <= 0:
                    raise ValueError(f"incident {spec!r}: duration must be greater than 0")
            else:
                raise ValueError(
                    f"incident {spec!r}: unknown key {key!r}; use one of "
                    f"{'=, '.join(SEGMENT_FIELDS)}=, detractors=, start=, duration=, topic="
                )
        needed = {"dimension": "a segment (department=, agent=, product=, channel= or region=)",
                  "detractor_share": "detractors=", "duration_seconds": "duration="}  # fmt: skip
        if missing := [text for name, text in needed.items() if name not in fields]:
            raise ValueError(f"incident {spec!r} is missing {', '.join(missing)}; {hint}")
        return cls(**fields)


def _number(raw: str, key: str, spec: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"incident {spec!r}: {key}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"incident {spec!r}: {key}={raw!r} must be a finite number")
    return value


def _seconds(raw: str, key: str, spec: str) -> float:
    unit = {"s": 1, "m": 60, "h": 3600}.get(raw[-1].lower(), 0)
    value = _number(raw[:-1] if unit else raw, key, spec) * (unit or 1)
    if value < 0:
        raise ValueError(f"incident {spec!r}: {key}={raw} must not be negative")
    return value


class SimulatorConfig(BaseModel):
    """What to simulate and how fast."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 7
    rate: float = Field(default=200.0, ge=0, allow_inf_nan=False, description="0 = no pacing.")
    count: int | None = Field(default=None, ge=0, description="Stop after this many records.")
    duration_seconds: float | None = Field(default=None, gt=0, description="Wall-clock limit.")
    incidents: list[Incident] = Field(default_factory=list)
    invalid_ratio: float = Field(default=0.0, ge=0, le=1)
    start_time: AwareDatetime | None = Field(default=None, description="None = now, real time.")
    time_scale: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    num_agents: int = Field(default=300, ge=1, le=99_999)
    comment_probability: float = Field(default=0.6, ge=0, le=1)
    daily_cycle: bool = Field(default=True, description="Vary the rate by hour of event time.")


class _Customer(NamedTuple):
    id: str
    region: str
    language: str
    account_value: float | None
    tenure_months: int
    mood: float


def _cum(weights: Sequence[float]) -> list[float]:
    return list(accumulate(weights))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def rate_factor(event_time: datetime) -> float:
    """Relative event rate at ``event_time`` (hour of day, interpolated; mean 1)."""
    hour = event_time.hour + event_time.minute / 60
    low = int(hour)
    frac = hour - low
    return HOURLY_PROFILE[low] * (1 - frac) + HOURLY_PROFILE[(low + 1) % 24] * frac


class FeedbackSimulator:
    """Deterministic source of feedback events: same config and event times, same events.

    Incident offsets count from ``start`` (default ``config.start_time``, else the event
    time of the first event generated).
    """

    def __init__(
        self, config: SimulatorConfig | None = None, start: datetime | None = None
    ) -> None:
        self.config = config or SimulatorConfig()
        self.start = start or self.config.start_time
        seed = self.config.seed
        self.count = 0
        self._rng = random.Random(f"events-{seed}")
        self._bad_rng = random.Random(f"bad-{seed}")
        world = random.Random(f"world-{seed}")
        self.departments = list(DEPARTMENTS)
        self._dept_cw = _cum([w for w, _ in DEPARTMENTS.values()])
        self.products, self._product_cw = list(PRODUCTS), _cum([w for w, _ in PRODUCTS.values()])
        self.channels, self._channel_cw = list(CHANNELS), _cum([w for w, _ in CHANNELS.values()])
        self._surveys, self._survey_cw = list(SURVEY_MIX), _cum(list(SURVEY_MIX.values()))
        width = max(3, len(str(self.config.num_agents)))
        self.agents = [f"agent-{i:0{width}d}" for i in range(1, self.config.num_agents + 1)]
        self.agent_department: dict[str, str] = {}
        self.agent_effect: dict[str, float] = {}
        self.team: dict[str, list[str]] = {d: [] for d in self.departments}
        for i, agent in enumerate(self.agents):
            dept = (self.departments[i] if i < len(self.departments)
                    else world.choices(self.departments, cum_weights=self._dept_cw)[0])  # fmt: skip
            u = world.random()
            base = -1.6 if u < 0.06 else 0.9 if u < 0.11 else 0.0
            self.agent_department[agent] = dept
            self.agent_effect[agent] = base + world.gauss(0, 0.35)
            self.team[dept].append(agent)
        regions, region_cw = list(REGIONS), _cum([w for w, _ in REGIONS.values()])
        self.customers: list[_Customer] = []
        for i in range(CUSTOMER_POOL):
            region = world.choices(regions, cum_weights=region_cw)[0]
            italian = region == "emea" and world.random() < ITALIAN_SHARE_EMEA
            value = round(world.lognormvariate(7.0, 1.1), 2) if world.random() < 0.5 else None
            tenure, mood = int(world.expovariate(1 / 30)), world.gauss(0, 0.3)
            self.customers.append(
                _Customer(f"cust-{i:05d}", region, "it" if italian else "en", value, tenure, mood)
            )
        self._topic_cw = {
            d: _cum([3.0 if t in _TYPICAL_TOPICS[d] else 1.0 for t in _TOPICS]) for d in DEPARTMENTS
        }
        self._scores = {s: tuple((v, _cum(w)) for v, w in c) for s, c in _SCORES.items()}
        known = {"department": DEPARTMENTS, "agent": self.agent_effect, "product": PRODUCTS,
                 "channel": CHANNELS, "region": REGIONS}  # fmt: skip
        for inc in self.config.incidents:
            if inc.value not in known[inc.dimension]:
                raise ValueError(
                    f"incident {inc.dimension}={inc.value} matches nothing simulated; "
                    f"known: {', '.join(list(known[inc.dimension])[:12])}"
                )

    def next_event(self, event_time: datetime) -> dict[str, Any]:
        """The next answer at ``event_time`` (aware) as a JSON-ready FeedbackEvent dict."""
        rng, cfg = self._rng, self.config
        if self.start is None:
            self.start = event_time
        self.count += 1
        cust = self.customers[int(rng.random() * len(self.customers))]
        dept = rng.choices(self.departments, cum_weights=self._dept_cw)[0]
        team = self.team[dept]
        agent = team[int(rng.random() * len(team))] if team else None
        product = rng.choices(self.products, cum_weights=self._product_cw)[0]
        channel = rng.choices(self.channels, cum_weights=self._channel_cw)[0]
        survey = rng.choices(self._surveys, cum_weights=self._survey_cw)[0]
        segments = {"department": dept, "agent": agent, "product": product,
                    "channel": channel, "region": cust.region}  # fmt: skip
        q = DEPARTMENTS[dept][1] + PRODUCTS[product][1] + CHANNELS[channel][1]
        q += REGIONS[cust.region][1] + cust.mood + self.agent_effect.get(agent or "", 0.0)
        p_neg, p_low = _sigmoid(_CUT_NEGATIVE - q), _sigmoid(_CUT_MIDDLE - q)
        topic: str | None = None
        if cfg.incidents:
            offset = (event_time - self.start).total_seconds()
            active = [i for i in cfg.incidents
                      if segments[i.dimension] == i.value and i.active_at(offset)]  # fmt: skip
            if active:
                share = max(i.detractor_share for i in active)
                topic = next((i.topic for i in active if i.topic is not None), None)
                p_neg, p_low = share, share + (p_low - p_neg) * (1 - share) / (1 - p_neg)
        u = rng.random()
        klass = 0 if u < p_neg else 1 if u < p_low else 2
        values, cum_weights = self._scores[survey][klass]
        event: dict[str, Any] = {
            "event_id": f"sim-{cfg.seed}-{self.count}",
            "event_time": event_time.isoformat(timespec="milliseconds"),
            "survey_type": survey,
            "score": rng.choices(values, cum_weights=cum_weights)[0],
            "customer_id": cust.id,
            **{k: v for k, v in segments.items() if v is not None},
            "attributes": {"language": cust.language, "tenure_months": cust.tenure_months},
            "source": "simulator",
        }
        if rng.random() < cfg.comment_probability:
            event["comment"] = self._comment(klass, cust.language, dept, product, agent, topic)
        if cust.account_value is not None:
            event["account_value"] = cust.account_value
        return event

    def _comment(
        self,
        klass: int,
        lang: str,
        dept: str,
        product: str,
        agent: str | None,
        topic: str | None = None,
    ) -> str:
        rng = self._rng
        if klass == 0:
            if topic is None:
                topic = rng.choices(_TOPICS, cum_weights=self._topic_cw[dept])[0]
            pool = (INCIDENT_TOPICS.get(topic) or _NEGATIVE[topic])[lang]
        else:
            pool = (_NEUTRAL if klass == 1 else _POSITIVE)[lang]
        text = pool[int(rng.random() * len(pool))]
        if "{" not in text:
            return text
        amount = f"{rng.choice((19.99, 29.9, 49.0, 89.5)):.2f}"
        return text.format(
            product=product.replace("-", " ").title(),
            agent=agent or ("L'operatore" if lang == "it" else "The agent"),
            minutes=rng.randint(12, 95),
            days=rng.randint(2, 15),
            amount=amount.replace(".", ",") if lang == "it" else amount,
        )

    def next_record(self, event_time: datetime) -> tuple[bytes, bytes]:
        """(key, value) of the next Kafka record: a bad one with ``invalid_ratio``."""
        if self._bad_rng.random() < self.config.invalid_ratio:
            self.count += 1
            key = f"sim-{self.config.seed}-{self.count}-bad".encode()
            return key, bad_record(self._bad_rng, event_time)
        event = self.next_event(event_time)
        return event["event_id"].encode(), orjson.dumps(event)


def bad_record(
    rng: random.Random, event_time: datetime | None = None, kind: str | None = None
) -> bytes:
    """One invalid record of ``kind`` (default: random) from :data:`BAD_KINDS`."""
    kind = kind or rng.choice(BAD_KINDS)
    if kind == "not_json":
        return rng.choice(_NOT_JSON)
    survey = rng.choice(tuple(SCALES))
    event: dict[str, Any] = {
        "event_id": f"bad-{rng.getrandbits(40):010x}",
        "event_time": (event_time or datetime.now().astimezone()).isoformat(),
        "survey_type": survey,
        "score": 5,
        "customer_id": f"cust-{rng.randrange(CUSTOMER_POOL):05d}",
        "source": "simulator",
    }
    if kind == "bad_encoding":  # a Latin-1 comment where UTF-8 is required
        event["comment"] = "@@"
        return orjson.dumps(event).replace(b"@@", "Non funziona più, perché?".encode("latin-1"))
    if kind == "score_out_of_range":
        low, high = SCALES[survey]
        event["score"] = rng.choice((low - 1, high + 1, high + 10))
    elif kind == "missing_field":
        del event[rng.choice(("event_time", "survey_type", "score", "customer_id"))]
    else:
        raise ValueError(f"unknown bad record kind {kind!r}; expected one of {BAD_KINDS}")
    return orjson.dumps(event)


class _Deliveries:
    def __init__(self) -> None:
        self.acked = 0
        self.failed = 0
        self.first_error: BaseException | None = None

    def ok(self, _metadata: object) -> None:
        self.acked += 1

    def error(self, exc: BaseException) -> None:
        self.failed += 1
        self.first_error = self.first_error or exc


def pacing_interval(config: SimulatorConfig, event_time: datetime) -> float:
    """Wall seconds :func:`produce` leaves after a record at ``event_time``: 1 / (``rate`` x
    :func:`rate_factor`), or 1 / ``rate`` without the daily cycle; 0 when ``rate`` is 0."""
    if config.rate <= 0:
        return 0.0
    factor = rate_factor(event_time) if config.daily_cycle else 1.0
    return 1.0 / (config.rate * factor)


def produce(
    bootstrap_servers: list[str],
    topic: str,
    config: SimulatorConfig,
    stop: threading.Event | None = None,
    progress: Callable[[int], None] | None = None,
    compression: Compression = DEFAULT_COMPRESSION,
) -> int:
    """Produce simulated records to ``topic`` until ``count``, ``duration`` or ``stop``,
    in record batches compressed with ``compression`` (``NPS_COMPRESSION``).

    Paced at ``config.rate`` x :func:`rate_factor` records per wall second (0 = as fast
    as possible); event time is ``start_time + elapsed x time_scale`` (the clock when
    ``start_time`` is None and ``time_scale`` is 1). ``progress(sent)`` is called at most
    4 times a second and once at the end. Returns the records the broker acknowledged
    (the records sent, unless deliveries failed; failures are logged).
    """
    stop = stop or threading.Event()
    realtime = config.start_time is None and config.time_scale == 1.0
    origin = config.start_time or datetime.now().astimezone()
    sim = FeedbackSimulator(config, start=origin)
    producer = KafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id="nps-simulator",
        acks="all",
        compression_type=compression.kafka_codec,
        linger_ms=5,
        request_timeout_ms=10_000,
        delivery_timeout_ms=30_000,
    )
    deliveries = _Deliveries()
    sent = 0
    t0 = last_progress = due = time.monotonic()
    try:
        while not stop.is_set() and (config.count is None or sent < config.count):
            now = time.monotonic()
            if config.duration_seconds is not None and now - t0 >= config.duration_seconds:
                break
            if config.rate > 0:
                if due - now > 0.001:
                    if config.duration_seconds is not None:
                        stop.wait(min(due, t0 + config.duration_seconds) - now)
                    else:
                        stop.wait(due - now)
                    continue
                if now - due > 1.0:  # fell behind (GC pause, slow broker): no catch-up burst
                    due = now
            elapsed = now - t0
            event_time = (datetime.now().astimezone() if realtime
                          else origin + timedelta(seconds=elapsed * config.time_scale))  # fmt: skip
            key, value = sim.next_record(event_time)
            future = producer.send(topic, key=key, value=value)
            future.add_callback(deliveries.ok).add_errback(deliveries.error)
            sent += 1
            due += pacing_interval(config, event_time)
            if progress is not None and now - last_progress >= 0.25:
                last_progress = now
                progress(sent)
    finally:
        try:
            producer.flush()
        finally:
            producer.close()
    if deliveries.failed:
        log.warning(
            "simulator: %d of %d records not delivered to %s: %s",
            deliveries.failed, sent, topic, deliveries.first_error,
        )  # fmt: skip
    if progress is not None:
        progress(sent)
    return deliveries.acked
