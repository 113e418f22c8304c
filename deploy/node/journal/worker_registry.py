"""Workers: one row per worker (host/slot), written by the worker itself when it starts, claims and
finishes, and every few seconds (its heartbeat), so that the dashboard, the metrics and `renalnode
status` show each one and when it was last alive (the supervisor itself watches its processes)."""
from __future__ import annotations

import time

from sqlalchemy import select, update

from deploy.node.journal.audit_trail import AuditTrail
from deploy.node.journal.rows import WorkerRow
from deploy.node.journal.schema import workers


class WorkerRegistry(AuditTrail):
    def worker_started(self, name: str, host: str, device: str, pid: int) -> None:
        """A worker process (or the node's in-process worker) begins; a restarted one keeps its row
        and its count of jobs done."""
        now = time.time()
        with self.engine.begin() as db:
            self._insert_if_new(db, workers, name=name, host=host, device=device, pid=pid, job_id=None, jobs_done=0,
                                started=now, last_seen=now)
            db.execute(update(workers).where(workers.c.name == name).values(
                host=host, device=device, pid=pid, job_id=None, started=now, last_seen=now))
            self._audit(db, "worker.started", detail=f"{name} on {device}, pid {pid}")

    def worker_seen(self, name: str, job_id: int | None, done: bool = False) -> None:
        """The worker is alive, running `job_id` (None: idle); `done`: it has just finished a job."""
        values: dict = {"job_id": job_id, "last_seen": time.time()}
        if done:
            values["jobs_done"] = workers.c.jobs_done + 1
        with self.engine.begin() as db:
            db.execute(update(workers).where(workers.c.name == name).values(**values))

    def worker_alive(self, name: str) -> None:
        """The worker's heartbeat: only when it was last seen, whatever it is doing."""
        with self.engine.begin() as db:
            db.execute(update(workers).where(workers.c.name == name).values(last_seen=time.time()))

    def workers(self) -> list[WorkerRow]:
        with self.engine.connect() as db:
            return [WorkerRow(**r._mapping) for r in db.execute(select(workers).order_by(workers.c.name))]
