"""A compact live line for ``nps-pipeline run``: throughput and counts."""

from __future__ import annotations

import time
from typing import TextIO

from pipeline.scoring import ScoringStage


class StatusLine:
    def __init__(self, stage: ScoringStage, out: TextIO) -> None:
        self.stage = stage
        self.out = out
        self._last = (time.monotonic(), 0)

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
        nps = totals.nps()
        if nps is not None:
            line += f"  NPS {nps:+.1f} (all time, n={totals.nps_responses:,})"
        print(line, file=self.out, flush=True)
