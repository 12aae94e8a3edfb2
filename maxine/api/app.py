"""The app factory: explicit wiring, no hidden globals."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from .. import __version__
from ..balancers import defer_learning
from ..balancers.learned import refresh_learned, watch_models
from ..models.hub import install as install_ml
from ..persistence import install as install_durability
from ..settings import Settings
from ..telemetry_recorder import install as install_telemetry_log
from .events_routes import events_routes
from .dashboard_routes import observability_routes
from .asgi import INTERNAL
from .fastpath import FastPath
from .ml_routes import ml_routes
from .operations import Maxine
from .routes import core_routes, json_response

log = logging.getLogger("maxine")


async def freeze_long_lived(maxine: Maxine, interval: float = 0.1, changes: int = 1000) -> None:
    """Keep long-lived objects out of the garbage collector's full passes.

    A full collection walks every tracked object that is not frozen, ~4 µs per
    instance and its events: 10,000 instances not yet frozen made a 40 ms pause
    (100,000: 175 ms) in which nothing is served. So after every ``changes``
    registry changes, a full collection of what is not frozen yet (~5 ms) clears
    cyclic garbage and ``gc.freeze`` moves the survivors to the permanent
    generation. Survivors of a full pass the collector made on its own (e.g.
    after the ML stack's first imports) are frozen too, so it is not repeated.
    An object that dies later is still freed by reference counting."""
    registry = maxine.registry
    frozen_at = registry.index
    full_passes = gc.get_stats()[2]["collections"]
    while True:
        await asyncio.sleep(interval)
        if registry.index - frozen_at >= changes:
            gc.collect()
        elif gc.get_stats()[2]["collections"] == full_passes:
            continue
        gc.freeze()
        frozen_at = registry.index
        full_passes = gc.get_stats()[2]["collections"]


def create_app(settings: Settings | None = None, maxine: Maxine | None = None) -> FastPath:
    """Build the ASGI app: the fast path in front of the FastAPI app.

    ``maxine.background`` holds coroutine functions started with the app and
    cancelled at shutdown; feature modules append to it."""
    settings = settings or (maxine.settings if maxine else Settings())
    maxine = maxine or Maxine(settings)
    install_durability(maxine)  # events, persistence, the lease sweeper (self-preservation), MQTT
    install_telemetry_log(maxine)  # opt-in telemetry log
    install_ml(maxine)  # online learners, forecasts, inference cache
    maxine.background += [watch_models, refresh_learned]  # advanced-ml: hot reload, cache refresh off /discover
    maxine.background.append(defer_learning)  # client reports: the strategies settle once per loop iteration
    maxine.background.append(freeze_long_lived)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        tasks = [asyncio.create_task(job(maxine)) for job in maxine.background]
        # Startup objects live forever: keep them out of the collector's full scans.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for hook in getattr(maxine, "shutdown_hooks", ()):
                try:
                    hook()
                except Exception:
                    log.exception("shutdown hook failed")

    api = FastAPI(title="Maxine", version=__version__, lifespan=lifespan,
                  description="Service registry and naming server with adaptive and learned load balancing.")
    api.state.maxine = maxine
    api.include_router(core_routes(maxine))
    api.include_router(observability_routes(maxine))
    api.include_router(events_routes(maxine))
    api.include_router(ml_routes(maxine))

    @api.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        message = {404: f"Not found: {request.url.path[:200]}", 405: "Method not allowed"}.get(exc.status_code, exc.detail)
        return json_response(exc.status_code, {"error": message})

    @api.exception_handler(RequestValidationError)
    async def validation_error(request, exc: RequestValidationError):
        details = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return json_response(400, {"error": "Validation failed", "details": details})

    @api.exception_handler(Exception)
    async def internal_error(request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return json_response(500, INTERNAL)

    front = FastPath(maxine, api, enabled=settings.fast_path)
    front.api = api
    return front
