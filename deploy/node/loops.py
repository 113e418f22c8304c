"""The loop every long-running part of the node runs in (completion, worker, dispatcher, notifier,
worker supervisor): one step after another until asked to stop, idling when a step found nothing."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("renalnode.node")
IDLE_SECONDS = 0.5


def run_loop(name: str, step: Callable[[], bool], stopping: threading.Event) -> None:
    while not stopping.is_set():
        try:
            busy = step()
        except Exception:  # a loop must survive anything one step throws; the journal keeps the state
            log.exception("%s step failed", name)
            busy = False
        if not busy:
            stopping.wait(IDLE_SECONDS)
