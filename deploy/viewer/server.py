"""The viewer server: OHIF's static build and Orthanc's DICOMweb under one origin.

One origin means no CORS setup and one address for radiologists. What OHIF needs from its web
server: `/viewer/...` and the other client-side routes fall back to `index.html`, `.wasm` is served
as application/wasm (the image decoders), and the page is cross-origin isolated (COOP + COEP), or
the volume viewports lose SharedArrayBuffer. `/dicom-web/` is proxied to Orthanc read-only (GET);
the Host header goes through, so the BulkDataURIs Orthanc writes point back at this origin.

    python -m deploy.viewer --orthanc http://127.0.0.1:8042 [--port 3000] [--ohif DIR]

Orthanc's credentials, when it asks for them, come from RENALNODE_ORTHANC_USER and
RENALNODE_ORTHANC_PASSWORD. The viewer has no login of its own: bind it to loopback, or put it
behind the site's authenticating reverse proxy.
"""
from __future__ import annotations

import argparse
import contextlib
import mimetypes
import os
import re
import sys
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from deploy.viewer.fetch import OHIF_DIST

CONFIG = Path(__file__).parent / "app-config.js"
ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
             "Cross-Origin-Resource-Policy": "same-origin"}
# Request headers worth passing to Orthanc; hop-by-hop and cookie headers stay here.
FORWARDED = ("accept", "accept-encoding", "range", "if-none-match", "if-modified-since", "host")
RETURNED = ("content-type", "content-length", "content-encoding", "etag", "last-modified", "cache-control",
            "content-range", "accept-ranges")
# What OHIF reads: QIDO-RS and WADO-RS under studies/series/instances. Nothing else of Orthanc's REST
# API (patients, /instances/{id}/file, servers, ...) is reachable through the viewer.
DICOMWEB_PATH = re.compile(r"(studies|series|instances)(/[0-9A-Za-z.,\-]+)*")
mimetypes.add_type("application/wasm", ".wasm")


def create_app(ohif: Path, orthanc_url: str, auth: tuple[str, str] | None = None) -> ASGIApp:
    ohif = Path(ohif).resolve()
    if not (ohif / "index.html").is_file():
        raise ValueError(f"no OHIF build at {ohif}: run `make setup` (python -m deploy.viewer.fetch)")
    client = httpx.AsyncClient(base_url=orthanc_url.rstrip("/"), auth=auth, timeout=httpx.Timeout(60, read=600))

    async def dicomweb(request: Request) -> Response:
        path = request.path_params["path"]
        # Segments of UIDs, digits and keywords only: no "..", no "%2e%2e", nothing httpx would normalise
        # into another part of Orthanc.
        if not DICOMWEB_PATH.fullmatch(path) or any(part in (".", "..") for part in path.split("/")):
            return Response("not a DICOMweb path", status_code=404)
        # Only the encodings the browser asked for (httpx would otherwise ask for gzip on its behalf).
        headers = {"accept-encoding": "identity", **{k: v for k, v in request.headers.items() if k in FORWARDED}}
        try:
            url = httpx.URL(f"/dicom-web/{path}", query=request.scope["query_string"])  # repeated keys kept as sent
        except httpx.InvalidURL:   # e.g. a '#' in the query: nothing Orthanc could be asked
            return Response("not a URL that can be forwarded", status_code=400)
        try:
            upstream = await client.send(client.build_request(request.method, url, headers=headers), stream=True)
        except httpx.TimeoutException:
            return Response("Orthanc did not answer in time", status_code=504)
        except httpx.HTTPError as exc:
            return Response(f"Orthanc is not reachable ({type(exc).__name__})", status_code=502)

        async def body():
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            finally:   # also when the browser goes away mid-transfer: the connection returns to the pool
                await upstream.aclose()

        return StreamingResponse(body(), status_code=upstream.status_code,
                                 headers={k: v for k, v in upstream.headers.items() if k in RETURNED})

    async def app_config(request: Request) -> Response:
        return FileResponse(CONFIG, media_type="text/javascript", headers={"Cache-Control": "no-cache"})

    async def static(request: Request) -> Response:
        """A file of the build, or index.html for OHIF's client-side routes."""
        path = (ohif / request.path_params["path"]).resolve()
        if path.is_relative_to(ohif) and path.is_file():
            return FileResponse(path)
        if Path(request.path_params["path"]).suffix in (".js", ".css", ".wasm", ".json", ".png", ".svg", ".woff2"):
            return Response("not found", status_code=404)   # a missing asset is an error, not the app
        return FileResponse(ohif / "index.html", headers={"Cache-Control": "no-cache"})

    async def isolate(scope, receive, send):
        async def send_isolated(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] += [(k.lower().encode(), v.encode()) for k, v in ISOLATION.items()]
            await send(message)
        await app(scope, receive, send_isolated)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        await client.aclose()

    app = Starlette(routes=[Route("/dicom-web/{path:path}", dicomweb, methods=["GET", "HEAD"]),
                            Route("/app-config.js", app_config), Route("/{path:path}", static)],
                    lifespan=lifespan)
    return isolate


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m deploy.viewer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orthanc", required=True, help="Orthanc's HTTP address, e.g. http://127.0.0.1:8042")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--ohif", type=Path, default=OHIF_DIST, help="the unpacked OHIF build")
    args = parser.parse_args(argv)
    user, password = os.environ.get("RENALNODE_ORTHANC_USER"), os.environ.get("RENALNODE_ORTHANC_PASSWORD")
    try:
        app = create_app(args.ohif, args.orthanc, (user, password) if user and password else None)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
