"""Open, for monitoring (they carry no patient data): /metrics in Prometheus' text format, and
/healthz, JSON, 200 when the listener, the journal and the destinations are fine, 503 otherwise."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def metrics(request: Request) -> Response:
    return Response(await run_in_threadpool(generate_latest, request.app.state.node.metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)


async def healthz(request: Request) -> Response:
    checks = await run_in_threadpool(request.app.state.node.health)
    healthy = all(value == "ok" for value in checks.values())
    return JSONResponse({"status": "ok" if healthy else "failing", "checks": checks},
                        status_code=200 if healthy else 503)


routes = [Route("/metrics", metrics), Route("/healthz", healthz)]
