"""When a series is complete, and what happens to it then.

A series is complete when no association that stored into it is still open and nothing has
arrived for `quiet_seconds`, or at the latest `max_wait_seconds` after its first instance (a sender
that never releases must not hold a series forever). A complete series is routed: a job for the
matching rule's destinations, or quarantine with the reason no rule matched."""
from __future__ import annotations

import logging
import time

from deploy.node.journal import JobState, Journal
from deploy.node.routing import RoutingRules, SeriesFacts, route

log = logging.getLogger("renalnode.node")


def complete_quiet_series(journal: Journal, quiet_seconds: float, max_wait_seconds: float,
                          now: float | None = None) -> list[str]:
    now = now or time.time()
    done = []
    for row in journal.receiving_series():
        quiet = row.open_associations == 0 and now - row.last_received >= quiet_seconds
        if (quiet or now - row.first_received >= max_wait_seconds) and \
                journal.mark_complete(row.series_uid, row.last_received):
            done.append(row.series_uid)
            log.info("series %s complete: %d instance(s)%s", row.series_uid, row.instances,
                     "" if quiet else " (maximum wait reached)")
    return done


def route_complete_series(journal: Journal, routing: RoutingRules) -> list[int]:
    made = []
    for row in journal.complete_series():
        facts = SeriesFacts(row.modality, row.body_part, row.series_description, row.study_description,
                            row.calling_aet)
        rule, reason = route(routing, facts)
        if rule is None:
            job = journal.enqueue(row.series_uid, (), JobState.QUARANTINED, reason)
        else:
            job = journal.enqueue(row.series_uid, rule.destinations)
        if job is None:  # an instance arrived meanwhile: it completes again later
            continue
        made.append(job)
        if rule is None:
            log.warning("series %s quarantined (job %d): %s", row.series_uid, job, reason)
        else:
            log.info("series %s queued as job %d (%s)", row.series_uid, job, reason)
    return made
