"""/quarantine: quarantined series with their reasons and retry buttons (the retry is deploy/node/web/jobs.py's)."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from deploy.node.web.common import login_required, page


@login_required
async def quarantine(request: Request) -> Response:
    return page(request, "quarantine.html", rows=await run_in_threadpool(request.app.state.journal.quarantined))


routes = [Route("/quarantine", quarantine)]
