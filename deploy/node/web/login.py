"""Logging in and out. The user name comes from the config, the password from the environment
variable it names. Guessing is throttled and locked out per user name and per address
(login_guard.py); every outcome is audited without what was typed. A login starts a new server-side
session (sessions.py) with a new token for the buttons; logging out ends it."""
from __future__ import annotations

import hmac
import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from deploy.node.web.common import SESSION_ID, local, page
from deploy.node.web.login_guard import keys_for

log = logging.getLogger("renalnode.node")
TOO_MANY_REQUESTS = 429


async def login(request: Request) -> Response:
    target = local(request.query_params.get("next", "/"))
    if request.method == "GET":
        return page(request, "login.html", next=target, failed=False, locked=False)
    form = await request.form()
    name, password = str(form.get("username", "")), str(form.get("password", ""))
    state = request.app.state
    web, audit, guard = state.config.web, state.journal.audit, state.login_guard
    host = request.client.host if request.client else "?"
    keys = keys_for(name, host)
    async with guard.turn(keys):
        if guard.locked(keys):
            await run_in_threadpool(audit, "login.refused", detail=f"locked out: attempt from {host}")
            return page(request, "login.html", next=target, failed=False, locked=True,
                        status_code=TOO_MANY_REQUESTS)
        known = hmac.compare_digest(name.encode(), web.username.encode())
        good = known & hmac.compare_digest(password.encode(), web.password.encode())
        # What was typed as a user name is not kept: people type their password there too.
        outcome = f"user {web.username}" if good else "wrong password" if known else "unknown user name"
        await run_in_threadpool(audit, "login.ok" if good else "login.failed", detail=f"{outcome} from {host}")
        if not good:
            log.warning("dashboard login failed from %s", host)
            for key in await guard.failed(keys):
                what = f"address {host}" if key.startswith("address:") else \
                    f"user {web.username}" if known else "an unknown user name"
                log.warning("dashboard logins locked for %s after repeated failures", what)
                await run_in_threadpool(audit, "login.locked", detail=f"{what} locked for "
                                                                       f"{guard.lockout_seconds:.0f} s")
            return page(request, "login.html", next=target, failed=True, locked=False)
        guard.succeeded(keys)
    state.sessions.end(request.session.get(SESSION_ID))
    request.session.clear()
    request.session[SESSION_ID] = state.sessions.start(name)
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    request.app.state.sessions.end(request.session.get(SESSION_ID))
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


routes = [Route("/login", login, methods=["GET", "POST"]), Route("/logout", logout, methods=["POST"])]
