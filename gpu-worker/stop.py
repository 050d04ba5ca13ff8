"""Ending a job early but cleanly: on cancel or SIGTERM the training loop stops at the next step
boundary, uploads a checkpoint and returns.

The SDK cancels a stopped job's asyncio task, and on SIGTERM it only stops taking new jobs.
Neither reaches a handler that trains in a thread, so `handler.py` turns both into a
StopSignal the training loop polls once per step.
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger("loraflow.stop")


class StopSignal:
    """A thread-safe "please stop" flag with the first reason given ("cancelled", "SIGTERM")."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None
        self._lock = threading.Lock()

    def set(self, reason: str) -> None:
        with self._lock:
            if not self._event.is_set():
                self.reason = reason
                self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


@contextmanager
def sigterm_stops(stop: StopSignal) -> Iterator[None]:
    """While the block runs, SIGTERM sets `stop` and then does whatever it did before (the SDK's
    own handler stops the worker loop after the running job). Only the main thread can install
    signal handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame) -> None:
        log.warning("SIGTERM: stopping the job at the next step boundary (checkpoint first)")
        stop.set("SIGTERM")
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
