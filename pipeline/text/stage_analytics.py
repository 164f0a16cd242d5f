"""Comment analytics in the scoring stage: one :class:`CommentInsights` per commented answer.

:class:`TextAnalytics` wraps the shared :class:`~pipeline.text.analyze.CommentAnalyzer`
for the scoring stage: per event it gives the insights as JSON (spliced into the scored
record, see :func:`pipeline.scoring.scored_json`), the themes (each also a segment
``theme=<name>``, see :func:`theme_keys`) and counts them in
``nps_pipeline_comment_themes_total{theme,category}``. ``None`` from
:meth:`TextAnalytics.from_settings` when ``NPS_TEXT_ANALYTICS`` is off.

The analyzer is built once per process and configuration (:func:`shared_analyzer`,
~0.4 s: lingua's models, lexicons, the taxonomy), not per stage.

**A batch's comments are analysed back to back** (:meth:`TextAnalytics.prepare`, called
once per batch before its records are handled): interleaved with validation, dedupe and
fan-out, the analyzer's Python objects (lexicons, word caches) fall out of the CPU caches
between two comments and each analysis took about twice as long (~42 µs instead of ~21
µs per comment, measured in the stage). The pre-pass reads the comment, survey, score
and language hint of each record that has a comment with ``orjson`` (~2 µs);
:meth:`TextAnalytics.analyze` then uses the prepared insight when the validated event has
the same comment and category, and analyses inline otherwise (the validated comment is
stripped by pydantic, so an exotic whitespace difference just costs one more analysis).
"""

from __future__ import annotations

import atexit
from functools import lru_cache
from pathlib import Path

from prometheus_client import Counter

from pipeline import metrics
from pipeline.settings import Settings
from pipeline.text import offload as offload_module
from pipeline.text.analyze import CommentAnalyzer
from pipeline.text.insight import NO_INSIGHT, Insight, insight_of, read_comment
from pipeline.text.offload import Offload
from pipeline.text.themes import DEFAULT_TAXONOMY
from pipeline.validate import RawRecord
from schemas.feedback import FeedbackEvent

#: builds a NamedTuple without its __new__ (a Python function): tuple.__new__(cls, values)
_new_tuple = tuple.__new__

#: The derived segment dimension of comment themes: ``theme=billing``.
THEME_DIMENSION = "theme"


@lru_cache(maxsize=4)
def shared_analyzer(taxonomy_path: Path = DEFAULT_TAXONOMY) -> CommentAnalyzer:
    """One analyzer per process and taxonomy (building one loads models: ~0.4 s)."""
    return CommentAnalyzer(taxonomy_path=taxonomy_path)


def theme_keys(themes: list[str]) -> list[str]:
    """The segment keys of ``themes`` (theme names are identifiers: nothing to escape)."""
    return [f"{THEME_DIMENSION}={theme}" for theme in themes]


