"""What every page of the dashboard shares: its templates, the page helper, the login check, the
token check of its buttons and the redirect back with a message. The running node, its config and
its journal are on `request.app.state` (deploy/node/web/__init__.py puts them there)."""
from __future__ import annotations

import hmac
from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from deploy.node.cli import when
from deploy.node.config import NodeConfig
from deploy.node.web.sessions import Session
from renalnode.run_record import RECORD_NAME, RunRecord

TEMPLATES = Jinja2Templates(directory=Path(__file__).parents[1] / "templates")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


TEMPLATES.env.filters["when"] = when
TEMPLATES.env.filters["seconds"] = _seconds


def local(path: str) -> str:
    """A path on this site, for redirects that a form or link names (never another site)."""
    return path if path.startswith("/") and not path.startswith("//") else "/"


SESSION_ID = "sid"   # the one value the session cookie holds (deploy/node/web/sessions.py)


def session(request: Request) -> Session | None:
    return request.app.state.sessions.get(request.session.get(SESSION_ID))


def user(request: Request) -> str | None:
    current = session(request)
    return current.user if current else None


def page(request: Request, name: str, status_code: int = 200, **context) -> Response:
    """A template with what base.html shows on every page: the user, a message left by a button, the
    buttons' token and the node's name."""
    flash = request.session.pop("flash", None)
    current = session(request)
    return TEMPLATES.TemplateResponse(request, name, {"user": current.user if current else None, "flash": flash,
                                                      "csrf": current.csrf if current else "",
                                                      "node_name": request.app.state.config.listener.ae_title,
                                                      **context}, status_code=status_code)


def login_required(handler):
    """A page for logged-in users; anyone else goes to the login, which brings them back here."""
    async def guarded(request: Request) -> Response:
        if user(request) is None:
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return await handler(request)
    return guarded


def button(handler):
    """A POST from one of our pages by a logged-in user (its token matches the session's); the
    handler gets the form."""
    @login_required
    async def checked(request: Request) -> Response:
        form = await request.form()
        current = session(request)
        token = current.csrf if current else ""
        if not (token and hmac.compare_digest(str(form.get("csrf", "")), token)):
            return Response("form expired: reload the page", status_code=403)
        return await handler(request, dict(form))
    return checked


def back(request: Request, to: str, message: str, ok: bool = True) -> Response:
    """Redirect to a page of this site, which shows `message`."""
    request.session["flash"] = {"ok": ok, "text": message}
    return RedirectResponse(local(to), status_code=303)


def run_record(config: NodeConfig, job_id: int) -> RunRecord | None:
    """What the app wrote about the job's run, if it ran."""
    folder = config.results / str(job_id)
    return RunRecord.read(folder) if (folder / RECORD_NAME).is_file() else None
