"""The live page end to end: two real workers on the embedded broker, simulated
feedback, the page in headless Chromium (Debian ``chromium`` + ``chromium-driver``,
driven by Selenium).

It waits for live data, checks that every number the page shows equals the HTTP API's
(overall NPS/CSAT/CES with intervals, the worst-first agent table, health), checks the
phone layout, then injects an incident and waits for its alert to appear in the
page's alerts feed. Screenshots land in ``tests/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from pipeline.simulator import FeedbackSimulator, Incident, SimulatorConfig
from tests.conftest import without_nps_settings

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("NPS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("NPS_CHROMEDRIVER", "/usr/bin/chromedriver")
PACKAGES = ("chromium", "chromium-driver")
ARTIFACTS = Path(__file__).parent / "artifacts"

RATE = 6.0  # events per second of event time
AGENTS = 8  # a few agents per department team: each gets many answers
AGENT = "agent-007"
HISTORY = 60 * 60  # seconds of normal answers, then the incident
INCIDENT = 30 * 60  # the alert fires 5-12 min in (measured); the rest is margin
WINDOW = "30m"
RULES = """\
evaluate_every_seconds: 1m
false_discovery_rate: 0.001
rules:
  - name: detractor-cusum
    kind: detractor_cusum
    severity: page
    baseline: 2h
    lookback: 30m
    shift: 0.15
    false_alarms_per_day: 0.5
    min_baseline_responses: 100
"""


# --------------------------------------------------------------------------- browser


def _ensure_chromium() -> None:
    """Install the Debian packages when missing (as ``make tools`` does); skip only when
    that is impossible, and never in CI."""
    if os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
            check=False,
            env=env,
        )
    if os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK):
        return
    message = (
        f"{CHROMIUM} / {CHROMEDRIVER} missing and not installable here: run `make tools` "
        "(Debian packages chromium and chromium-driver, needs root)"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def browser() -> Iterator[Any]:
    _ensure_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(1280, 1000)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, name: str, width: int) -> Path:
    """A full-page PNG at ``width`` CSS pixels, saved under tests/artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    metrics = {"width": width, "deviceScaleFactor": 1, "mobile": width < 500}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": 900})
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": height})
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    print(f"\nscreenshot: {path}")
    return path


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    started = time.monotonic()
    deadline = started + timeout
    while True:
        value = condition()
        if value:
            print(f"\nwaited {time.monotonic() - started:.1f} s for {what}")
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.3)


# --------------------------------------------------------------------------- the page's words


def r(x: float) -> int:
    """JavaScript's Math.round (half up), as the page rounds."""
    return math.floor(x + 0.5)


def nps_text(s: dict[str, Any]) -> str:
    if s["nps"] is None:
        return "no answers"
    half = (s["nps_high"] - s["nps_low"]) / 2
    return f"NPS {r(s['nps'])} ± {r(half)}, n = {s['responses']:,}"


def csat_text(c: dict[str, Any]) -> str:
    half = (c["satisfied_high"] - c["satisfied_low"]) / 2 * 100
    return f"CSAT {r(c['satisfied_share'] * 100)}% ± {r(half)}, n = {c['responses']:,}"


def ces_text(c: dict[str, Any]) -> str:
    half = (c["mean_high"] - c["mean_low"]) / 2
    return f"CES {c['mean']:.2f} ± {half:.2f}, n = {c['responses']:,}"


def signed(x: float) -> str:
    return f"{'+' if r(x) > 0 else ''}{r(x)}"


def sparkline_label(points: list[dict[str, Any]], step: str) -> str:
    values = [p["nps"] for p in points if p["nps"] is not None]
    return (
        f"NPS in {len(points)} steps of {step}: from {signed(values[0])} to {signed(values[-1])}"
        f" (lowest {signed(min(values))}, highest {signed(max(values))})"
    )


# --------------------------------------------------------------------------- the test


def get_json(base: str, path: str, **params: Any) -> Any:
    query = urllib.parse.urlencode(params, doseq=True)
    with urllib.request.urlopen(f"{base}{path}?{query}", timeout=10) as resp:
        return json.load(resp)


