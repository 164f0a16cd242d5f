"""Alert rules: a YAML file validated by pydantic, with errors that name the line.

The defaults below are the rules shipped in ``deploy/pipeline/alert-rules.yaml`` (a
test keeps the two equal). Durations are window labels (``"5m"``, ``"1h"``, ``"24h"``)
and every window a rule uses must be one of ``NPS_WINDOWS_SECONDS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline import yamlconfig
from pipeline.settings import ConfigError
from pipeline.windows import parse_window_label
from schemas.alert import RuleKind

Severity = Literal["page", "ticket", "info"]
_NAME = r"^[a-z0-9][a-z0-9_-]*$"


def _duration(value: object) -> object:
    if isinstance(value, str):
        seconds = parse_window_label(value)
        if seconds is None:
            raise ValueError(f"{value!r} is not a duration such as '5m', '1h' or '24h'")
        return seconds
    return value


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME, description="Unique rule name (alertname).")
    severity: Severity = "page"
    dimensions: list[str] | None = Field(
        default=None,
        description="Segments tested: 'overall', a dimension ('agent') or a combination "
        "('department,channel'); null = every segment.",
    )
    cooldown_seconds: int = Field(
        default=3600, ge=0, description="After a resolve, the same segment cannot fire again."
    )

    _check_durations = field_validator(
        "cooldown_seconds", "window", "baseline", "lookback", mode="before", check_fields=False
    )(_duration)

    def windows_used(self) -> tuple[int, ...]:
        return ()

    def applies_to(self, dimension: str) -> bool:
        return self.dimensions is None or dimension in self.dimensions


class _TwoWindowRule(_Rule):
    window: int = Field(default=3600, gt=0, description="The short window judged ('1h').")
    baseline: int = Field(
        default=86400,
        gt=0,
        description="Longer window; the baseline is it minus the short window (no overlap).",
    )
    min_responses: int = Field(default=30, ge=1, description="Least answers in the short window.")
    min_baseline_responses: int = Field(default=100, ge=1)

    def windows_used(self) -> tuple[int, ...]:
        return (self.window, self.baseline)

    @model_validator(mode="after")
    def _baseline_longer(self) -> _TwoWindowRule:
        if self.baseline <= self.window:
            raise ValueError(
                f"baseline ({self.baseline} s) must be longer than window ({self.window} s)"
            )
        return self


class _EffectRule(_TwoWindowRule):
    min_effect: float = Field(gt=0, description="Least change to fire, in the metric's unit.")
    resolve_effect: float | None = Field(
        default=None,
        ge=0,
        description="Resolve once the change is below this (default: half of min_effect).",
    )

    @property
    def resolve_below(self) -> float:
        return self.min_effect / 2 if self.resolve_effect is None else self.resolve_effect

    @model_validator(mode="after")
    def _hysteresis(self) -> _EffectRule:
        if self.resolve_effect is not None and self.resolve_effect >= self.min_effect:
            raise ValueError("resolve_effect must be smaller than min_effect (hysteresis)")
        return self


class DetractorSpike(_EffectRule):
    kind: Literal[RuleKind.DETRACTOR_SPIKE]
    min_effect: float = Field(default=0.10, gt=0, le=1, description="Share, e.g. 0.10 = +10 pts.")


class NpsDrop(_EffectRule):
    kind: Literal[RuleKind.NPS_DROP]
    min_effect: float = Field(default=15.0, gt=0, le=200, description="NPS points.")


class CsatDrop(_EffectRule):
    kind: Literal[RuleKind.CSAT_DROP]
    min_effect: float = Field(default=0.10, gt=0, le=1, description="Satisfied share.")


class CesEffortRise(_EffectRule):
    kind: Literal[RuleKind.CES_EFFORT_RISE]
    min_effect: float = Field(
        default=0.5, gt=0, le=6, description="Drop of the 1-7 'easy' mean (= more effort)."
    )


class NpsFloor(_Rule):
    kind: Literal[RuleKind.NPS_FLOOR]
    target: float = Field(ge=-100, le=100, description="NPS target (an SLO) in points.")
    window: int = Field(default=86400, gt=0)
    min_responses: int = Field(default=30, ge=1)

    def windows_used(self) -> tuple[int, ...]:
        return (self.window,)


class Silence(_Rule):
    kind: Literal[RuleKind.SILENCE]
    window: int = Field(default=3600, gt=0, description="No answer at all for this long...")
    baseline: int = Field(default=86400, gt=0, description="...in a segment active in this.")
    max_p_value: float = Field(
        default=0.001,
        gt=0,
        lt=1,
        description="Fire when P(no answer | the quietest block of the baseline) is below this.",
    )

    def windows_used(self) -> tuple[int, ...]:
        return (self.window, self.baseline)


class DetractorCusum(_Rule):
    kind: Literal[RuleKind.DETRACTOR_CUSUM]
    baseline: int = Field(
        default=86400,
        gt=0,
        description="The in-control share comes from this window minus the lookback.",
    )
    lookback: int = Field(
        default=3600,
        gt=0,
        description="The sum is recomputed each round over the buckets of this span, in "
        "event-time order (late answers take their place; nothing to persist).",
    )
    shift: float = Field(
        default=0.15, gt=0, lt=1, description="Rise of the detractor share to detect fast."
    )
    false_alarms_per_day: float = Field(
        default=0.5,
        gt=0,
        description="Budget of this worker: the decision limit h is set so that all its "
        "segments together give about this many false alarms per day.",
    )
    min_baseline_responses: int = Field(default=200, ge=1)
    resolve_fraction: float = Field(
        default=0.25, gt=0, lt=1, description="Resolve once the sum S falls below this x h."
    )

    def windows_used(self) -> tuple[int, ...]:
        return (self.baseline,)

    @model_validator(mode="after")
    def _lookback_inside_baseline(self) -> DetractorCusum:
        if self.lookback >= self.baseline:
            raise ValueError(
                f"lookback ({self.lookback} s) must be shorter than baseline ({self.baseline} s)"
            )
        return self


AnyRule = Annotated[
    DetractorSpike | NpsDrop | CsatDrop | CesEffortRise | NpsFloor | Silence | DetractorCusum,
    Field(discriminator="kind"),
]


def default_rules() -> list[Any]:
    return [
        {"name": "detractor-spike", "kind": "detractor_spike"},
        {"name": "nps-drop", "kind": "nps_drop"},
        {"name": "csat-drop", "kind": "csat_drop"},
        {"name": "ces-effort-rise", "kind": "ces_effort_rise"},
        {"name": "detractor-cusum", "kind": "detractor_cusum"},
        {
            "name": "silence",
            "kind": "silence",
            "severity": "ticket",
            "dimensions": ["overall", "department", "channel", "region", "product"],
        },
    ]


class AlertRules(BaseModel):
    """The whole rules file."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    evaluate_every_seconds: int = Field(
        default=60, gt=0, description="Event-time cadence of evaluation rounds."
    )
    false_discovery_rate: float = Field(
        default=0.001,
        gt=0,
        lt=1,
        description="Benjamini-Hochberg q across all window tests of one evaluation round.",
    )
    rules: list[AnyRule] = Field(default_factory=default_rules)  # type: ignore[arg-type]

    _every = field_validator("evaluate_every_seconds", mode="before")(_duration)

    @model_validator(mode="after")
    def _unique_names(self) -> AlertRules:
        names = [r.name for r in self.rules]
        if duplicates := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"rule names must be unique; repeated: {duplicates}")
        return self

    def check_windows(self, windows_seconds: list[int], rules_file: str) -> None:
        """Fail fast when a rule uses a window the pipeline does not keep."""
        for rule in self.rules:
            missing = [w for w in rule.windows_used() if w not in windows_seconds]
            if missing:
                raise ConfigError(
                    f"{rules_file}: rule {rule.name!r} uses window(s) {missing} s that are not "
                    f"in NPS_WINDOWS_SECONDS {windows_seconds}; add them there or change the rule"
                )


