"""A compact live line for ``nps-pipeline run``: throughput, counts, NPS per department."""

from __future__ import annotations

import time
from typing import TextIO

from pipeline.aggregate import WindowState
from pipeline.scoring import ScoringStage
from pipeline.windows import window_label


class StatusLine:
    def __init__(self, stage: ScoringStage, state: WindowState, out: TextIO) -> None:
        self.stage = stage
        self.state = state
        self.out = out
        self._last = (time.monotonic(), 0)
        windows = state.windows
        self.window = 3600 if 3600 in windows else max(windows)

    def print(self) -> None:
        totals = self.stage.totals
        now = time.monotonic()
        then, consumed_then = self._last
        rate = (totals.consumed - consumed_then) / max(now - then, 1e-9)
        self._last = (now, totals.consumed)
        line = (
            f"{time.strftime('%H:%M:%S')}  in {totals.consumed:,} ({rate:,.0f}/s)  "
            f"scored {totals.scored:,}  dead-lettered {totals.deadlettered:,}  "
            f"duplicates {totals.duplicates:,}"
        )
        departments = []
        clock = self.state.clock
        for partition, segment in self.state.keys("department"):
            windows = self.state.advanced(partition, segment, clock)
            if windows is None:
                continue
            stats = windows.stats(self.window)
            if stats.nps is not None:
                departments.append(f"{segment.partition('=')[2]} {stats.nps:+.0f}")
        if departments:
            label = window_label(self.window)
            line += f"\n          NPS {label}: " + "  ".join(sorted(departments))
        print(line, file=self.out, flush=True)
