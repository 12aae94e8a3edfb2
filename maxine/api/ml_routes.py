"""The ML endpoints: health scores, predictions, anomalies, scaling, models.

All of them read the hub's inference cache (:mod:`maxine.models.hub`); none
fits a model. See ``docs/ml-endpoints.md`` for the shapes.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Query

from . import validation
from .operations import Maxine
from .asgi import json_response

log = logging.getLogger("maxine.ml")

MAX_WINDOW_MS = 86_400_000


def _service(name: str | None):
    if not name:
        return None, json_response(400, {"error": "Missing serviceName"})
    if validation.service_name(name) is None:
        return None, json_response(400, {"error": "Invalid serviceName"})
    return name, None


def _hub(maxine):
    hub = getattr(maxine, "ml", None)
    if hub is None:
        from ..models.hub import install
        hub = install(maxine)
    return hub


def ml_routes(maxine: Maxine) -> APIRouter:
    router = APIRouter()

    @router.get("/health-score", tags=["ml"], summary="Health score 0-100 per live node of a service")
    async def health_score(serviceName: str | None = Query(None)):
        name, err = _service(serviceName)
        if err:
            return err
        scores = _hub(maxine).health_scores(name)
        if scores is None:
            return json_response(404, {"error": f"Unknown service: {name}"})
        return json_response(200, {"serviceName": name, "scores": scores})

    @router.get("/predict-health", tags=["ml"],
                summary="Forecast score, latency and error rate per node `window` ms ahead (statsmodels Holt)")
    async def predict_health(serviceName: str | None = Query(None), window: str | None = Query(None)):
        name, err = _service(serviceName)
        if err:
            return err
        window_ms = 300_000
        if window not in (None, ""):
            try:
                window_ms = int(float(window))
            except ValueError:
                return json_response(400, {"error": "window must be a number of milliseconds"})
            if not 0 < window_ms <= MAX_WINDOW_MS:
                return json_response(400, {"error": f"window must be in (0, {MAX_WINDOW_MS}] ms"})
        status, payload = _hub(maxine).predict_health(name, window_ms)
        return json_response(status, payload)

    @router.get("/anomalies", tags=["ml"], summary="Open anomalies, most severe first")
    async def anomalies(serviceName: str | None = Query(None)):
        if serviceName is not None:
            name, err = _service(serviceName)
            if err:
                return err
        status, payload = _hub(maxine).anomalies(serviceName)
        return json_response(status, payload)

    async def scaling(serviceName: str | None = Query(None)):
        name, err = _service(serviceName)
        if err:
            return err
        status, payload = _hub(maxine).scaling(name)
        return json_response(status, payload)

    for path in ("/scaling/recommendations", "/api/maxine/serviceops/scaling/recommendations"):
        router.add_api_route(path, scaling, methods=["GET"], tags=["ml"],
                             summary="Scale up/down from forecast load vs observed per-instance capacity")

    @router.get("/models", tags=["ml"], summary="Every model: kind, version, trained at, rows, errors, freshness")
    async def models():
        from ..models.hub import models_status
        _hub(maxine)
        return json_response(200, {"models": models_status(maxine)})

    @router.post("/models/reload", tags=["ml"], summary="Reload the trained models' exported weights")
    async def reload_models():
        """Reload every trained model now (advanced-ml, anomaly, forecast), in a worker thread; a refused
        artifact is reported in that model's status and the previous one keeps serving."""
        fn = getattr(maxine, "reload_models", None)
        if callable(fn):
            targets = {"advanced-ml": fn}
        else:
            targets = {}
            strategy = maxine.balancers.get("advanced-ml")
            store = getattr(strategy, "store", None) if strategy is not None else None
            if store is None and strategy is not None and callable(getattr(strategy, "_store", None)):
                try:
                    store = strategy._store()
                except Exception as exc:
                    return json_response(200, {"reloaded": False, "error": f"{type(exc).__name__}: {exc}"[:300]})
            if callable(getattr(store, "reload", None)):
                targets["advanced-ml"] = store.reload
            for name, hub_store in getattr(_hub(maxine), "stores", {}).items():
                targets[name] = hub_store.reload
        if not targets:
            return json_response(200, {"reloaded": False, "message":
                                       "No trained model to reload: the online models (river) learn continuously "
                                       "and the forecasts refit on their timer."})
        results = {}
        try:
            for name, target in targets.items():
                try:
                    results[name] = await asyncio.to_thread(target, force=True)
                except TypeError:
                    results[name] = await asyncio.to_thread(target)
        except Exception as exc:
            log.exception("model reload failed")
            return json_response(200, {"reloaded": False, "error": f"{type(exc).__name__}: {exc}"[:300]})

        def plain(x):
            return x if isinstance(x, (dict, list, str, int, float, bool, type(None))) else str(x)

        first = next(iter(results))
        return json_response(200, {"reloaded": True, "result": plain(results[first]),
                                   "models": {name: plain(r) for name, r in results.items()}})

    return router
