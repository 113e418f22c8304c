"""Webhook notifications: a JSON POST for a quarantined series, a failed job and a destination that
has been failing for longer than `destination_failing_seconds`.

The journal makes each message in the same transaction as its event, so a crash loses none; this
loop, in its own thread, delivers them with exponential back-off (the outbox's schedule,
deploy/node/journal/backoff.py) and gives up after `max_attempts` (logged). Nothing in the pipeline
ever waits for a webhook. Messages carry UIDs, reasons and destination names, never patient data;
errors are logged without the webhook's URL, which often holds a token.
"""
from __future__ import annotations

import json
import logging
import time

import requests

from deploy.node.config import NotificationConfig
from deploy.node.journal import Journal, NotificationState, retry_delay
from deploy.node.journal.rows import NotificationRow
from deploy.node.metrics import NodeMetrics

log = logging.getLogger("renalnode.node")


def _error_text(exc: requests.RequestException) -> str:
    """What went wrong, without the URL (requests puts it in most messages)."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__


class Notifier:
    def __init__(self, config: NotificationConfig, journal: Journal, metrics: NodeMetrics, destinations: list[str],
                 node_name: str, dashboard_url: str = "", claim_as: str = ""):
        """`node_name` names the node in the messages; `claim_as` is the node's name in the journal,
        under which it claims each notification so that no other node delivers it too."""
        self.config, self.journal, self.metrics = config, journal, metrics
        self.destinations, self.node_name, self.dashboard_url = destinations, node_name, dashboard_url.rstrip("/")
        self.claim_as = claim_as or node_name

    def step(self, now: float | None = None) -> bool:
        """Notice failing destinations, deliver what is due; True when something was delivered."""
        now = now or time.time()
        for name, status in self.journal.destination_status(self.destinations).items():
            since = status.failing_since
            if since is not None and now - since >= self.config.destination_failing_seconds and \
                    self.journal.notify_destination_failing(name, since, status.last_error):
                log.warning("destination %s failing for %.0f s: notification queued", name, now - since)
        return sum(self._deliver(row, now) for row in self.journal.due_notifications(now)
                   if self.journal.claim_notification(row.id, self.claim_as, now)) > 0

    def _body(self, row: NotificationRow) -> dict:
        body = {**json.loads(row.payload), "node": self.node_name}
        if self.dashboard_url:
            body["dashboard"] = (f"{self.dashboard_url}/jobs/{body['job']}" if body.get("job")
                                 else f"{self.dashboard_url}/destinations")
        return body

    def _deliver(self, row: NotificationRow, now: float) -> bool:
        try:
            response = requests.post(self.config.webhook_url, json=self._body(row),
                                     timeout=self.config.timeout_seconds)
            response.raise_for_status()
        except requests.RequestException as exc:
            error, attempts = _error_text(exc), row.attempts + 1
            self.metrics.notifications.labels("failed").inc()
            if attempts >= self.config.max_attempts:
                self.journal.notification_done(row.id, NotificationState.FAILED, error)
                log.error("notification %d (%s) not delivered after %d attempts: %s", row.id, row.event,
                          attempts, error)
            else:
                delay = retry_delay(attempts, self.config.retry_base_seconds, self.config.retry_max_seconds)
                self.journal.notification_done(row.id, NotificationState.PENDING, error, now + delay)
                log.warning("notification %d (%s): %s; next try in %.0f s", row.id, row.event, error, delay)
            return False
        self.journal.notification_done(row.id, NotificationState.SENT)
        self.metrics.notifications.labels("sent").inc()
        log.info("notification %d (%s) delivered", row.id, row.event)
        return True
