"""Window results: published on ``nps.windows`` and returned by the HTTP API."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.windowstats import WindowStats

WINDOWS_SCHEMA_VERSION = 1


class SegmentWindowsView(BaseModel):
    """Every window of one segment at one moment of event time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = Field(default=WINDOWS_SCHEMA_VERSION, ge=1)
    segment: str = Field(
        description='Segment key: "overall", "agent=a1", "department=x|channel=y".'
    )
    dimension: str = Field(
        description='"overall", "agent", or "department,channel" for a combination.'
    )
    fields: dict[str, str] = Field(description="Segment field -> value.")
    as_of: AwareDatetime | None = Field(
        description="Event-time clock of the windows (worker's newest event)."
    )
    windows: dict[str, WindowStats] = Field(
        description='Rolling windows by label ("5m", "1h", "24h").'
    )
    all_time: WindowStats = Field(description="Everything since the start of the state.")


class WindowSnapshot(SegmentWindowsView):
    """A segment's windows when the event-time clock crossed a snapshot boundary."""

    snapshot_id: str = Field(
        description='Deterministic "<segment>@<boundary unix seconds>" for dedupe.'
    )


class SegmentRow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    segment: str
    fields: dict[str, str]
    stats: WindowStats


class SegmentList(BaseModel):
    """Answer of ``GET /api/v1/segments``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dimension: str
    window: str
    sort: str
    order: str = Field(description='"asc" or "desc"; the default puts the worst first.')
    as_of: AwareDatetime | None
    total: int = Field(description="Segments of the dimension matching the filters (before limit).")
    segments: list[SegmentRow]
