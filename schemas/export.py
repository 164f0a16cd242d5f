"""Export every contract as a JSON Schema file under ``schemas/json/``.

Run ``nps-pipeline schemas export`` (or ``python -m schemas.export``) after changing a
model; a test fails while the committed files are stale.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.alert import Alert
from schemas.deadletter import DeadLetter
from schemas.feedback import FeedbackEvent
from schemas.followup import FollowupSummary, FollowupTask, FollowupTaskView, FollowupUpdate
from schemas.scored import ScoredEvent
from schemas.windows import SegmentList, SegmentWindowsView, WindowSnapshot

JSON_DIR = Path(__file__).parent / "json"

#: file stem -> model
MODELS: dict[str, type[BaseModel]] = {
    "feedback_event": FeedbackEvent,
    "scored_event": ScoredEvent,
    "dead_letter": DeadLetter,
    "window_snapshot": WindowSnapshot,
    "segment_windows": SegmentWindowsView,
    "segment_list": SegmentList,
    "alert": Alert,
    "followup_task": FollowupTask,
    "followup_update": FollowupUpdate,
    "followup_task_view": FollowupTaskView,
    "followup_summary": FollowupSummary,
}


def render(model: type[BaseModel]) -> str:
    schema = model.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def expected_files() -> dict[str, str]:
    return {f"{stem}.v1.json": render(model) for stem, model in MODELS.items()}


def export(directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in expected_files().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in export():
        print(path)
