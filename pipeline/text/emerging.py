"""Emerging topics: key phrases over-represented in a segment's recent detractor comments.

For a segment in alert, :meth:`EmergingTopics.top` compares the phrases of its detractor
comments in the alert's short window (the *foreground*) with the *background*: every
detractor comment this worker has seen lately, over all its segments, minus that
foreground. Phrases are the unigrams and bigrams of the normalised comment (lower case,
accents stripped, ``[EMAIL]``-style placeholders and English/Italian stopwords removed;
a bigram is two adjacent content words, never across a stopword), each counted once per
comment. No lemmas: the phrases are shown to people as written ("addebito doppio").

The statistic is the log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi
& Quinn 2008, "Fightin' Words", eqs. 16 and 18-20): with foreground counts ``y_i``
(total ``n_i``), reference counts ``y_j`` (total ``n_j``) and prior ``a_w = a0 x share of
w in the background`` (``a0`` = ``prior_size``)::

    d_w = log((y_iw + a_w) / (n_i + a0 - y_iw - a_w)) - log((y_jw + a_w) / (n_j + a0 - y_jw - a_w))
    var(d_w) ~ 1 / (y_iw + a_w) + 1 / (y_jw + a_w)        z_w = d_w / sqrt(var(d_w))

The prior shrinks rare phrases towards the background (a phrase in two comments is not
an emerging topic), and ``z`` accounts for how much evidence there is. A phrase is an
emerging topic when it is in at least ``min_count`` foreground comments and ``z >=
min_z`` (1.96: one-sided 2.5%); the top ``top`` by ``z`` are reported, and a word is not
reported again on its own when a reported bigram contains it in at least half of the
comments that mention it.

Background counts decay with a half-life of ``half_life_seconds`` of event time (6 h by
default), so that the baseline is what detractors said in the last hours, and yesterday's
incident does not mask today's.

Memory (bounded): per segment a ring of the last ``ring`` detractor comments (event time
and a tuple of phrase strings shared between segments: the same comment reaches every
segment of its answer); a background of at most ``max_vocabulary`` phrases (when it
grows past that, the lighter half is forgotten); the ids of the last ``max_ids`` comments
(each answer's comment enters the background once although every segment carries it);
a cache of the phrases of the last ``max_cached`` texts. With the defaults (200, 20,000,
50,000, 10,000): a ring entry is a list slot, a float and a tuple of shared references,
about 100 bytes (tests/test_emerging.py measured 1.9 MB for 400 segments x 50 comments,
everything included), so at most ~20 KB per active segment (~20 MB for 1,000), plus a
few MB for the background, ids and cache.

The state is in memory only: after a restart or a rebalance the rings refill from new
comments (alerts still fire and carry their comments; their emerging topics may be
thinner during the first minutes).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from pipeline.text.normalize import SENTENCE_END, strip_accents, words


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


# fmt: off
STOPWORDS_EN = _wordset("""
a about above after again against all also am an and any are as at be because been before
being below between both but by can could did do does doing done down during each even
ever every few for from further get got had has have having he her here hers him his how
i if in into is it its itself just me more most my myself no nor not now of off on once
only or other our ours out over own same she should so some still such than that the
their theirs them then there these they this those through to too under until up us very
was we were what when where which while who whom why will with would you your yours
yourself again im ive dont didnt doesnt cant wont isnt wasnt one two three
""")
STOPWORDS_IT = _wordset("""
a ad al alla alle allo ai agli all anche ancora avere avete aveva avevo c che chi ci
come con contro cosa cui da dal dalla dalle dallo dai dagli dall dei degli del della
delle dello dell di dopo dove e ed era ero essere fa fare gia gli ha hanno ho i il in
io l la le lei li lo loro lui ma me mi mia mie miei mio ne nei negli nel nella nelle
nello nell noi non nostro nostra o per perche piu poi quale quando quanto quello quella
quelli quelle questo questa questi queste qui se sei si sia siamo siete sono su sua
sue sugli sui sul sulla sulle sullo suo suoi ti tra tu tua tue tuo tuoi tutto tutti
tutta tutte un una uno vi voi vostro vostra stato stata stati state po sempre
molto
""")
# fmt: on
STOPWORDS = STOPWORDS_EN | STOPWORDS_IT
_PLACEHOLDER = re.compile(r"\[[A-Z_]+\]")


def phrases(text: str) -> tuple[str, ...]:
    """The distinct unigrams and bigrams of ``text``, in order of first occurrence; no
    bigram reaches across the end of a sentence (:data:`SENTENCE_END`)."""
    found: dict[str, None] = {}
    for sentence in SENTENCE_END.split(_PLACEHOLDER.sub(" ", text)):
        previous: str | None = None
        for word in words(sentence):
            token = strip_accents(word)
            if len(token) < 2 or token in STOPWORDS or token.isdigit():
                previous = None
                continue
            found[token] = None
            if previous is not None:
                found[f"{previous} {token}"] = None
            previous = token
    return tuple(found)


class Topic(NamedTuple):
    """An emerging phrase: foreground comments containing it, and its log-odds z score."""

    phrase: str
    count: int
    z: float


def log_odds_z(
    foreground: Mapping[str, float],
    reference: Mapping[str, float],
    prior: Mapping[str, float],
    prior_size: float,
) -> dict[str, tuple[float, float]]:
    """``phrase -> (log-odds ratio d, z)`` of every foreground phrase (see the module doc).

    ``prior`` holds background weights (any scale: only shares matter); a phrase missing
    from it gets the prior of half a count, so that nothing divides by zero.
    """
    n_i = sum(foreground.values())
    n_j = sum(reference.values())
    prior_total = sum(prior.values())
    out: dict[str, tuple[float, float]] = {}
    for phrase, y_i in foreground.items():
        weight = prior.get(phrase, 0.0) or 0.5
        alpha = prior_size * weight / max(prior_total, weight)
        y_j = reference.get(phrase, 0.0)
        delta = math.log((y_i + alpha) / (n_i + prior_size - y_i - alpha)) - math.log(
            (y_j + alpha) / (n_j + prior_size - y_j - alpha)
        )
        sigma = math.sqrt(1.0 / (y_i + alpha) + 1.0 / (y_j + alpha))
        out[phrase] = (delta, delta / sigma)
    return out


def select(
    scores: Mapping[str, tuple[float, float]],
    counts: Mapping[str, float],
    *,
    min_count: int,
    min_z: float,
    top: int,
) -> list[Topic]:
    """The ``top`` phrases by z with enough comments and z; a word already said by a
    chosen bigram that covers at least half of its comments is left out."""
    ranked = sorted(
        (p for p, (_, z) in scores.items() if counts[p] >= min_count and z >= min_z),
        key=lambda p: (-scores[p][1], p),
    )
    bigrams = [p for p in ranked if " " in p][:top]
    chosen: list[Topic] = []
    for phrase in ranked:
        if " " not in phrase and any(
            phrase in b.split(" ") and counts[b] * 2 >= counts[phrase] for b in bigrams
        ):
            continue
        chosen.append(Topic(phrase, int(counts[phrase]), round(scores[phrase][1], 2)))
        if len(chosen) == top:
            break
    return chosen


class EmergingTopics:
    """Recent detractor comments per segment and a decaying background (see module doc)."""

    def __init__(
        self,
        *,
        ring: int = 200,
        half_life_seconds: float | None = 6 * 3600.0,
        max_vocabulary: int = 20_000,
        max_ids: int = 50_000,
        max_cached: int = 10_000,
        prior_size: float = 500.0,
        min_count: int = 3,
        min_z: float = 1.96,
        top: int = 5,
    ) -> None:
        self.ring = ring
        self.half_life = half_life_seconds
        self.max_vocabulary = max_vocabulary
        self.max_ids = max_ids
        self.max_cached = max_cached
        self.prior_size = prior_size
        self.min_count = min_count
        self.min_z = min_z
        self.top_n = top
        #: (partition, segment) -> [(event time, phrases)]
        #: per segment its last ``ring`` comments, oldest first: a list, not a deque (a
        #: deque takes ~600 bytes even for one item, and most segments have one or two)
        self.recent: dict[tuple[int, str], list[tuple[float, tuple[str, ...]]]] = {}
        #: phrase -> weight scaled to event time ``_origin`` (see :meth:`_weight`)
        self.background: dict[str, float] = {}
        self._origin: float | None = None
        self._ids: dict[str, None] = {}
        self._cache: dict[str, tuple[str, ...]] = {}

    def _phrases(self, text: str) -> tuple[str, ...]:
        found = self._cache.get(text)
        if found is None:
            if len(self._cache) >= self.max_cached:
                self._cache.clear()
            found = self._cache[text] = phrases(text)
        return found

    def _weight(self, ts: float) -> float:
        """Weight of a comment at event time ``ts``, relative to ``_origin``."""
        if self.half_life is None:
            return 1.0
        if self._origin is None:
            self._origin = ts
        exponent = (ts - self._origin) / self.half_life
        if exponent > 30:  # rescale everything to a new origin before floats overflow
            factor = 2.0**-exponent
            background = self.background  # in place: callers hold a reference
            for phrase in background:
                background[phrase] *= factor
            self._origin = ts
            exponent = 0.0
        return 2.0**exponent

    def note(self, partition: int, segment: str, items: Iterable[list[object]]) -> None:
        """Remember ``[event time, event id, score, redacted comment]`` items of a segment."""
        recent = self.recent.get((partition, segment))
        if recent is None:
            recent = self.recent[(partition, segment)] = []
        background = self.background
        for ts, event_id, _score, text in items:
            found = self._phrases(str(text))
            recent.append((float(ts), found))  # type: ignore[arg-type]
            if len(recent) > self.ring:
                del recent[0]
            key = str(event_id)
            if key in self._ids:
                continue
            self._ids[key] = None
            if len(self._ids) > self.max_ids:
                del self._ids[next(iter(self._ids))]
            weight = self._weight(float(ts))  # type: ignore[arg-type]
            for phrase in found:
                background[phrase] = background.get(phrase, 0.0) + weight
        if len(background) > self.max_vocabulary:
            keep = sorted(background.items(), key=lambda item: -item[1])
            self.background = dict(keep[: self.max_vocabulary // 2])

    def keep(self, partitions: set[int]) -> None:
        """Forget the rings of partitions this worker no longer owns."""
        self.recent = {k: v for k, v in self.recent.items() if k[0] in partitions}

    def foreground(
        self, partition: int, segment: str, start: float | None, end: float | None
    ) -> Counter[str]:
        """Phrase -> comments of the segment with event time in ``[start, end)``."""
        counts: Counter[str] = Counter()
        for ts, found in self.recent.get((partition, segment), ()):
            if (start is None or ts >= start) and (end is None or ts < end):
                counts.update(found)
        return counts

    def top(
        self, partition: int, segment: str, start: float | None = None, end: float | None = None
    ) -> list[Topic]:
        """The segment's emerging topics in ``[start, end)`` of event time."""
        fg = self.foreground(partition, segment, start, end)
        if not fg:
            return []
        scale = 1.0
        if self.half_life is not None and self._origin is not None and end is not None:
            scale = 2.0 ** ((self._origin - end) / self.half_life)  # weights as of ``end``
        prior = {p: w * scale for p, w in self.background.items()}
        reference = {p: max(w - fg.get(p, 0), 0.0) for p, w in prior.items()}
        for phrase, count in fg.items():  # the foreground is part of the background
            prior[phrase] = max(prior.get(phrase, 0.0), float(count))
        scores = log_odds_z(fg, reference, prior, self.prior_size)
        return select(scores, fg, min_count=self.min_count, min_z=self.min_z, top=self.top_n)
