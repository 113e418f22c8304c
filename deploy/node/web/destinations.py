"""/destinations: the last success and failure of each destination, the webhook notifications, and
an echo button (C-ECHO or a DICOMweb query, in the audit log)."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from deploy.node.web.common import back, button, login_required, page, user


@login_required
async def destinations(request: Request) -> Response:
    config, journal = request.app.state.config, request.app.state.journal
    status = await run_in_threadpool(journal.destination_status, sorted(config.destinations))
    notes = await run_in_threadpool(journal.notification_rows, 50)
    return page(request, "destinations.html", destinations=config.destinations, status=status,
                notifications=notes, webhook=config.notifications is not None)


@button
async def echo(request: Request, form: dict) -> Response:
    name = request.path_params["name"]
    if name not in request.app.state.config.destinations:
        return back(request, "/destinations", f"no destination {name}", ok=False)
    ok, message = await run_in_threadpool(request.app.state.node.echo, name, f"dashboard user {user(request)}")
    return back(request, "/destinations", message, ok=ok)


routes = [Route("/destinations", destinations), Route("/destinations/{name}/echo", echo, methods=["POST"])]
