"""Follow-up rules: which answers get a task, with which priority and due time.

A YAML file (``NPS_FOLLOWUP_RULES_FILE``) validated by pydantic, like the alert rules;
errors name the file, the line and the field. The built-in defaults are written out,
with a comment per field, in ``deploy/pipeline/followup-rules.yaml`` (a test keeps the
two equal). Rules are tried in order and the **first match wins**; an answer that no
rule matches gets no task.

Revenue at risk of a task is ``account_value x factor`` of its category:
``detractor`` and ``unsatisfied`` (CSAT/CES 1-2 / 1-3) count as *short-term* risk,
``passive`` as *long-term* risk (see the README, "Revenue at risk", for the method and
which numbers are assumptions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline import yamlconfig
from pipeline.settings import ConfigError
from pipeline.windows import parse_window_label
from schemas.feedback import SEGMENT_FIELDS, SurveyType
from schemas.followup import Priority, RevenueHorizon
from schemas.scored import Category

_NAME = r"^[a-z0-9][a-z0-9_-]*$"


def _duration(value: object) -> object:
    if isinstance(value, str):
        try:
            seconds = parse_window_label(value)
        except ValueError:
            seconds = None
        if seconds is None:
            raise ValueError(f"{value!r} is not a duration such as '4h', '48h' or '7d'")
        return seconds
    return value


class FollowupRule(BaseModel):
    """One rule: conditions (all must hold; an absent condition holds) -> priority, due."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME, description="Unique rule name, carried by the task.")
    survey_types: list[SurveyType] | None = Field(
        default=None, description="nps, csat, ces; null = any."
    )
    categories: list[Category] | None = Field(
        default=None, description="detractor, passive, unsatisfied, ...; null = any."
    )
    min_score: int | None = Field(default=None, description="Score at least this.")
    max_score: int | None = Field(default=None, description="Score at most this.")
    min_account_value: float | None = Field(
        default=None, ge=0, description="Needs an account value of at least this."
    )
    sentiments: list[Literal["positive", "neutral", "negative"]] | None = Field(
        default=None, description="Needs a comment with one of these sentiment labels."
    )
    themes: list[str] | None = Field(
        default=None, description="Needs a comment with at least one of these themes."
    )
    priority: Priority = Priority.NORMAL
    due: int = Field(gt=0, description="Contact the customer within this ('4h', '48h', '7d').")

    _durations = field_validator("due", mode="before")(_duration)

    def matches(
        self,
        survey_type: str,
        category: str,
        score: int,
        account_value: float | None,
        sentiment: str | None,
        themes: list[str],
    ) -> bool:
        """Whether an answer with these properties is selected by this rule."""
        return self.matches_answer(survey_type, category, score, account_value) and (
            self.matches_text(sentiment, themes)
        )

    def matches_answer(
        self, survey_type: str, category: str, score: int, account_value: float | None
    ) -> bool:
        """The conditions on the answer itself (cheap: checked before any text analysis)."""
        if self.survey_types is not None and survey_type not in self.survey_types:
            return False
        if self.categories is not None and category not in self.categories:
            return False
        if self.min_score is not None and score < self.min_score:
            return False
        if self.max_score is not None and score > self.max_score:
            return False
        return self.min_account_value is None or (
            account_value is not None and account_value >= self.min_account_value
        )

    def matches_text(self, sentiment: str | None, themes: list[str]) -> bool:
        """The conditions on the comment's sentiment and themes."""
        if self.sentiments is not None and sentiment not in self.sentiments:
            return False
        return self.themes is None or any(t in self.themes for t in themes)

    @property
    def needs_text(self) -> bool:
        return self.sentiments is not None or self.themes is not None


class RevenueFactors(BaseModel):
    """Share of the account value at risk per category (assumptions: calibrate them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    detractor: float = Field(default=0.30, ge=0, le=1, description="Short-term.")
    unsatisfied: float = Field(default=0.15, ge=0, le=1, description="Short-term (CSAT/CES).")
    passive: float = Field(default=0.10, ge=0, le=1, description="Long-term.")

    def of(self, category: str) -> tuple[float, RevenueHorizon] | None:
        """(factor, horizon) of a category; None for categories without risk."""
        if category == Category.DETRACTOR:
            return self.detractor, RevenueHorizon.SHORT_TERM
        if category == Category.UNSATISFIED:
            return self.unsatisfied, RevenueHorizon.SHORT_TERM
        if category == Category.PASSIVE:
            return self.passive, RevenueHorizon.LONG_TERM
        return None


class OverdueAlerts(BaseModel):
    """An alert on the alerts topic when a task goes overdue, resolved on contact."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    severity: Literal["page", "ticket", "info"] = "ticket"


def default_rules() -> list[dict[str, object]]:
    return [
        {
            "name": "urgent-high-value",
            "survey_types": ["nps"],
            "max_score": 3,
            "min_account_value": 10000,
            "sentiments": ["negative"],
            "priority": "urgent",
            "due": "4h",
        },
        {"name": "detractor", "categories": ["detractor"], "priority": "high", "due": "48h"},
        {
            "name": "high-value-passive",
            "categories": ["passive"],
            "min_account_value": 10000,
            "priority": "low",
            "due": "7d",
        },
    ]


class FollowupRules(BaseModel):
    """The whole follow-up rules file."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    rules: list[FollowupRule] = Field(default_factory=default_rules)  # type: ignore[arg-type]
    owner_fields: list[str] = Field(
        default=["agent", "department"],
        description="The task's owning segment for alerts: the first of these fields the "
        "answer carries (none: overall).",
    )
    revenue_factors: RevenueFactors = Field(default_factory=RevenueFactors)
    overdue_alerts: OverdueAlerts = Field(default_factory=OverdueAlerts)

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[FollowupRule]) -> list[FollowupRule]:
        names = [r.name for r in rules]
        if duplicates := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"rule names must be unique; repeated: {duplicates}")
        return rules

    @field_validator("owner_fields")
    @classmethod
    def _known_fields(cls, fields: list[str]) -> list[str]:
        unknown = [f for f in fields if f not in SEGMENT_FIELDS]
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}; choose from {list(SEGMENT_FIELDS)}")
        return fields

    def first_match(
        self,
        survey_type: str,
        category: str,
        score: int,
        account_value: float | None,
        sentiment: str | None,
        themes: list[str],
    ) -> FollowupRule | None:
        """The first rule that selects the answer, or None (no task)."""
        for rule in self.rules:
            if rule.matches(survey_type, category, score, account_value, sentiment, themes):
                return rule
        return None

    @property
    def needs_text(self) -> bool:
        """Whether some rule looks at the comment's sentiment or themes."""
        return any(r.sentiments is not None or r.themes is not None for r in self.rules)


def load_followup_rules(path: Path | None) -> FollowupRules:
    """The rules of ``path`` (YAML), or the defaults; :class:`ConfigError` if invalid."""
    if path is None:
        return FollowupRules()
    if not path.is_file():
        raise ConfigError(f"follow-up rules file {path} does not exist (NPS_FOLLOWUP_RULES_FILE)")
    root, data = yamlconfig.parse(path, path.read_text())
    try:
        return FollowupRules.model_validate(data or {})
    except ValidationError as exc:
        lines = [
            f"{path}: invalid follow-up rules (NPS_FOLLOWUP_RULES_FILE):",
            *yamlconfig.error_lines(exc, root),
        ]
        raise ConfigError("\n".join(lines)) from None
