"""/model: the model the last job used, how often this process loaded one, and the configured model
package with its cross-validation metrics."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from deploy.node.web.common import login_required, page, run_record
from renalnode.model_package import ModelPackageError, find_model_package, load_model_package


def last_model_used(node) -> dict:
    """The model of the newest job that ran: what the worker actually loaded (in-process or in the MAP)."""
    for job in node.journal.recent_jobs(50):
        record = run_record(node.config, job.id)
        if record and record.model:
            return {**record.model, "job": job.id}
    return {}


def model_loads(node) -> int:
    return int(node.metrics.registry.get_sample_value("renalnode_model_loads_total") or 0)


@login_required
async def model(request: Request) -> Response:
    node = request.app.state.node
    used = await run_in_threadpool(last_model_used, node)
    try:
        package = await run_in_threadpool(lambda: load_model_package(find_model_package(node.config.model)))
    except ModelPackageError as exc:
        return page(request, "model.html", package=None, error=str(exc), used=used, loads=model_loads(node))
    return page(request, "model.html", package=package, card=package.card, error="", used=used,
                loads=model_loads(node))


routes = [Route("/model", model)]
