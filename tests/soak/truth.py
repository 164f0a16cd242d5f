"""Ground truth of sent events, computed here independently of the pipeline's code.

Counts per segment (``overall`` and ``department=<name>``) what the windows' all-time
numbers must be: NPS answers with promoters/passives/detractors (9-10 / 7-8 / 0-6),
CSAT and CES answers. :func:`mismatches` compares them with the worker's HTTP API.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

FIELDS = ("responses", "promoters", "passives", "detractors", "csat_responses", "ces_responses")


@dataclass
class Truth:
    """Expected all-time counts per segment of every distinct event sent."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    ids: set[str] = field(default_factory=set)

    def add(self, event: dict[str, Any]) -> None:
        if event["event_id"] in self.ids:  # a resend of the same answer counts once
            return
        self.ids.add(event["event_id"])
        row: Counter[str] = Counter()
        survey, score = event["survey_type"], event["score"]
        if survey == "nps":
            row["responses"] += 1
            kind = "promoters" if score >= 9 else "passives" if score >= 7 else "detractors"
            row[kind] += 1
        else:
            row[f"{survey}_responses"] += 1
        segments = ["overall"]
        if event.get("department"):
            segments.append(f"department={event['department']}")
        for segment in segments:
            self.counts.setdefault(segment, Counter()).update(row)

    def expected(self, segment: str) -> dict[str, int]:
        row = self.counts.get(segment, Counter())
        return {name: row[name] for name in FIELDS}


def api_counts(base_url: str) -> dict[str, dict[str, int]]:
    """All-time counts per segment as the worker's API answers them (overall and every
    department; any worker gathers the others' rows)."""

    def get(path: str) -> Any:
        with urllib.request.urlopen(base_url + path, timeout=10) as resp:
            return json.load(resp)

    out: dict[str, dict[str, int]] = {}
    try:
        overall = get("/api/v1/segments/overall")["all_time"]
    except urllib.error.HTTPError:
        overall = {}
    out["overall"] = {name: int(overall.get(name, 0)) for name in FIELDS}
    listing = get("/api/v1/segments?dimension=department&window=all&limit=10000&min_responses=0")
    for row in listing["segments"]:
        out[row["segment"]] = {name: int(row["stats"].get(name, 0)) for name in FIELDS}
    return out


def mismatches(truth: Truth, got: dict[str, dict[str, int]]) -> list[str]:
    """One line per (segment, count) that differs between the truth and the API."""
    lines = []
    for segment in sorted(set(truth.counts) | set(got)):
        expected = truth.expected(segment)
        actual = got.get(segment, dict.fromkeys(FIELDS, 0))
        for name in FIELDS:
            if expected[name] != actual.get(name, 0):
                lines.append(
                    f"{segment} {name}: expected {expected[name]}, got {actual.get(name, 0)} "
                    f"({actual.get(name, 0) - expected[name]:+d})"
                )
    return lines
