"""Scored event -> follow-up task (or none): pure, called once per scored event.

The task id is ``fu-<event_id>``: the same answer always gives the same task, so a
re-scored answer (at-least-once delivery after a crash) repeats the same record, which
the tracker ignores. A revised answer (same event id, other content) gives its task
again with the new content, which replaces the earlier one (upsert by task id), or,
when no rule selects the revision, a tombstone (the key, no value) that withdraws the
task. The task is keyed by its id on ``feedback.followups``, as
are its status updates on ``feedback.followup-events``: both meet on one partition.

The comment's sentiment and themes come from :class:`pipeline.text.CommentAnalyzer`,
run only for answers that a rule selects (or that a rule needs to look at), so the cost
(~65 µs per comment) is paid per task, not per event.
"""

from __future__ import annotations

from datetime import timedelta

from pipeline.followups import metrics as fmetrics
from pipeline.followups.rules import FollowupRules, load_followup_rules
from pipeline.settings import Settings
from pipeline.text.analyze import CommentAnalysis, CommentAnalyzer
from schemas.followup import FollowupTask, Sentiment
from schemas.scored import ScoredEvent

TASK_PREFIX = "fu-"


def task_id(event_id: str) -> str:
    """The deterministic task id of an answer."""
    return f"{TASK_PREFIX}{event_id}"


class TaskBuilder:
    """Applies the follow-up rules to scored events."""

    def __init__(self, rules: FollowupRules, analyzer: CommentAnalyzer | None = None) -> None:
        self.rules = rules
        self.analyzer = analyzer

    @classmethod
    def from_settings(cls, settings: Settings) -> TaskBuilder | None:
        """The builder configured by ``settings``; None when follow-ups are disabled."""
        if not settings.followups_enabled:
            return None
        rules = load_followup_rules(settings.followup_rules_file)
        analyzer = None
        if settings.followup_analyze_comments:  # the scoring stage's analyzer, built once
            from pipeline.text.stage_analytics import shared_analyzer
            from pipeline.text.themes import DEFAULT_TAXONOMY

            analyzer = shared_analyzer(settings.text_taxonomy_file or DEFAULT_TAXONOMY)
        return cls(rules, analyzer)

    def collect(
        self, scored: ScoredEvent, out: list[tuple[bytes, bytes | None]], count: bool = True
    ) -> None:
        """Append the task record (key, JSON) of ``scored`` to ``out`` if a rule selects it.

        ``count=False`` for a revision of an answer: its task (same id) is published again
        but is not a new task for the created-tasks metric, and if no rule selects the
        revision, a tombstone (key, None) withdraws the task the answer may have had.
        """
        task = self.build(scored)
        if task is None:
            if not count:
                out.append((task_id(scored.event_id).encode(), None))
        else:
            out.append((task.task_id.encode(), task.model_dump_json().encode()))
            if count:
                fmetrics.TASKS_CREATED.labels(task.priority.value).inc()

    def build(self, scored: ScoredEvent) -> FollowupTask | None:
        """The task of ``scored`` or None when no rule selects it."""
        event = scored.feedback
        category = scored.category.value
        analysis: CommentAnalysis | None = None

        def analyse() -> CommentAnalysis | None:
            nonlocal analysis
            if analysis is None and self.analyzer is not None and event.comment:
                hint = event.attributes.get("language")
                analysis = self.analyzer.analyze(
                    event.comment, category, hint if isinstance(hint, str) else None
                )
            return analysis

        rule = None
        for candidate in self.rules.rules:
            if not candidate.matches_answer(
                event.survey_type.value, category, event.score, event.account_value
            ):
                continue
            if candidate.needs_text:
                found = analyse()
                sentiment = found.sentiment.label if found is not None else None
                if not candidate.matches_text(sentiment, found.themes if found else []):
                    continue
            rule = candidate
            break
        if rule is None:
            return None
        found = analyse()
        risk = self.rules.revenue_factors.of(category)
        revenue = horizon = None
        if risk is not None and event.account_value is not None:
            revenue, horizon = event.account_value * risk[0], risk[1]
        return FollowupTask(
            task_id=task_id(event.event_id),
            event_id=event.event_id,
            created_at=event.event_time,
            due_at=event.event_time + timedelta(seconds=rule.due),
            priority=rule.priority,
            rule=rule.name,
            survey_type=event.survey_type,
            score=event.score,
            category=scored.category,
            customer_id=event.customer_id,
            comment=event.comment,
            language=found.language if found else None,
            sentiment=(
                Sentiment(label=found.sentiment.label, score=found.sentiment.score)
                if found
                else None
            ),
            themes=list(found.themes) if found else [],
            owner=event.segments(),
            account_value=event.account_value,
            revenue_at_risk=revenue,
            revenue_horizon=horizon,
            source=event.source,
        )
