"""/jobs/N: one job (series facts, findings, key images, outputs, where they were sent, its audit
trail), its key images, and the retry of a failed or quarantined job (also from /quarantine)."""
from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from deploy.node.journal import JobState
from deploy.node.web.common import back, button, login_required, page, run_record, user
from renalnode.run_record import KEY_IMAGE_FOLDER

KEY_IMAGE_NAME = re.compile(r"[0-9]{2}\.png")   # as RunRecord.save_key_image names them: nothing else is served
LARGEST_JOB_ID = 2 ** 63 - 1                      # the journal's integer keys; larger ones name no job
NOT_FOUND = 404


@login_required
async def job_page(request: Request) -> Response:
    config, journal = request.app.state.config, request.app.state.journal
    job_id = request.path_params["job_id"]
    job = await run_in_threadpool(journal.job_row, job_id) if job_id <= LARGEST_JOB_ID else None
    if job is None:
        return page(request, "missing.html", status_code=NOT_FOUND, what=f"job {job_id}")
    return page(request, "job.html", job=job, series=await run_in_threadpool(journal.series_row, job.series_uid),
                record=await run_in_threadpool(run_record, config, job_id),
                outbox=await run_in_threadpool(journal.outbox_for, job_id),
                events=await run_in_threadpool(journal.audit_events, 200, "", job_id),
                can_retry=job.state in (JobState.FAILED, JobState.QUARANTINED))


@login_required
async def key_image(request: Request) -> Response:
    name = request.path_params["name"]
    path = request.app.state.config.results / str(request.path_params["job_id"]) / KEY_IMAGE_FOLDER / name
    if not KEY_IMAGE_NAME.fullmatch(name) or not path.is_file():
        return Response("no such key image", status_code=404)
    return FileResponse(path, media_type="image/png")


@button
async def retry(request: Request, form: dict) -> Response:
    job_id = request.path_params["job_id"]
    if job_id > LARGEST_JOB_ID:
        return back(request, form.get("back", "/quarantine"), f"no job {job_id}", ok=False)
    try:
        await run_in_threadpool(request.app.state.journal.retry, job_id, f"dashboard user {user(request)}")
    except ValueError as exc:
        return back(request, form.get("back", "/quarantine"), str(exc), ok=False)
    return back(request, form.get("back", "/quarantine"),
                f"job {job_id}: its series will be routed and processed again")


routes = [Route("/jobs/{job_id:int}", job_page), Route("/jobs/{job_id:int}/key-images/{name}", key_image),
          Route("/jobs/{job_id:int}/retry", retry, methods=["POST"])]
