"""The alert rules file: defaults, durations, and errors that name the line and field."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from pipeline.alert_rules import (
    AlertRules,
    CesEffortRise,
    CsatDrop,
    DetractorCusum,
    DetractorSpike,
    NpsDrop,
    NpsFloor,
    Silence,
    load_rules,
)
from pipeline.settings import ConfigError

SHIPPED = Path(__file__).resolve().parent.parent / "deploy" / "pipeline" / "alert-rules.yaml"
DEFAULT_WINDOWS = [300, 3600, 86400]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    assert str(path) in caught.value.message
    return caught.value.message


# --------------------------------------------------------------------------- defaults


def test_defaults_are_valid_and_as_documented() -> None:
    rules = AlertRules()
    assert rules.evaluate_every_seconds == 60
    assert rules.false_discovery_rate == 0.001
    by_name = {r.name: r for r in rules.rules}
    assert list(by_name) == [
        "detractor-spike",
        "nps-drop",
        "csat-drop",
        "ces-effort-rise",
        "detractor-cusum",
        "silence",
    ]
    spike = by_name["detractor-spike"]
    assert isinstance(spike, DetractorSpike)
    assert (spike.window, spike.baseline, spike.min_responses, spike.min_baseline_responses) == (
        3600,
        86400,
        30,
        100,
    )
    assert (spike.min_effect, spike.resolve_below, spike.cooldown_seconds) == (0.10, 0.05, 3600)
    assert isinstance(by_name["nps-drop"], NpsDrop)
    assert by_name["nps-drop"].resolve_below == 7.5
    assert isinstance(by_name["csat-drop"], CsatDrop)
    assert isinstance(by_name["ces-effort-rise"], CesEffortRise)
    assert by_name["ces-effort-rise"].resolve_below == 0.25
    cusum = by_name["detractor-cusum"]
    assert isinstance(cusum, DetractorCusum)
    assert (cusum.shift, cusum.false_alarms_per_day, cusum.resolve_fraction) == (0.15, 0.5, 0.25)
    silence = by_name["silence"]
    assert isinstance(silence, Silence)
    assert silence.severity == "ticket"
    assert silence.applies_to("channel") and not silence.applies_to("agent")
    assert spike.applies_to("agent") and spike.applies_to("department,channel")
    AlertRules().check_windows(DEFAULT_WINDOWS, "(defaults)")


def test_no_file_means_the_defaults() -> None:
    assert load_rules(None) == AlertRules()


def test_shipped_file_equals_the_built_in_defaults() -> None:
    shipped = load_rules(SHIPPED)
    assert shipped == AlertRules()
    shipped.check_windows(DEFAULT_WINDOWS, str(SHIPPED))


def test_shipped_nps_floor_example_is_valid_when_uncommented(tmp_path: Path) -> None:
    """The commented-out example must stay a working rule (users will uncomment it)."""
    lines = SHIPPED.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "# - name: nps-floor")
    example = [re.sub(r"^(\s*)# ?", r"\1", line) for line in lines[start:]]
    path = tmp_path / "with-floor.yaml"
    path.write_text("\n".join(lines[:start] + example) + "\n")
    rules = load_rules(path)
    floor = rules.rules[-1]
    assert isinstance(floor, NpsFloor)
    assert (floor.name, floor.target, floor.window, floor.severity) == (
        "nps-floor",
        0,
        86400,
        "ticket",
    )
    assert floor.applies_to("overall") and floor.applies_to("department")
    assert not floor.applies_to("agent")
    assert rules.rules[:-1] == AlertRules().rules
    rules.check_windows(DEFAULT_WINDOWS, str(path))


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("5m", 300),
        ("1h", 3600),
        ("24h", 86400),
        ("90s", 90),
        ("1d", 86400),
        (600, 600),
        ("7200", 7200),
    ],
)
def test_durations(tmp_path: Path, written: object, seconds: int) -> None:
    path = write(
        tmp_path,
        f"""
        evaluate_every_seconds: {written}
        rules:
          - name: r
            kind: silence
            cooldown_seconds: {written}
        """,
    )
    rules = load_rules(path)
    assert rules.evaluate_every_seconds == seconds
    assert rules.rules[0].cooldown_seconds == seconds


def test_window_durations_of_a_two_window_rule(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        rules:
          - name: fast-drop
            kind: nps_drop
            window: 5m
            baseline: 1h
            min_effect: 20
            resolve_effect: 5
        """,
    )
    (rule,) = load_rules(path).rules
    assert isinstance(rule, NpsDrop)
    assert (rule.window, rule.baseline, rule.min_effect, rule.resolve_below) == (300, 3600, 20, 5)
    assert rule.windows_used() == (300, 3600)


