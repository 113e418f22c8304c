"""The node's Prometheus metrics (served at /metrics by deploy/node/web/monitoring.py).

Counters and histograms move as things happen in this process (reset at restart, as Prometheus
expects); states and disk space are read when scraped. Model loads are counted from the run records
the worker reads, so this module needs neither torch nor the app. Labels carry states,
stages, destination and worker names only: never a UID, never patient data.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from deploy.node.journal import Journal

# A job's stages take from milliseconds (writers) to many minutes (inference on a CPU).
STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class _JournalCollector:
    """Values read at scrape time, so they are right even after a restart."""

    def __init__(self, journal: Journal, spool: Path):
        self.journal, self.spool = journal, spool

    def collect(self):
        counts = self.journal.counts()
        for table in ("series", "jobs"):
            family = GaugeMetricFamily(f"renalnode_{table}", f"{table.capitalize()} in the journal by state",
                                       labels=["state"])
            for state, n in sorted(counts[table].items()):
                family.add_metric([state], n)
            yield family
        pending = GaugeMetricFamily("renalnode_outbox", "Dispatches in the outbox by state", labels=["state"])
        for state, n in sorted(counts["outbox"].items()):
            pending.add_metric([state], n)
        yield pending
        done = GaugeMetricFamily("renalnode_worker_jobs_done", "Job attempts each worker finished", labels=["worker"])
        busy = GaugeMetricFamily("renalnode_worker_busy", "1 while the worker runs a job", labels=["worker"])
        seen = GaugeMetricFamily("renalnode_worker_last_seen_timestamp_seconds", "When the worker last wrote its row",
                                 labels=["worker"])
        for worker in self.journal.workers():
            done.add_metric([worker.name], worker.jobs_done)
            busy.add_metric([worker.name], 1 if worker.job_id else 0)
            seen.add_metric([worker.name], worker.last_seen)
        yield from (done, busy, seen)
        yield GaugeMetricFamily("renalnode_spool_free_bytes", "Free space on the spool's file system",
                                value=shutil.disk_usage(self.spool).free)


class NodeMetrics:
    def __init__(self, journal: Journal, spool: Path):
        self.registry = CollectorRegistry()
        self.instances = Counter("renalnode_instances_received", "Instances stored by the listener",
                                 registry=self.registry)
        self.series = Counter("renalnode_series_received", "Series whose first instance arrived",
                              registry=self.registry)
        self.associations = Counter("renalnode_associations", "Associations by outcome", ["outcome"],
                                    registry=self.registry)
        self.stage_seconds = Histogram("renalnode_stage_duration_seconds",
                                       "Seconds per stage of a job (queue wait, the app's stages, the whole run)",
                                       ["stage"], buckets=STAGE_BUCKETS, registry=self.registry)
        self.model_loads = Counter("renalnode_model_loads", "Times a job loaded its model into memory",
                                   registry=self.registry)
        self.jobs_finished = Counter("renalnode_jobs_finished", "Job attempts by how they ended", ["state"],
                                     registry=self.registry)
        self.dispatches = Counter("renalnode_dispatches", "Result sets sent, by destination", ["destination"],
                                  registry=self.registry)
        self.dispatch_failures = Counter("renalnode_dispatch_failures", "Failed dispatch attempts, by destination",
                                         ["destination"], registry=self.registry)
        self.notifications = Counter("renalnode_notifications", "Webhook deliveries by outcome", ["outcome"],
                                     registry=self.registry)
        self.registry.register(_JournalCollector(journal, spool))
