"""Observability routes: Prometheus exposition, the dashboard and the dependency graph.

The pages are static files in ``maxine/api/static`` served by the app itself
(the machines have no internet, so no CDN); their JavaScript polls a JSON
endpoint every couple of seconds. Charts are small hand-written SVG: two chart
kinds (lines with a band, stacked shares) do not justify a charting library.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .asgi import encode
from .observability import CONTENT_TYPE, attach
from .operations import Maxine

STATIC_DIR = Path(__file__).with_name("static")
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff",
                    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"}


def _load_static() -> dict[str, tuple[bytes, str, str]]:
    files = {}
    for path in STATIC_DIR.iterdir():
        if path.is_file() and path.suffix in MEDIA_TYPES:
            body = path.read_bytes()
            files[path.name] = (body, MEDIA_TYPES[path.suffix], '"' + hashlib.sha256(body).hexdigest()[:16] + '"')
    return files


def _json(payload, status: int = 200) -> Response:
    return Response(encode(payload), status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


def observability_routes(maxine: Maxine) -> APIRouter:
    """Routes for ``/metrics/prometheus``, ``/dashboard`` and ``/dependency-graph``;
    also starts the dashboard's background sampler with the app."""
    obs = attach(maxine)
    if obs.run_sampler not in maxine.background:
        maxine.background.append(obs.run_sampler)
    static = _load_static()
    router = APIRouter()

    def asset(name: str, request: Request) -> Response:
        found = static.get(name)
        if found is None:
            return _json({"error": f"Not found: {name[:100]}"}, 404)
        body, media_type, etag = found
        headers = {"ETag": etag, "Cache-Control": "no-cache", **SECURITY_HEADERS}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=media_type, headers=headers)

    @router.get("/metrics/prometheus", tags=["health"], summary="Metrics in the Prometheus text format")
    async def prometheus():
        return Response(obs.exposition(), media_type=CONTENT_TYPE)

    @router.get("/dashboard", tags=["dashboard"], summary="The live dashboard (HTML)")
    async def dashboard(request: Request):
        return asset("dashboard.html", request)

    @router.get("/dashboard/data", tags=["dashboard"], summary="Everything the dashboard shows, as JSON")
    async def dashboard_data():
        return _json(obs.dashboard_data())

    @router.get("/dashboard/static/{name}", tags=["dashboard"], summary="Dashboard scripts and styles",
                include_in_schema=False)
    async def dashboard_static(name: str, request: Request):
        return asset(name, request)

    @router.get("/dependency-graph", tags=["dashboard"],
                summary="The call graph from /record-call: an SVG page for browsers, JSON otherwise")
    async def dependency_graph(request: Request):
        accept = request.headers.get("accept", "")
        if "text/html" in accept and request.query_params.get("format") != "json":
            return asset("dependency-graph.html", request)
        return _json(maxine.calls.to_json())

    @router.get("/dependency-graph/data", tags=["dashboard"], summary="The call graph as JSON")
    async def dependency_graph_data():
        return _json(maxine.calls.to_json())

    return router