@pytest.mark.parametrize("written", ["5x", "0m", "all", "soon"])
def test_bad_duration(tmp_path: Path, written: str) -> None:
    path = write(
        tmp_path,
        f"""
        rules:
          - name: r
            kind: nps_drop
            window: {written}
        """,
    )
    message = error_of(path)
    assert re.search(r"line 4: rules\.0\.nps_drop\.window: ", message), message
    assert written in message


# --------------------------------------------------------------------------- errors


def test_bad_min_effect_names_its_line_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        false_discovery_rate: 0.01
        rules:
          - name: spike
            kind: detractor_spike
            window: 1h
            min_effect: -1
        """,
    )
    message = error_of(path)
    assert "line 6: rules.0.detractor_spike.min_effect: Input should be greater than 0" in message


def test_every_error_is_reported_with_its_own_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        rules:
          - name: spike
            kind: detractor_spike
            min_effect: 1.5
          - name: drop
            kind: nps_drop
            min_responses: 0
        """,
    )
    message = error_of(path)
    assert (
        "line 4: rules.0.detractor_spike.min_effect: Input should be less than or equal to 1"
        in message
    )
    assert "line 7: rules.1.nps_drop.min_responses: Input should be greater than or equal to 1" in (
        message
    )


def test_unknown_key_in_a_rule(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        rules:
          - name: spike
            kind: detractor_spike
          - name: drop
            kind: nps_drop
            min_efect: 20
        """,
    )
    message = error_of(path)
    assert "line 6: rules.1.nps_drop.min_efect: Extra inputs are not permitted" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        evaluate_every_seconds: 1m
        false_discovery_rat: 0.05
        """,
    )
    message = error_of(path)
    assert "line 2: false_discovery_rat: Extra inputs are not permitted" in message


def test_unknown_kind(tmp_path: Path) -> None:
    """The rule that has the bad kind is named by its first line (the kind has no model)."""
    path = write(
        tmp_path,
        """
        rules:
          - name: spike
            kind: detractor_spike
          - name: typo
            kind: nps_dropp
        """,
    )
    message = error_of(path)
    assert re.search(r"line 4: rules\.1: .*'nps_dropp'.*'kind'", message), message
    assert "nps_drop" in message  # the expected kinds are listed


def test_missing_kind(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        rules:
          - name: nameless-kind
            min_effect: 0.2
        """,
    )
    message = error_of(path)
    assert re.search(r"line 2: rules\.0: .*'kind'", message), message


def test_missing_required_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        rules:
          - name: floor
            kind: nps_floor
        """,
    )
    message = error_of(path)
    assert "line 2: rules.0.nps_floor.target: Field required" in message


def test_bad_rule_name_and_severity(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        rules:
          - name: Detractor Spike
            kind: detractor_spike
            severity: critical
        """,
    )
    message = error_of(path)
    assert "line 2: rules.0.detractor_spike.name: String should match pattern" in message
    assert (
        "line 4: rules.0.detractor_spike.severity: Input should be 'page', 'ticket' or 'info'"
        in message
    )


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        rules:
          - name: drop
            kind: nps_drop
          - name: drop
            kind: csat_drop
        """,
    )
    message = error_of(path)
    assert "rule name 'drop' is already used by rules.0; names must be unique" in message
    # built in code rather than loaded from a file, the model refuses them too
    with pytest.raises(ValueError, match=r"rule names must be unique; repeated: \['drop'\]"):
        AlertRules.model_validate(
            {"rules": [{"name": "drop", "kind": "nps_drop"}, {"name": "drop", "kind": "csat_drop"}]}
        )


