"""Change events over HTTP: history, SSE, WebSocket, blocking queries, backup/restore.

- ``GET /events?since=N&limit=L`` — retained events with id > N (oldest first).
- ``GET /events/stream`` — Server-Sent Events; resumes after ``Last-Event-ID``
  (or ``?since=``) without loss or repetition while the history reaches back;
  otherwise it first sends one ``resync`` event (refetch state, then go on).
- ``/ws`` — WebSocket; ``{"subscribe": {"event", "serviceName", "nodeId"}}``
  sets filters (all events until then), ``{"unsubscribe": true}`` stops them.
- ``GET /services/{name}?index=N&wait=30s`` — Consul-style blocking query,
  served by :func:`blocking_service` (the route lives in ``routes.py``).
- ``GET /backup`` / ``POST /restore`` — the whole state as one document.
"""

from __future__ import annotations

import asyncio
import random
import re

import orjson
from fastapi import APIRouter, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response, StreamingResponse

from ..persistence import state
from ..registry.events import RESYNC, Event
from .asgi import BadJson, BodyTooLarge, json_response, read_json
from .operations import Maxine

MAX_WAIT = 600.0
DEFAULT_WAIT = 300.0
KEEPALIVE = 15.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_duration(text: str) -> float | None:
    """'30s', '5m', '250ms', '1h' or plain seconds; None if unreadable."""
    m = _DURATION.match(text or "")
    if not m:
        return None
    value = float(m.group(1))
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}[m.group(2)]


def _int_param(value: str | None, name: str, problems: list, lo: int = 0) -> int | None:
    if value is None or value == "":
        return None
    try:
        n = int(value)
    except ValueError:
        problems.append(f"{name}: must be an integer >= {lo}")
        return None
    if n < lo:
        problems.append(f"{name}: must be an integer >= {lo}")
        return None
    return n


async def blocking_service(maxine: Maxine, name: str, index: str | None, wait: str | None) -> Response:
    """``GET /services/{name}``, blocking while ``?index=`` is current."""
    problems: list[str] = []
    after = _int_param(index, "index", problems)
    timeout = DEFAULT_WAIT
    if wait is not None:
        parsed = parse_duration(wait)
        if parsed is None:
            problems.append("wait: a duration such as 30s, 5m or 250ms")
        else:
            timeout = min(parsed, MAX_WAIT)
    if problems:
        return json_response(400, {"error": "Validation failed", "details": problems})
    hub = maxine.events
    if after is not None and hub is not None:
        # Consul adds up to wait/16 of jitter so that watchers don't return in lockstep.
        await hub.wait_for(name, after, timeout + random.uniform(0, timeout / 16))
    status, payload = maxine.service(name)
    current = hub.index_of(name) if hub is not None else payload.get("index", 0)
    return json_response(status, payload, {"X-Maxine-Index": str(current)})


def _filters(event: str | None, service_name: str | None, node_id: str | None) -> dict:
    return {k: v for k, v in (("event", event), ("service_name", service_name), ("node_id", node_id)) if v}


