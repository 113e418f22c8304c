"""The one retry schedule of the journal's queues: the outbox (deploy/node/dispatcher.py) and the
webhook notifications (deploy/node/notify.py) wait base, 2 base, 4 base, ... seconds, at most max."""
from __future__ import annotations


def retry_delay(failures: int, base_seconds: float, max_seconds: float) -> float:
    """Seconds until the next attempt after `failures` failed attempts in a row (1 or more)."""
    return min(max_seconds, base_seconds * 2 ** min(failures - 1, 30))  # a bounded power: no overflow, ever
