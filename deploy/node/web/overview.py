"""/: counts, the workers, the queue, the recent jobs with their stages and timings, and the routing
rules in force."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from deploy.node.journal import JobState
from deploy.node.web.common import login_required, page, run_record


@login_required
async def overview(request: Request) -> Response:
    node, journal = request.app.state.node, request.app.state.journal

    def gather() -> dict:
        recent = journal.recent_jobs(50)
        return {"counts": journal.counts(), "workers": journal.workers(),
                "queue": journal.jobs_in((JobState.QUEUED, JobState.RUNNING)),
                "jobs": [(job, run_record(node.config, job.id), journal.series_row(job.series_uid))
                         for job in recent],
                "routing": node.rules.current(), "series_rules": node.rules.series_rules,
                "lockouts": request.app.state.login_guard.lockouts()}
    return page(request, "overview.html", **await run_in_threadpool(gather))


routes = [Route("/", overview)]
