"""Throttled progress reports (payload shape: GpuProgress in contract/gpu-job.ts)."""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable

log = logging.getLogger("loraflow.progress")

MIN_INTERVAL_SECONDS = 1.0


class Progress:
    """Phase changes always go out; step updates at most once a second, plus the last step."""

    def __init__(self, send: Callable[[dict[str, Any]], None], min_interval: float = MIN_INTERVAL_SECONDS):
        self._send = send
        self._min_interval = min_interval
        self._last_sent = -math.inf

    def _emit(self, payload: dict[str, Any]) -> None:
        self._last_sent = time.monotonic()
        try:
            self._send(payload)
        except Exception:  # progress is best effort; it must never fail the job
            log.warning("progress update failed", exc_info=True)

    def phase(self, phase: str) -> None:
        self._emit({"phase": phase})

    def step(self, phase: str, step: int, total: int, loss: float | None = None, *,
             it_per_sec: float | None = None, eta_seconds: float | None = None) -> None:
        if step < total and time.monotonic() - self._last_sent < self._min_interval:
            return
        payload: dict[str, Any] = {"phase": phase, "step": step, "totalSteps": total}
        for key, value in (("loss", loss), ("itPerSec", it_per_sec), ("etaSeconds", eta_seconds)):
            if value is not None and math.isfinite(value):
                payload[key] = round(value, 4) if key != "loss" else value
        self._emit(payload)
