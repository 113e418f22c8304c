"""/audit: the audit log, newest first, filtered by series, job or kind of event."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from deploy.node.web.common import login_required, page


@login_required
async def audit(request: Request) -> Response:
    query = request.query_params
    job = query.get("job", "")
    events = await run_in_threadpool(request.app.state.journal.audit_events, 500, query.get("series", "").strip(),
                                     int(job) if job.isdigit() else None, query.get("event", "").strip())
    return page(request, "audit.html", events=events, query=query)


routes = [Route("/audit", audit)]
