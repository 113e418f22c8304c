"""Jobs, and the hand-off to the worker in three calls (enqueue, claim, finish) so that another queue
can take its place when the node scales out; with the restart's reclaim and the operator's retry:

    queued -> running -> results_ready -> dispatched
                      -> queued again (failed attempt, under max_attempts) | failed | quarantined
    a newer job of the series supersedes queued and overtaken ones; a retry marks a job retried."""
from __future__ import annotations

import time
from dataclasses import replace

from sqlalchemy import insert, or_, select, update

from deploy.node.journal.audit_trail import AuditTrail
from deploy.node.journal.rows import JobRow, QuarantinedSeries
from deploy.node.journal.schema import jobs, outbox, series
from deploy.node.journal.states import DispatchState, JobState, SeriesState


class JobQueue(AuditTrail):
    def enqueue(self, series_uid: str, destinations: tuple[str, ...], state: JobState = JobState.QUEUED,
                reason: str = "", now: float | None = None) -> int | None:
        """A complete series gets its job: queued to run, or quarantined at once (not routable). Older
        queued jobs and unsent results of the series are superseded: only the newest, complete series
        may reach the destinations. None when the series is no longer complete (an instance arrived)."""
        with self.engine.begin() as db:
            # The series takes its new job's state: queued (handed to the job) or quarantined.
            if not db.execute(update(series).where(series.c.series_uid == series_uid,
                                                   series.c.state == SeriesState.COMPLETE)
                              .values(state=SeriesState(state), reason=reason)).rowcount:
                return None
            older = select(jobs.c.id).where(jobs.c.series_uid == series_uid)
            queued = (jobs.c.series_uid == series_uid, jobs.c.state == JobState.QUEUED)
            for row in db.execute(select(jobs.c.id).where(*queued)):
                self._audit(db, f"job.{JobState.SUPERSEDED}", series_uid, row.id, detail="a newer job took over")
            db.execute(update(jobs).where(*queued).values(state=JobState.SUPERSEDED))
            db.execute(update(outbox).where(outbox.c.job_id.in_(older), outbox.c.state == DispatchState.PENDING)
                       .values(state=DispatchState.SUPERSEDED))
            job_id = db.execute(insert(jobs).values(series_uid=series_uid, destinations=",".join(destinations),
                                                    state=state, attempts=0, reason=reason, output="",
                                                    created=now or time.time()).returning(jobs.c.id)).scalar_one()
            self._audit(db, f"job.{state}", series_uid, job_id, detail=reason)
            return job_id

    def claim(self, worker: str = "") -> JobRow | None:
        """The oldest queued job, now running and held by `worker` (one transaction, so two workers
        never share one)."""
        with self.engine.begin() as db:
            row = db.execute(select(jobs).where(jobs.c.state == JobState.QUEUED).order_by(jobs.c.id).limit(1)).first()
            return self._start(db, row, worker)

    def claim_job(self, job_id: int, worker: str, take_over: bool = False) -> JobRow | None:
        """Distributed mode: the job a task names, now running and held by `worker`; with `take_over`
        (the broker delivered the task again because its worker was lost) also when it is still
        marked running. None when it is no longer to run (done, superseded, or running elsewhere)."""
        claimable = [JobState.QUEUED, JobState.RUNNING] if take_over else [JobState.QUEUED]
        with self.engine.begin() as db:
            row = db.execute(select(jobs).where(jobs.c.id == job_id, jobs.c.state.in_(claimable))).first()
            return self._start(db, row, worker)

    def _start(self, db, row, worker: str) -> JobRow | None:
        """`row` running, held by `worker`, unless another claimant changed its state first."""
        if row is None:
            return None
        started = time.time()
        if not db.execute(update(jobs).where(jobs.c.id == row.id, jobs.c.state == row.state).values(
                state=JobState.RUNNING, started=started, attempts=jobs.c.attempts + 1, worker=worker)).rowcount:
            return None
        self._audit(db, f"job.{JobState.RUNNING}", row.series_uid, row.id,
                    detail=f"attempt {row.attempts + 1}" + (f" on {worker}" if worker else "")
                    + (" (taken over)" if row.state == JobState.RUNNING else ""))
        return replace(JobRow.from_db(row), state=JobState.RUNNING, started=started, attempts=row.attempts + 1,
                       worker=worker)

    def unpublished_jobs(self) -> list[JobRow]:
        """Distributed mode: queued jobs not handed to the broker yet (or again)."""
        with self.engine.connect() as db:
            return [JobRow.from_db(r) for r in db.execute(select(jobs).where(
                jobs.c.state == JobState.QUEUED, jobs.c.published.is_(None)).order_by(jobs.c.id))]

    def published(self, job_id: int) -> None:
        with self.engine.begin() as db:
            db.execute(update(jobs).where(jobs.c.id == job_id).values(published=time.time()))

    def finish(self, job_id: int, state: JobState, reason: str = "", output: str = "") -> JobState:
        """A job's result: results ready (outbox rows made), or failed, quarantined, or queued again;
        returns the state recorded. A job overtaken by a newer one of its series (late instances)
        never sends, never runs again and never quarantines the series (nor notifies): the newer
        job speaks for it."""
        now = time.time()
        with self.engine.begin() as db:
            job = JobRow.from_db(db.execute(select(jobs).where(jobs.c.id == job_id)).one())
            newer = db.execute(select(jobs.c.id).where(jobs.c.series_uid == job.series_uid,
                                                       jobs.c.id > job_id)).first()
            if newer is not None:
                state, reason = JobState.SUPERSEDED, f"job {newer.id} took over (more instances arrived)"
            db.execute(update(jobs).where(jobs.c.id == job_id).values(state=state, reason=reason, finished=now,
                                                                      output=output or job.output, published=None))
            self._audit(db, f"job.{state}", job.series_uid, job_id, detail=reason)
            if state == JobState.RESULTS_READY:
                for destination in job.destinations:
                    exists = db.execute(select(outbox.c.id).where(outbox.c.job_id == job_id,
                                                                  outbox.c.destination == destination)).first()
                    if exists is None:
                        db.execute(insert(outbox).values(job_id=job_id, destination=destination,
                                                         state=DispatchState.PENDING, attempts=0, next_attempt=now,
                                                         last_error=""))
            if state in (JobState.QUARANTINED, JobState.FAILED):  # unless the series was reopened meanwhile
                db.execute(update(series).where(series.c.series_uid == job.series_uid,
                                                series.c.state == SeriesState.QUEUED)
                           .values(state=SeriesState.QUARANTINED, reason=reason))
        return state

    def reclaim_running(self, max_attempts: int, worker: str | None = None, node: str | None = None) -> int:
        """Jobs left running by a crash are queued again (their attempt counted), unless they used up
        their attempts: a study that kills the process must not stop the node for good. Those of one
        worker process that died (`worker`), or at a node's start those of its own workers (`node`:
        workers NODE/SLOT, and jobs claimed before workers had names); other nodes' jobs run on."""
        who = f"worker {worker}" if worker is not None else "the node"
        reason = f"{who} stopped during each of {max_attempts} attempt(s) at this job"
        running = jobs.c.state == JobState.RUNNING
        if worker is not None:
            running &= jobs.c.worker == worker
        elif node is not None:
            running &= or_(jobs.c.worker.startswith(f"{node}/", autoescape=True), jobs.c.worker == "")
        with self.engine.begin() as db:
            spent = [r.id for r in db.execute(select(jobs.c.id).where(running, jobs.c.attempts >= max_attempts))]
            again = db.execute(select(jobs.c.id, jobs.c.series_uid).where(running,
                                                                           jobs.c.attempts < max_attempts)).all()
            for row in again:
                self._audit(db, f"job.{JobState.QUEUED}", row.series_uid, row.id,
                            detail=f"{who} stopped during this attempt")
            db.execute(update(jobs).where(jobs.c.id.in_([row.id for row in again])).values(state=JobState.QUEUED,
                                                                                           published=None))
        for job_id in spent:
            self.finish(job_id, JobState.FAILED, reason)
        return len(again)

    def retry(self, job_id: int, operator: str = "renalnode retry") -> None:
        """An operator's retry of a failed or quarantined job: its series is routed again and gets a
        new job with fresh attempts (the old job stays in the journal as it ended)."""
        with self.engine.begin() as db:
            job = db.execute(select(jobs).where(jobs.c.id == job_id)).first()
            if job is None:
                raise ValueError(f"no job {job_id}")
            if job.state not in (JobState.FAILED, JobState.QUARANTINED):
                raise ValueError(f"job {job_id} is {job.state}: only failed or quarantined jobs are retried")
            # Routed again from scratch, so that a corrected routing rule or destination applies.
            if not db.execute(update(series).where(series.c.series_uid == job.series_uid,
                                                   series.c.state == SeriesState.QUARANTINED)
                              .values(state=SeriesState.COMPLETE, reason="")).rowcount:
                raise ValueError(f"job {job_id}'s series is no longer quarantined (a newer job or new instances)")
            db.execute(update(jobs).where(jobs.c.id == job_id).values(state=JobState.RETRIED))
            self._audit(db, f"job.{JobState.RETRIED}", job.series_uid, job_id, detail=f"by {operator}")

    # --- operators ------------------------------------------------------------------------------
    def job_row(self, job_id: int) -> JobRow | None:
        with self.engine.connect() as db:
            row = db.execute(select(jobs).where(jobs.c.id == job_id)).first()
            return JobRow.from_db(row) if row else None

    def recent_jobs(self, limit: int = 20) -> list[JobRow]:
        with self.engine.connect() as db:
            return [JobRow.from_db(r) for r in db.execute(select(jobs).order_by(jobs.c.id.desc()).limit(limit))]

    def jobs_in(self, states: tuple[JobState, ...]) -> list[JobRow]:
        with self.engine.connect() as db:
            return [JobRow.from_db(r) for r in db.execute(select(jobs).where(jobs.c.state.in_(states))
                                                          .order_by(jobs.c.id))]

    def quarantined(self) -> list[QuarantinedSeries]:
        with self.engine.connect() as db:
            return [QuarantinedSeries(**r._mapping) for r in db.execute(
                select(series.c.series_uid, series.c.reason, series.c.instances, series.c.calling_aet,
                       jobs.c.id.label("job_id"))
                .join(jobs, jobs.c.series_uid == series.c.series_uid)
                .where(series.c.state == SeriesState.QUARANTINED,
                       jobs.c.state.in_((JobState.QUARANTINED, JobState.FAILED))))]