def load_rules(path: Path | None) -> AlertRules:
    """The rules of ``path`` (YAML), or the defaults; :class:`ConfigError` if invalid."""
    if path is None:
        return AlertRules()
    if not path.is_file():
        raise ConfigError(f"alert rules file {path} does not exist (NPS_ALERT_RULES_FILE)")
    root, data = yamlconfig.parse(path, path.read_text())
    _check_unique_names(path, root, data)
    try:
        return AlertRules.model_validate(data or {})
    except ValidationError as exc:
        lines = [f"{path}: invalid alert rules:", *yamlconfig.error_lines(exc, root)]
        raise ConfigError("\n".join(lines)) from None


def _check_unique_names(path: Path, root: yaml.Node | None, data: object) -> None:
    """Name the line of a repeated rule name (the model's own check has no location)."""
    rules = data.get("rules") if isinstance(data, dict) else None
    if not isinstance(rules, list):
        return
    first: dict[str, int] = {}
    for index, rule in enumerate(rules):
        name = rule.get("name") if isinstance(rule, dict) else None
        if not isinstance(name, str):
            continue
        if name in first:
            line = yamlconfig.line_of(root, ("rules", index, "name"))
            raise ConfigError(
                f"{path}: invalid alert rules:\n  - line {line}: rules.{index}.name: rule name "
                f"{name!r} is already used by rules.{first[name]}; names must be unique"
            )
        first[name] = index