def events_routes(maxine: Maxine) -> APIRouter:
    router = APIRouter()

    @router.get("/events", tags=["events"], summary="Change history after an event id (bounded)")
    async def events(since: str | None = Query(None, description="return events with id > since (default 0)"),
                     limit: str | None = Query(None, description="at most this many (default 1000, max 10000)"),
                     serviceName: str | None = Query(None), event: str | None = Query(None),
                     nodeId: str | None = Query(None)):
        problems: list[str] = []
        after = _int_param(since, "since", problems) or 0
        count = _int_param(limit, "limit", problems, lo=1) or 1000
        if problems:
            return json_response(400, {"error": "Validation failed", "details": problems})
        hub = maxine.events
        found, complete = hub.since(after, min(count, 10000), **_filters(event, serviceName, nodeId))
        body = b'{"lastId":%d,"complete":%s,"oldestId":%s,"events":[%s]}' % (
            hub.last_id, b"true" if complete else b"false",
            str(hub.oldest_id()).encode() if hub.oldest_id() is not None else b"null",
            b",".join(e.json for e in found))
        return json_response(200, body)

    @router.get("/events/stream", tags=["events"], summary="Server-Sent Events; resume with Last-Event-ID")
    async def stream(request: Request, serviceName: str | None = Query(None), event: str | None = Query(None),
                     nodeId: str | None = Query(None),
                     since: str | None = Query(None, description="resume after this id (Last-Event-ID wins)")):
        problems: list[str] = []
        resume = _int_param(request.headers.get("last-event-id") or since, "Last-Event-ID", problems)
        if problems:
            return json_response(400, {"error": "Validation failed", "details": problems})
        hub = maxine.events
        sub, backlog, complete = hub.subscribe(resume, **_filters(event, serviceName, nodeId))
        start_id = hub.last_id

        async def frames():
            try:
                yield b"retry: 1000\n\n"
                if not complete:
                    # History no longer reaches back to the client's id: tell it to refetch.
                    resync = Event(start_id, RESYNC, None, None, {"lastId": start_id, "requested": resume}, 0.0)
                    yield resync.sse
                    last = start_id
                else:
                    last = resume if resume is not None else 0
                    if backlog:
                        yield b"".join(e.sse for e in backlog)
                        last = backlog[-1].id
                queue = sub.queue
                while True:
                    try:
                        ev = await asyncio.wait_for(queue.get(), KEEPALIVE)
                    except asyncio.TimeoutError:
                        if sub.overflowed:
                            return
                        yield b": keepalive\n\n"
                        continue
                    if ev.id <= last:
                        continue  # already sent from the backlog
                    chunk = [ev.sse]
                    while not queue.empty():  # coalesce a burst into one write
                        more = queue.get_nowait()
                        if more.id > ev.id:
                            chunk.append(more.sse)
                            ev = more
                    last = ev.id
                    yield b"".join(chunk)
                    if sub.overflowed and queue.empty():
                        return  # fell behind: the client resumes from its last id
            finally:
                hub.unsubscribe(sub)

        return StreamingResponse(frames(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                                          "X-Maxine-Index": str(start_id)})

    @router.websocket("/ws")
    async def ws(socket: WebSocket):
        await socket.accept()
        hub = maxine.events
        sub, _, _ = hub.subscribe(None)
        sender: asyncio.Task | None = None

        async def pump(current):
            while True:
                ev = await current.queue.get()
                await socket.send_text(ev.json.decode())
                if current.overflowed and current.queue.empty():
                    await socket.close(code=1013, reason="subscriber fell behind; reconnect with since")
                    return

        try:
            sender = asyncio.create_task(pump(sub))
            while True:
                raw = await socket.receive_text()
                try:
                    msg = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    await socket.send_text('{"type":"error","error":"Invalid JSON"}')
                    continue
                if not isinstance(msg, dict):
                    await socket.send_text('{"type":"error","error":"Expected a JSON object"}')
                    continue
                if "subscribe" in msg:
                    spec = msg["subscribe"] if isinstance(msg["subscribe"], dict) else {}
                    bad = [k for k, v in spec.items() if k in ("event", "serviceName", "nodeId")
                           and v is not None and not isinstance(v, str)]
                    if bad:
                        await socket.send_text(orjson.dumps({"type": "error", "error": f"{bad[0]}: must be a string"}).decode())
                        continue
                    since = spec.get("since")
                    since = since if isinstance(since, int) and not isinstance(since, bool) and since >= 0 else None
                    sender.cancel()
                    hub.unsubscribe(sub)
                    sub, backlog, complete = hub.subscribe(since, **_filters(spec.get("event"), spec.get("serviceName"),
                                                                            spec.get("nodeId")))
                    await socket.send_text(orjson.dumps({"type": "subscribed", "filters": {
                        k: spec.get(k) for k in ("event", "serviceName", "nodeId") if spec.get(k)},
                        "lastId": hub.last_id, "complete": complete}).decode())
                    for ev in backlog:
                        await socket.send_text(ev.json.decode())
                    sender = asyncio.create_task(pump(sub))
                elif msg.get("unsubscribe"):
                    sender.cancel()
                    hub.unsubscribe(sub)
                    sub = type(sub)()  # an idle subscriber nobody feeds
                    sender = asyncio.create_task(pump(sub))
                    await socket.send_text('{"type":"unsubscribed"}')
                else:
                    await socket.send_text('{"type":"error","error":"Expected {\\"subscribe\\": {...}} or {\\"unsubscribe\\": true}"}')
        except WebSocketDisconnect:
            pass
        finally:
            if sender is not None:
                sender.cancel()
            hub.unsubscribe(sub)

    @router.get("/backup", tags=["registry"], summary="The whole registry state as one document")
    async def backup():
        return json_response(200, state.dump(maxine.registry, maxine.clock()))

    @router.post("/restore", tags=["registry"], summary="Replace the registry state with a backup (validated, all or nothing)")
    async def restore(request: Request):
        blocked = maxine.write_blocked()
        if blocked is not None:
            return json_response(*blocked)
        try:
            doc = await read_json(request.scope, request.receive, max(maxine.settings.max_body_bytes, 64 << 20))
        except BodyTooLarge:
            return json_response(*BodyTooLarge.answer)
        except BadJson:
            return json_response(400, {"error": "Invalid JSON; nothing was restored"})
        problems = state.validate(doc)
        if problems:
            return json_response(400, {"error": "Invalid state document; nothing was restored", "details": problems})
        loaded = state.apply(maxine.registry, doc)
        return json_response(200, {"success": True, "instances": loaded, "index": maxine.registry.index})

    return router
