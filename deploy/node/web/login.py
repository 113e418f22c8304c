"""Logging in and out. The user name comes from the config, the password from the environment
variable it names; a failed login is answered after a delay and audited without what was typed.
A login starts a new session with a new token for the buttons."""
from __future__ import annotations

import asyncio
import hmac
import logging
import secrets

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from deploy.node.web.common import local, page

log = logging.getLogger("renalnode.node")
FAILED_LOGIN_DELAY_SECONDS = 1.0   # slows password guessing without locking anyone out


async def login(request: Request) -> Response:
    target = local(request.query_params.get("next", "/"))
    if request.method == "GET":
        return page(request, "login.html", next=target, failed=False)
    form = await request.form()
    name, password = str(form.get("username", "")), str(form.get("password", ""))
    web = request.app.state.config.web
    known = hmac.compare_digest(name.encode(), web.username.encode())
    good = known & hmac.compare_digest(password.encode(), web.password.encode())
    host = request.client.host if request.client else "?"
    # What was typed as a user name is not kept: people type their password there too.
    outcome = f"user {web.username}" if good else "wrong password" if known else "unknown user name"
    await run_in_threadpool(request.app.state.journal.audit, "login.ok" if good else "login.failed",
                            detail=f"{outcome} from {host}")
    if not good:
        log.warning("dashboard login failed from %s", host)
        await asyncio.sleep(FAILED_LOGIN_DELAY_SECONDS)
        return page(request, "login.html", next=target, failed=True)
    request.session.clear()
    request.session.update({"user": name, "csrf": secrets.token_urlsafe(32)})
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


routes = [Route("/login", login, methods=["GET", "POST"]), Route("/logout", logout, methods=["POST"])]
