"""The core HTTP contract as FastAPI routes (documented at ``/docs``).

Hot routes are normally answered by :mod:`maxine.api.fastpath` before they
reach these; the routes here serve them when the fast path is off and keep
them in the OpenAPI document. Both call the same :class:`Maxine` methods.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from .asgi import BadJson, BodyTooLarge, json_response, read_json
from .events_routes import blocking_service
from .operations import Maxine
from .validation import MAX_REPORTS


def body_schema(required: list[str], properties: dict, example: dict) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"type": "object", "required": required, "properties": properties}, "example": example}}}}


NODE_ID = {"nodeId": {"type": "string"}}
REGISTER_BODY = body_schema(
    ["serviceName", "host", "port"],
    {"serviceName": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,100}$"},
     "host": {"type": "string", "maxLength": 253},
     "port": {"type": "integer", "minimum": 1, "maximum": 65535},
     "ttl": {"type": "number", "minimum": 1, "maximum": 86400, "description": "lease TTL in seconds"},
     "metadata": {"type": "object", "description": "version, weight, tags, healthCheck, region, zone, lat, lon, cost, anything else"}},
    {"serviceName": "orders", "host": "10.0.0.5", "port": 8080,
     "metadata": {"version": "1.2.0", "weight": 2, "tags": ["web"], "zone": "eu-1a"}})
HEARTBEAT_BODY = body_schema(
    ["nodeId"],
    {**NODE_ID, "inFlight": {"type": "number", "minimum": 0}, "cpu": {"type": "number", "minimum": 0, "maximum": 1},
     "qps": {"type": "number", "minimum": 0}, "errorRate": {"type": "number", "minimum": 0, "maximum": 1},
     "latencyMs": {"type": "number", "minimum": 0}},
    {"nodeId": "orders:10.0.0.5:8080", "inFlight": 3, "cpu": 0.41, "qps": 120, "errorRate": 0.0, "latencyMs": 12.5})
DEREGISTER_BODY = body_schema(["nodeId"], NODE_ID, {"nodeId": "orders:10.0.0.5:8080"})
RESPONSE_TIME_BODY = body_schema(
    ["nodeId", "responseTime"],
    {**NODE_ID, "responseTime": {"type": "number", "minimum": 0, "description": "milliseconds"},
     "success": {"type": "boolean", "default": True}, "statusCode": {"type": "integer"}},
    {"nodeId": "orders:10.0.0.5:8080", "responseTime": 14.2, "success": True})
RESPONSE_TIMES_BODY = body_schema(
    ["reports"],
    {"reports": {"type": "array", "minItems": 1, "maxItems": MAX_REPORTS,
                 "items": RESPONSE_TIME_BODY["requestBody"]["content"]["application/json"]["schema"]}},
    {"reports": [{"nodeId": "orders:10.0.0.5:8080", "responseTime": 14.2, "success": True},
                 {"nodeId": "orders:10.0.0.6:8080", "responseTime": 210.0, "success": False, "statusCode": 503}]})
CALL_BODY = body_schema(["callerService", "calledService"],
                        {"callerService": {"type": "string"}, "calledService": {"type": "string"}},
                        {"callerService": "web", "calledService": "orders"})


# The JSON-body writes: served by the fast path (see body_operations) and
# documented here. (method, path, Maxine method, request body, tag, summary)
BODY_ROUTES = [
    ("POST", "/register", "register", REGISTER_BODY, "registry",
     "Register an instance, or refresh its lease and replace its metadata"),
    ("POST", "/heartbeat", "heartbeat", HEARTBEAT_BODY, "registry", "Renew a lease, optionally with a load report"),
    ("DELETE", "/deregister", "deregister", DEREGISTER_BODY, "registry", "Remove an instance (idempotent, terminal)"),
    ("POST", "/record-response-time", "record_response_time", RESPONSE_TIME_BODY, "telemetry",
     "Report how a call to an instance went"),
    ("POST", "/record-response-times", "record_response_times", RESPONSE_TIMES_BODY, "telemetry",
     f"Report how several calls went, in order, in one request (up to {MAX_REPORTS}; the Python clients batch this way)"),
    ("POST", "/record-call", "record_call", CALL_BODY, "telemetry",
     "Record a caller → called edge of the dependency graph"),
]


def body_operations(maxine: Maxine) -> dict:
    """{(method, path): operation} for the fast path."""
    return {(method, path): getattr(maxine, operation) for method, path, operation, *_ in BODY_ROUTES}


def _body_endpoint(with_body, operation):
    async def endpoint(request: Request):
        return await with_body(request, operation)
    return endpoint


def core_routes(maxine: Maxine) -> APIRouter:
    router = APIRouter()
    limit = maxine.settings.max_body_bytes

    async def with_body(request: Request, operation) -> Response:
        try:
            body = await read_json(request.scope, request.receive, limit)
        except (BodyTooLarge, BadJson) as exc:
            return json_response(*exc.answer)
        return json_response(*operation(body))

    for method, path, operation, body, tag, summary in BODY_ROUTES:
        router.add_api_route(path, _body_endpoint(with_body, getattr(maxine, operation)), methods=[method],
                             name=operation, openapi_extra=body, tags=[tag], summary=summary)

    @router.get("/discover", tags=["discovery"], summary="Pick an instance (fast path)")
    async def discover(request: Request,
                       serviceName: str | None = Query(None, description="service to discover (required)"),
                       loadBalancing: str | None = Query(None, description="strategy; default round-robin"),
                       version: str | None = Query(None, description="exact version, or 'latest'"),
                       tags: str | None = Query(None, description="comma-separated; all must be present"),
                       clientId: str | None = Query(None, description="key for consistent-hash"),
                       lat: str | None = Query(None), lon: str | None = Query(None),
                       zone: str | None = Query(None), region: str | None = Query(None)):
        return json_response(*maxine.discover(request.scope["query_string"], request.scope))

    @router.get("/servers", tags=["registry"], summary="Names of services with live instances")
    async def servers():
        return json_response(*maxine.servers())

    @router.get("/services/{service_name}", tags=["registry"],
                summary="A service's live instances; with ?index=N blocks until it changes past N")
    async def service(service_name: str,
                      index: str | None = Query(None, description="block until the service's index exceeds this"),
                      wait: str | None = Query(None, description="longest block, e.g. 30s or 5m (default 5m)")):
        return await blocking_service(maxine, service_name, index, wait)  # sets X-Maxine-Index

    @router.get("/health", tags=["health"], summary="Registry status and counts")
    async def health():
        return json_response(*maxine.health())

    @router.get("/health/{node_id:path}", tags=["health"], summary="One instance with its lease and load")
    async def node_health(node_id: str):
        return json_response(*maxine.node_health(node_id))

    @router.get("/versions", tags=["registry"], summary="Versions of a service, in semantic order")
    async def versions(serviceName: str | None = Query(None)):
        return json_response(*maxine.versions(serviceName))

    @router.get("/metrics", tags=["health"], summary="Counters as JSON")
    async def metrics():
        return json_response(*maxine.metrics())

    return router
