"""The node's web side for hospital IT (Starlette, served by uvicorn in the node's process), one
module per page:

Behind login (login.py: user name from the config, password from the environment variable it names):
    /                 overview.py: counts, queue and recent jobs with their stages and timings
    /jobs/N           jobs.py: one job: series facts, findings, key images, outputs, where they were
                      sent, its audit trail, a retry button when it failed or was quarantined
    /quarantine       quarantine.py: quarantined series with their reasons and retry buttons
    /destinations     destinations.py: last success and failure of each destination, an echo button
    /model            model.py: the loaded model and its cross-validation metrics
    /audit            audit.py: the audit log, filtered by series, job or event
Open, for monitoring (monitoring.py; they carry no patient data):
    /metrics          Prometheus text format
    /healthz          JSON; 200 when listener, journal and destinations are fine, 503 otherwise

Pages never show patient names or IDs: the journal does not hold them. Buttons are POST forms with
a per-session token, sessions live on the server and the cookie (SameSite=strict) holds only their
id (sessions.py), and password guessing is throttled and locked out (login_guard.py).
"""
from __future__ import annotations

import secrets

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware

from deploy.node.web import audit, destinations, jobs, login, model, monitoring, overview, quarantine
from deploy.node.web.login_guard import LoginGuard
from deploy.node.web.sessions import SESSION_SECONDS, SessionStore

PAGES = (login, overview, jobs, quarantine, destinations, model, audit, monitoring)


def create_app(node) -> Starlette:
    """The ASGI app for one running `deploy.node.service.Node`."""
    # A new secret each start: sessions end with the process, which is what a restart should do.
    middleware = [Middleware(SessionMiddleware, secret_key=secrets.token_urlsafe(32), same_site="strict",
                             session_cookie="renalnode_session", max_age=SESSION_SECONDS,
                             https_only=node.config.web.url.startswith("https://"))]
    app = Starlette(routes=[route for page in PAGES for route in page.routes], middleware=middleware)
    app.state.node, app.state.config, app.state.journal = node, node.config, node.journal
    app.state.sessions, app.state.login_guard = SessionStore(), LoginGuard()
    return app