def ready(base: str) -> bool:
    try:
        return bool(get_json(base, "/readyz")["ready"])
    except urllib.error.HTTPError:  # 503 while rebalancing
        return False


def produce(producer: KafkaProducer, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush()


@pytest.mark.timeout(240)
def test_live_page_shows_the_api_numbers_and_a_new_alert(
    broker, start_worker, worker_env, tmp_path, browser
) -> None:  # type: ignore[no-untyped-def]
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    env = {
        "NPS_TOPIC_ALERTS": f"alerts-{worker_env['NPS_APP_ID']}",
        "NPS_WINDOWS_SECONDS": "300,1800,7200",
        "NPS_ALERT_RULES_FILE": str(rules),
    }
    first = start_worker(**env)
    second = start_worker(**env)  # the page must show both workers' segments
    for worker in (first, second):
        wait_for(lambda w=worker: ready(w.url), 60, "both workers ready after the rebalance")
    base = first.url

    origin = datetime.now(UTC) - timedelta(seconds=HISTORY + INCIDENT)
    incident = Incident.parse(f"agent={AGENT},detractors=0.9,start={HISTORY},duration={INCIDENT}")
    sim = FeedbackSimulator(
        SimulatorConfig(seed=11, num_agents=AGENTS, incidents=[incident]), start=origin
    )
    events = [
        sim.next_record(origin + timedelta(seconds=i / RATE))
        for i in range(int((HISTORY + INCIDENT) * RATE))
    ]
    history, rest = events[: int(HISTORY * RATE)], events[int(HISTORY * RATE) :]
    answers = [json.loads(v) for _, v in history]
    nps_answers = sum(1 for a in answers if a["survey_type"] == "nps")
    agent_answers = sum(1 for a in answers if a["survey_type"] == "nps" and a.get("agent"))
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=20)
    produce(producer, worker_env["NPS_TOPIC_RAW"], history)

    # the workers have read and windowed all of it (the overall segment counts every answer)
    wait_for(
        lambda: get_json(base, "/api/v1/health")["scored"] == len(history),
        60,
        f"{len(history)} events scored",
    )
    wait_for(
        lambda: get_json(base, "/api/v1/segments/overall")["all_time"]["responses"] == nps_answers,
        60,
        f"{nps_answers} NPS answers in the overall segment",
    )
    wait_for(
        lambda: (
            sum(
                s["stats"]["responses"]
                for s in get_json(
                    base, "/api/v1/segments", dimension="agent", window="all", limit=1000
                )["segments"]
            )
            == agent_answers
        ),
        60,
        f"{agent_answers} NPS answers in the agents' segments of both workers",
    )
    health = get_json(base, "/api/v1/health")
    assert len(health["workers"]) == 2 and health["unanswered_workers"] == 0
    assert health["input_lag_records"] == 0

    query = {"dimension": "agent", "window": WINDOW, "min_responses": "1", "limit": "10"}
    settled = time.time() * 1000
    browser.get(f"{base}/live?{urllib.parse.urlencode(query)}")
    # a refresh that started after the numbers settled
    wait_for(
        lambda: (
            float(browser.execute_script("return document.body.dataset.updated || 0")) > settled
        ),
        30,
        "the page to show live data",
    )

    def shown(selector: str) -> list[str]:
        return browser.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)", selector
        )

    overall = get_json(base, "/api/v1/segments/overall")["windows"][WINDOW]
    overall_extra = get_json(base, "/api/v1/series", dimension="overall", window=WINDOW)
    extra = overall_extra["series"]["overall"]
    listing = get_json(base, "/api/v1/segments", **query)
    assert overall["responses"] > 300 and listing["total"] == AGENTS
    assert shown("#overall-nps") == [nps_text(overall)]
    assert shown("#overall-csat") == [csat_text(extra["csat"])]
    assert shown("#overall-ces") == [ces_text(extra["ces"])]
    # the table: the API's worst-first rows of both workers, in its order, with its numbers
    rows = browser.execute_script(
        "return [...document.querySelectorAll('#segments tbody tr')].map(tr => ["
        "tr.dataset.segment, tr.querySelector('.nps').firstChild.textContent,"
        "tr.querySelector('.responses').textContent,"
        "tr.querySelector('.trend svg').getAttribute('aria-label')])"
    )
    assert [row[:3] for row in rows] == [
        [s["segment"], nps_text(s["stats"]), f"{s['stats']['responses']:,}"]
        for s in listing["segments"]
    ]
    # the sparklines: the API's recent points, described in words
    series = get_json(
        base,
        "/api/v1/series",
        dimension="agent",
        window=WINDOW,
        points=12,
        segment=[s["segment"] for s in listing["segments"]],
    )
    assert series["step_seconds"] == 180  # 30 min in 12 points: whole 3-minute buckets
    assert [row[3] for row in rows] == [
        sparkline_label(series["series"][row[0]]["points"], "3 min") for row in rows
    ]
    assert shown("#health-consumed") == [f"{len(history):,}"]
    assert shown("#health-workers") == ["2"]
    assert shown("#health-lag")[0].startswith("0 records")
    # accessible names and structure the page promises
    assert browser.execute_script("return document.querySelector('label[for=window]') !== null")
    assert browser.find_element("id", "alert-feed").get_attribute("aria-live") == "polite"
    assert len(browser.find_elements("css selector", "#segments th[scope=col]")) == 8
    print(f"\npage: {shown('#overall-nps')[0]}; worst agent: {rows[0][0]} {rows[0][1]}")
    screenshot(browser, "live-page-1280.png", 1280)

    # phone width: nothing but the table's own scroll area is wider than the screen
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 375, "height": 800, "deviceScaleFactor": 1, "mobile": True},
    )
    page_width = browser.execute_script("return document.documentElement.scrollWidth")
    assert page_width <= 375, f"page is {page_width} px wide at 375 px"
    screenshot(browser, "live-page-375.png", 375)

    # the incident: its alert appears in the feed, as /api/v1/alerts has it
    produce(producer, worker_env["NPS_TOPIC_RAW"], rest)
    producer.close()
    selector = f'#firing li[data-segment="agent={AGENT}"]'
    try:
        wait_for(
            lambda: browser.find_elements("css selector", selector), 60, f"the alert of {AGENT}"
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the API has: {get_json(base, '/api/v1/alerts')}") from None
    feed = get_json(base, "/api/v1/alerts")
    firing = [a for a in feed["firing"] if a["segment"] == f"agent={AGENT}"]
    assert len(firing) == 1 and firing[0]["rule"] == "detractor-cusum"
    after = datetime.fromisoformat(firing[0]["fired_at"]) - (origin + timedelta(seconds=HISTORY))
    print(f"\nalert fired {after.total_seconds():.0f} s of event time into the incident")
    assert 0 < after.total_seconds() < INCIDENT
    item = browser.find_element("css selector", selector)
    assert item.get_attribute("data-alert-id") == firing[0]["alert_id"]
    assert item.find_element("css selector", ".summary").text == firing[0]["summary"]
    assert "FIRING" in item.text  # the state in words, not only in colour
    recent = f'#recent li[data-alert-id="{firing[0]["alert_id"]}"][data-status="firing"]'
    # the feed of changes reads the alerts topic: the fire shows up there a moment later
    wait_for(lambda: browser.find_elements("css selector", recent), 30, "the fire in the feed")
    feed = get_json(base, "/api/v1/alerts")
    assert any(a["alert_id"] == firing[0]["alert_id"] for a in feed["recent"])
    item.find_element("css selector", "summary").click()
    assert firing[0]["description"] in item.text
    screenshot(browser, "live-page-alert.png", 1280)


def test_run_prints_the_page_url_first_and_serves_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``nps-pipeline run`` (what ``make run`` starts): the first line is the page's URL,
    and that URL serves the page."""
    import signal
    import sys

    from pipeline.broker import free_port

    port = free_port()
    env = without_nps_settings()
    env.update(NPS_WEB_PORT=str(port), NPS_STATUS_INTERVAL_SECONDS="0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", "--no-simulate"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().rstrip("\n")
        url = f"http://127.0.0.1:{port}/live"
        assert first == f"live page        {url}"

        def page() -> str:
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    return resp.read().decode()
            except OSError:
                return ""

        assert "<title>nps-pipeline · live</title>" in wait_for(page, 60, f"{url} to serve")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
