"""The node's web side for hospital IT (Starlette, served by uvicorn in the node's process).

Behind login (user name from the config, password from the environment variable it names):
    /                 counts, queue and recent jobs with their stages and timings
    /jobs/N           one job: series facts, findings, key images, outputs, where they were sent,
                      its audit trail, a retry button when it failed or was quarantined
    /quarantine       quarantined series with their reasons and retry buttons
    /destinations     last success and failure of each destination, an echo button
    /model            the loaded model and its cross-validation metrics
    /audit            the audit log, filtered by series, job or event
Open, for monitoring (they carry no patient data):
    /metrics          Prometheus text format
    /healthz          JSON; 200 when listener, journal and destinations are fine, 503 otherwise

Pages never show patient names or IDs: the journal does not hold them. Buttons are POST forms with
a per-session token, and the session cookie is SameSite=strict.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import re
import secrets
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from deploy.node.cli import when
from deploy.node.journal import FAILED, QUARANTINED, QUEUED, RUNNING
from renalnode.model_package import ModelPackageError, find_model_package, load_model_package
from renalnode.run_record import KEY_IMAGE_FOLDER, RECORD_NAME, RunRecord

log = logging.getLogger("renalnode.node")
TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
KEY_IMAGE_NAME = re.compile(r"[0-9]{2}\.png")
FAILED_LOGIN_DELAY_SECONDS = 1.0   # slows password guessing without locking anyone out


def _local(path: str) -> str:
    """A path on this site, for redirects that a form or link names (never another site)."""
    return path if path.startswith("/") and not path.startswith("//") else "/"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


TEMPLATES.env.filters["when"] = when
TEMPLATES.env.filters["seconds"] = _seconds


def create_app(node) -> Starlette:
    """The ASGI app for one running `deploy.node.service.Node`."""
    config, journal = node.config, node.journal

    def user(request: Request) -> str | None:
        return request.session.get("user")

    def page(request: Request, name: str, **context) -> Response:
        flash = request.session.pop("flash", None)
        return TEMPLATES.TemplateResponse(request, name, {"user": user(request), "flash": flash,
                                                          "csrf": request.session.get("csrf", ""),
                                                          "node_name": config.listener.ae_title, **context})

    def login_required(handler):
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
            token = request.session.get("csrf", "")
            if not (token and hmac.compare_digest(str(form.get("csrf", "")), token)):
                return Response("form expired: reload the page", status_code=403)
            return await handler(request, dict(form))
        return checked

    def back(request: Request, to: str, message: str, ok: bool = True) -> Response:
        request.session["flash"] = {"ok": ok, "text": message}
        return RedirectResponse(_local(to), status_code=303)

    def run_record(job_id: int) -> RunRecord | None:
        folder = config.results / str(job_id)
        return RunRecord.read(folder) if (folder / RECORD_NAME).is_file() else None

    # --- login -------------------------------------------------------------------------------------
    async def login(request: Request) -> Response:
        target = _local(request.query_params.get("next", "/"))
        if request.method == "GET":
            return page(request, "login.html", next=target, failed=False)
        form = await request.form()
        name, password = str(form.get("username", "")), str(form.get("password", ""))
        web = config.web
        known = hmac.compare_digest(name.encode(), web.username.encode())
        good = known & hmac.compare_digest(password.encode(), web.password.encode())
        host = request.client.host if request.client else "?"
        # What was typed as a user name is not kept: people type their password there too.
        outcome = f"user {web.username}" if good else "wrong password" if known else "unknown user name"
        await run_in_threadpool(journal.audit, "login.ok" if good else "login.failed", detail=f"{outcome} from {host}")
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

    # --- pages -------------------------------------------------------------------------------------
    @login_required
    async def overview(request: Request) -> Response:
        def gather():
            recent = journal.recent_jobs(50)
            return {"counts": journal.counts(), "queue": journal.jobs_in((QUEUED, RUNNING)),
                    "jobs": [(job, run_record(job["id"]), journal.series_row(job["series_uid"])) for job in recent],
                    "rules": node.rules.current()}
        return page(request, "overview.html", **await run_in_threadpool(gather))

    @login_required
    async def job_page(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        job = await run_in_threadpool(journal.job_row, job_id)
        if job is None:
            return page(request, "missing.html", what=f"job {job_id}")
        return page(request, "job.html", job=job, series=await run_in_threadpool(journal.series_row, job["series_uid"]),
                    record=await run_in_threadpool(run_record, job_id),
                    outbox=await run_in_threadpool(journal.outbox_for, job_id),
                    events=await run_in_threadpool(journal.audit_events, 200, "", job_id),
                    can_retry=job["state"] in (FAILED, QUARANTINED))

    @login_required
    async def key_image(request: Request) -> Response:
        name = request.path_params["name"]
        path = config.results / str(request.path_params["job_id"]) / KEY_IMAGE_FOLDER / name
        if not KEY_IMAGE_NAME.fullmatch(name) or not path.is_file():
            return Response("no such key image", status_code=404)
        return FileResponse(path, media_type="image/png")

    @button
    async def retry(request: Request, form: dict) -> Response:
        job_id = request.path_params["job_id"]
        try:
            await run_in_threadpool(journal.retry, job_id, f"dashboard user {user(request)}")
        except ValueError as exc:
            return back(request, form.get("back", "/quarantine"), str(exc), ok=False)
        return back(request, form.get("back", "/quarantine"),
                    f"job {job_id}: its series will be routed and processed again")

    @login_required
    async def quarantine(request: Request) -> Response:
        return page(request, "quarantine.html", rows=await run_in_threadpool(journal.quarantined))

    @login_required
    async def destinations(request: Request) -> Response:
        status = await run_in_threadpool(journal.destination_status, sorted(config.destinations))
        notes = await run_in_threadpool(journal.notification_rows, 50)
        return page(request, "destinations.html", destinations=config.destinations, status=status,
                    notifications=notes, webhook=config.notifications is not None)

    @button
    async def echo(request: Request, form: dict) -> Response:
        name = request.path_params["name"]
        if name not in config.destinations:
            return back(request, "/destinations", f"no destination {name}", ok=False)
        ok, message = await run_in_threadpool(node.echo, name, f"dashboard user {user(request)}")
        return back(request, "/destinations", message, ok=ok)

    def last_model_used() -> dict:
        """The model of the newest job that ran: what the worker actually loaded (in-process or in the MAP)."""
        for job in journal.recent_jobs(50):
            record = run_record(job["id"])
            if record and record.model:
                return {**record.model, "job": job["id"]}
        return {}

    def model_loads() -> int:
        return int(node.metrics.registry.get_sample_value("renalnode_model_loads_total") or 0)

    @login_required
    async def model(request: Request) -> Response:
        used = await run_in_threadpool(last_model_used)
        try:
            package = await run_in_threadpool(lambda: load_model_package(find_model_package(config.model)))
        except ModelPackageError as exc:
            return page(request, "model.html", package=None, error=str(exc), used=used,
                        loads=model_loads())
        return page(request, "model.html", package=package, card=package.card, error="", used=used,
                    loads=model_loads())

    @login_required
    async def audit(request: Request) -> Response:
        query = request.query_params
        job = query.get("job", "")
        events = await run_in_threadpool(journal.audit_events, 500, query.get("series", "").strip(),
                                         int(job) if job.isdigit() else None, query.get("event", "").strip())
        return page(request, "audit.html", events=events, query=query)

    # --- monitoring --------------------------------------------------------------------------------
    async def metrics(request: Request) -> Response:
        return Response(await run_in_threadpool(generate_latest, node.metrics.registry),
                        media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        checks = await run_in_threadpool(node.health)
        healthy = all(value == "ok" for value in checks.values())
        return JSONResponse({"status": "ok" if healthy else "failing", "checks": checks},
                            status_code=200 if healthy else 503)

    routes = [
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", overview),
        Route("/jobs/{job_id:int}", job_page),
        Route("/jobs/{job_id:int}/key-images/{name}", key_image),
        Route("/jobs/{job_id:int}/retry", retry, methods=["POST"]),
        Route("/quarantine", quarantine),
        Route("/destinations", destinations),
        Route("/destinations/{name}/echo", echo, methods=["POST"]),
        Route("/model", model),
        Route("/audit", audit),
        Route("/metrics", metrics),
        Route("/healthz", healthz),
    ]
    # A new secret each start: sessions end with the process, which is what a restart should do.
    middleware = [Middleware(SessionMiddleware, secret_key=secrets.token_urlsafe(32), same_site="strict",
                             session_cookie="renalnode_session", max_age=12 * 3600,
                             https_only=config.web.url.startswith("https://"))]
    return Starlette(routes=routes, middleware=middleware)
