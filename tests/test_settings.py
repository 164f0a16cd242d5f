"""Configuration errors fail fast with a message that says what to fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.settings import ConfigError, load_settings
from tests.conftest import run_python


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("NPS_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    settings = load_settings()
    assert settings.broker_url is None
    assert (settings.topic_raw, settings.topic_scored, settings.topic_deadletter) == (
        "feedback.raw",
        "feedback.scored",
        "feedback.deadletter",
    )


def test_environment_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "nps.yaml"
    config.write_text("topic_partitions: 8\nbroker_url: kafka://k1:9092,kafka://k2:9092\n")
    monkeypatch.setenv("NPS_TOPIC_PARTITIONS", "12")
    settings = load_settings(config_file=config)
    assert settings.topic_partitions == 12  # environment wins over the file
    assert settings.bootstrap_servers == ["k1:9092", "k2:9092"]
    assert settings.faust_broker == "kafka://k1:9092;kafka://k2:9092"


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"NPS_TOPIC_PARTITIONS": "0"}, "topic_partitions (NPS_TOPIC_PARTITIONS)"),
        ({"NPS_BROKER_URL": "localhost"}, "is not host:port"),
        ({"NPS_TOPIC_SCORED": "feedback.raw"}, "topic names must be distinct"),
        ({"NPS_LOG_LEVEL": "loud"}, "log_level"),
        ({"NPS_MAX_EVENT_BYTES": "ten"}, "max_event_bytes"),
    ],
)
def test_bad_values_name_the_setting(
    env: dict[str, str], words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert words in info.value.message


def test_unknown_key_in_file(tmp_path: Path) -> None:
    config = tmp_path / "nps.yaml"
    config.write_text("topic_partitons: 8\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=config)
    assert "topic_partitons" in info.value.message and "unknown setting" in info.value.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=tmp_path / "nope.yaml")
    assert "does not exist" in info.value.message


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["worker", "--broker", "nohost"], "is not host:port"),
        (["worker"], "NPS_BROKER_URL"),
    ],
)
def test_cli_exits_2_with_a_message_that_says_what_to_fix(args: list[str], words: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert words in proc.stderr


def test_readme_documents_every_setting() -> None:
    from pipeline.settings import Settings

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [
        f"NPS_{name.upper()}"
        for name in Settings.model_fields
        if f"`NPS_{name.upper()}`" not in readme
    ]
    assert not missing, f"README configuration table lacks {missing}"


def test_exactly_once_needs_a_kafka_cluster() -> None:
    with pytest.raises(ConfigError, match="NPS_BROKER_URL"):
        load_settings(processing_guarantee="exactly_once")
    chosen = load_settings(processing_guarantee="exactly_once", broker_url="kafka-1:9092")
    assert chosen.processing_guarantee == "exactly_once"
    assert load_settings().processing_guarantee == "at_least_once"


def test_text_analytics_settings_and_a_bad_taxonomy_fails_fast(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.text_analytics is True and "theme" in settings.dimensions
    assert load_settings(text_analytics="false").text_analytics is False
    with pytest.raises(ConfigError, match=r"text_taxonomy_file \(NPS_TEXT_TAXONOMY_FILE\).*"
                       r"cannot read"):  # fmt: skip
        load_settings(text_taxonomy_file=str(tmp_path / "missing.yaml"))
    bad = tmp_path / "themes.yaml"
    bad.write_text("version: 1\nthemes:\n  Billing: {en: [bill]}\n")
    with pytest.raises(ConfigError, match=r"themes.Billing"):
        load_settings(text_taxonomy_file=str(bad))
    good = tmp_path / "good.yaml"
    good.write_text("version: 1\nthemes:\n  billing: {en: [bill]}\n")
    assert load_settings(text_taxonomy_file=str(good)).text_taxonomy_file == good
    with pytest.raises(ConfigError, match="unknown dimension"):
        load_settings(dimensions="department,topic")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, (50_000, 10, 1000)), ("700,10,10", (700, 10, 10))],
    ids=["default", "NPS_GC_THRESHOLDS"],
)
def test_the_worker_app_sets_the_collector_thresholds(
    value: str | None, expected: tuple[int, int, int]
) -> None:
    # in a child process: the thresholds are process-wide
    code = (
        "import gc; from pipeline.app import create_app; from pipeline.settings import "
        "load_settings; create_app(load_settings(broker_url='127.0.0.1:1')); "
        "print(*gc.get_threshold())"
    )
    settings = {} if value is None else {"NPS_GC_THRESHOLDS": value}
    done = run_python(code, **settings)
    assert tuple(map(int, done.stdout.split())) == expected