def test_duplicate_names_name_the_line_of_the_repeat(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        false_discovery_rate: 0.01
        rules:
          - name: drop
            kind: nps_drop
          - name: drop
            kind: csat_drop
        """,
    )
    message = error_of(path)
    assert "line 5: rules.1.name" in message, message


def test_baseline_must_be_longer_than_window(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        rules:
          - name: spike
            kind: detractor_spike
          - name: upside-down
            kind: csat_drop
            window: 24h
            baseline: 1h
        """,
    )
    message = error_of(path)
    assert (
        "line 4: rules.1.csat_drop: baseline (3600 s) must be longer than "
        "window (86400 s)" in message
    )


def test_equal_baseline_and_window_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        rules:
          - name: same
            kind: nps_drop
            window: 1h
            baseline: 3600
        """,
    )
    assert "must be longer than window" in error_of(path)


@pytest.mark.parametrize("resolve", ["0.1", "0.2"])
def test_resolve_effect_must_be_below_min_effect(tmp_path: Path, resolve: str) -> None:
    path = write(
        tmp_path,
        f"""
        rules:
          - name: spike
            kind: detractor_spike
            min_effect: 0.1
            resolve_effect: {resolve}
        """,
    )
    message = error_of(path)
    assert (
        "line 2: rules.0.detractor_spike: resolve_effect must be smaller than "
        "min_effect (hysteresis)" in message
    )


def test_resolve_effect_just_below_min_effect_is_fine(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        rules:
          - name: spike
            kind: detractor_spike
            min_effect: 0.1
            resolve_effect: 0.09
        """,
    )
    assert load_rules(path).rules[0].resolve_below == 0.09


def test_invalid_yaml_syntax_names_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        rules:
          - name: spike
            kind: [detractor_spike
        """,
    )
    message = error_of(path)
    assert "not valid YAML" in message
    assert "line 3, column 11" in message


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- name: spike\n  kind: detractor_spike\n")
    message = error_of(path)
    assert "line 1: (file): Input should be a valid dictionary" in message


def test_empty_file_means_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing here yet\n")
    assert load_rules(path) == AlertRules()


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    assert caught.value.message == (
        f"alert rules file {path} does not exist (NPS_ALERT_RULES_FILE)"
    )
    assert caught.value.code == caught.value.message  # SystemExit: exits with the message


# --------------------------------------------------------------------------- windows


def test_check_windows_refuses_a_window_that_is_not_kept(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        rules:
          - name: half-hour-drop
            kind: nps_drop
            window: 30m
        """,
    )
    rules = load_rules(path)
    with pytest.raises(ConfigError) as caught:
        rules.check_windows(DEFAULT_WINDOWS, str(path))
    message = caught.value.message
    assert message.startswith(f"{path}: rule 'half-hour-drop' uses window(s) [1800] s")
    assert "NPS_WINDOWS_SECONDS [300, 3600, 86400]" in message
    rules.check_windows([300, 1800, 3600, 86400], str(path))  # kept: accepted


@pytest.mark.parametrize(
    ("rule", "windows", "missing"),
    [
        ({"name": "s", "kind": "silence", "baseline": "7d"}, [3600, 86400], "[604800]"),
        ({"name": "c", "kind": "detractor_cusum", "baseline": "2h"}, [300, 86400], "[7200]"),
        ({"name": "f", "kind": "nps_floor", "target": 0}, [300, 3600], "[86400]"),
        ({"name": "d", "kind": "ces_effort_rise"}, [300, 7200], "[3600, 86400]"),
    ],
)
def test_check_windows_for_every_kind(rule: dict, windows: list[int], missing: str) -> None:
    rules = AlertRules(rules=[rule])
    with pytest.raises(ConfigError, match=re.escape(f"uses window(s) {missing} s")):
        rules.check_windows(windows, "rules.yaml")