class TextAnalytics:
    """Language, sentiment, themes and disagreement of each comment, for the scored event."""

    def __init__(
        self,
        analyzer: CommentAnalyzer | None = None,
        *,
        sentiment: bool = True,
        max_event_bytes: int = 256 * 1024,
        taxonomy: Path = DEFAULT_TAXONOMY,
        offload: bool = False,
        answer_timeout: float | None = None,
    ) -> None:
        """``answer_timeout``: seconds the stage waits for the child's next answer before
        it gives the child up; default :data:`~pipeline.text.offload.RESULT_TIMEOUT`."""
        self._analyzer = analyzer
        self.taxonomy = taxonomy
        #: larger records are dead-lettered (oversize) unread: the pre-pass skips them too
        self.max_event_bytes = max_event_bytes
        #: False: language and themes only (NPS_TEXT_SENTIMENT=false)
        self.sentiment = sentiment
        self._theme_counters: dict[tuple[str, str], Counter] = {}
        self._theme_counts: dict[tuple[str, str], int] = {}  # of the batch, not yet counted
        #: id(record) -> (comment, category, insight) of the batch being handled
        self._prepared: dict[int, tuple[str, str, Insight]] = {}
        #: with NPS_TEXT_PROCESS: the child analysing batches, the batch's records in order
        self.offload = shared_offload(taxonomy, max_event_bytes) if offload else None
        if self.offload is not None and answer_timeout is not None:  # (one per process)
            self.offload.process.answer_timeout = answer_timeout
        self._sent: list[int] = []
        self._slots: set[int] = set()
        self._batch = 0  # the child's batch number of this analytics' batch

    def start(self) -> None:
        """Start the analysis child now (it loads its models while the worker starts)
        rather than on the first batch."""
        if self.offload is not None:
            self.offload.available()

    @property
    def analyzer(self) -> CommentAnalyzer:
        """The analyzer of this process (built on first use when a child does the work)."""
        if self._analyzer is None:
            self._analyzer = shared_analyzer(self.taxonomy)
        return self._analyzer

    @classmethod
    def from_settings(cls, settings: Settings) -> TextAnalytics | None:
        """The analytics configured by ``settings``; None when NPS_TEXT_ANALYTICS is off."""
        if not settings.text_analytics:
            return None
        taxonomy = settings.text_taxonomy_file or DEFAULT_TAXONOMY
        return cls(
            None if settings.text_process else shared_analyzer(taxonomy),
            sentiment=settings.text_sentiment,
            max_event_bytes=settings.max_event_bytes,
            taxonomy=taxonomy,
            offload=settings.text_process,
            answer_timeout=answer_timeout(settings),
        )

    def prepare(self, records: list[RawRecord]) -> None:
        """Analyse the comments of a batch before the stage handles its records.

        With a child process (NPS_TEXT_PROCESS): hand them over and return at once; the
        stage collects each insight when it reaches the record (see :mod:`.offload`).
        Otherwise back to back here, and only with sentiment: language and themes alone
        are cheap enough that reading each record once more costs more than it saves
        (measured: 40.5 vs 38.2 µs per event).
        """
        prepared = self._prepared
        self.finish()
        prepared.clear()
        self._sent.clear()
        self._slots.clear()
        offload = self.offload
        if offload is not None and offload.available():
            values = []
            for record in records:
                value = record.value
                if (  # oversize records are dead-lettered unread
                    isinstance(value, bytes)
                    and len(value) <= self.max_event_bytes
                    and b'"comment"' in value
                ):
                    values.append(value)
                    self._sent.append(id(record))
            self._slots.update(self._sent)
            if values and offload.submit(self.sentiment, values):
                self._batch = offload.batch
                return
            self._sent.clear()
            self._slots.clear()
        if not self.sentiment:
            return
        for record in records:
            read = read_comment(record.value, self.max_event_bytes)
            if read is None:
                continue
            comment, category, hint = read
            try:
                insight = insight_of(self.analyzer, True, comment, category, hint)
            except Exception:  # noqa: S112 - the stage analyses it again and dead-letters it
                continue
            prepared[id(record)] = (comment, category, insight)

    def finish(self) -> None:
        """End of the batch: count its themes, collect what the child still sends of it
        (the child then waits for the next batch; stages sharing it take turns)."""
        self._publish_counts()
        while self.offload is not None and self.offload.waiting:
            self._collect()

    def _collect(self) -> None:
        offload = self.offload
        assert offload is not None
        mine = offload.batch == self._batch
        results = offload.next_results()
        if not mine:
            return  # the rest of another stage's batch
        sent = self._sent
        prepared = self._prepared
        for slot, comment, category, json, themes in results:
            if comment is not None and category is not None and json is not None:
                # tuple.__new__: a NamedTuple's own __new__ is a Python function
                insight = _new_tuple(Insight, (json, themes or []))
                prepared[sent[slot]] = (comment, category, insight)

    def analyze(
        self, feedback: FeedbackEvent, category: str, record: RawRecord | None = None
    ) -> Insight:
        """The insight of ``feedback`` (unredacted: nothing of the text itself is output);
        ``record``: its raw record, whose insight :meth:`prepare` may have computed."""
        comment = feedback.comment
        if not comment or not comment.strip():
            return NO_INSIGHT
        if record is not None:
            key = id(record)
            found = self._prepared.get(key)
            if found is None and key in self._slots:
                offload = self.offload
                while (
                    found is None
                    and offload is not None
                    and offload.waiting
                    and offload.batch == self._batch
                ):
                    self._collect()
                    found = self._prepared.get(key)
            if found is not None and found[0] == comment and found[1] == category:
                return self._count(found[2], category)
        hint = feedback.attributes.get("language")
        insight = insight_of(self.analyzer, self.sentiment, comment, category, hint)
        return self._count(insight, category)

    def _count(self, insight: Insight, category: str) -> Insight:
        """``insight``, its themes counted (once per event the stage outputs; the metric
        is updated by :meth:`finish`, once per theme and category of the batch)."""
        counts = self._theme_counts
        for theme in insight.themes:
            key = (theme, category)
            counts[key] = counts.get(key, 0) + 1
        return insight

    def _publish_counts(self) -> None:
        for key, count in self._theme_counts.items():
            counter = self._theme_counters.get(key)
            if counter is None:
                counter = self._theme_counters[key] = metrics.COMMENT_THEMES.labels(*key)
            counter.inc(count)
        self._theme_counts.clear()


def answer_timeout(settings: Settings) -> float:
    """How long the stage waits for the analysis child: at most
    :data:`~pipeline.text.offload.RESULT_TIMEOUT`, and well inside the consumer session
    timeout (0.6 of it): the stage waits holding the worker's event loop, where the
    scoring consumer's heartbeats run, and a child that hangs must cost the analysis of a
    batch in the stage's own thread, not a rebalance (the benchmark's workers run with
    a 6 s session timeout: 3.6 s)."""
    return min(offload_module.RESULT_TIMEOUT, 0.6 * settings.broker_session_timeout_seconds)


@lru_cache(maxsize=4)
def shared_offload(taxonomy: Path, max_event_bytes: int) -> Offload:
    """One analysis child per process and configuration, started on first use and
    stopped at exit (stages share it: a stage handles one batch at a time, start to end)."""
    offload = Offload(taxonomy, max_event_bytes)
    atexit.register(offload.close)
    return offload
