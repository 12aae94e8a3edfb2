"""Redis mode: several Maxine replicas share one registry through Redis.

Redis holds the state; each replica keeps its in-memory registry as a copy
that discovery reads (discovery never waits for Redis). Keys, under
``<prefix>:``:

    inst      hash  nodeId -> instance record (JSON, Instance.to_record)
    dl        hash  nodeId -> lease deadline (seconds since the epoch; authoritative)
    expiries  int   expiries decided (exactly one replica decides each)
    changes   pub/sub channel: {"o": replica, "t": put|del|dl, ...}

Writes (register, deregister, restore) go through the registry's listener
to Redis synchronously — one pipelined round trip — so they are
acknowledged only once Redis has them; then they are published and every
other replica applies them to its copy (typically well under 10 ms).
Heartbeats renew leases locally and are flushed in batches every 100 ms
with a "only move forward, never resurrect" script, carrying the instance's
load report so every replica's balancers see it.

A due lease is expired by a Lua script that deletes it only if the deadline
in Redis has really passed; the replica whose script deleted it publishes the
expiry, so an expiry happens once however many replicas sweep.

If Redis is unreachable: discovery goes on from the local copy, writes get
503 (a write caught mid-failure is kept locally and written on reconnect),
evictions pause (no replica can decide them), ``/health`` says ``degraded``.
On reconnect the replica writes what it kept, re-subscribes, and reloads
the full state from Redis, applying the differences as events.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid

import orjson
import redis
import redis.asyncio as aredis

from ..registry import DEREGISTERED, EXPIRED, Change
from . import state

log = logging.getLogger("maxine.redis")

EXPIRE_LUA = """
local now = tonumber(ARGV[1])
local out = {}
for i = 3, #ARGV do
  local n = ARGV[i]
  local d = redis.call('HGET', KEYS[1], n)
  if not d then
    out[#out + 1] = '0'
  elseif tonumber(d) <= now then
    redis.call('HDEL', KEYS[1], n)
    redis.call('HDEL', KEYS[2], n)
    redis.call('INCR', KEYS[3])
    redis.call('PUBLISH', KEYS[4], cjson.encode({o = ARGV[2], t = 'del', n = n, k = 'service_expired'}))
    out[#out + 1] = '1'
  else
    out[#out + 1] = d
  end
end
return out
"""

RENEW_LUA = """
local moved = 0
for i = 1, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if cur and tonumber(ARGV[i + 1]) > tonumber(cur) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    moved = moved + 1
  end
end
return moved
"""

LOAD_FIELDS = (("in_flight", "reported_in_flight"), ("cpu", "cpu"), ("qps", "qps"),
               ("error_rate", "error_rate"), ("latency_ms", "reported_latency_ms"))


class RedisStore:
    kind = "redis"

    def __init__(self, maxine, url: str, prefix: str, flush_interval: float = 0.1):
        self.maxine = maxine
        self.registry = maxine.registry
        self.url = url
        self.prefix = prefix
        self.flush_interval = flush_interval
        self.origin = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.k_inst, self.k_dl, self.k_exp, self.k_chan, self.k_epoch = (
            f"{prefix}:{k}" for k in ("inst", "dl", "expiries", "changes", "epoch"))
        self.sync = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5,
                                         retry_on_timeout=False)
        self.writable = False
        self.healthy = False
        self.pending: list[tuple] = []       # writes kept locally while Redis was away
        self.renewed: dict[str, object] = {}
        self._remote = False                 # applying a change that came from Redis
        self._expiring = False               # local removal of an expiry Redis already decided
        self.expired_here = 0
        self.applied = 0
        self.outages = 0
        self.down_since: float | None = None
        self.last_error: str | None = None

    # --- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        """Load the shared state (before serving) and start listening to changes."""
        try:
            doc = self._fetch_sync()
            state.load_quietly(self.registry, doc)
            self._set_up()
        except redis.RedisError as exc:
            self._set_down(exc)
            log.warning("Redis unavailable at startup (%s): serving an empty local copy; writes get 503", exc)
        self.registry.listeners.insert(0, self.on_change)
        self.registry.on_renew = self.on_renew

    def _fetch_sync(self) -> dict:
        self.sync.set(self.k_epoch, self.origin, nx=True)
        pipe = self.sync.pipeline(transaction=True)
        pipe.hgetall(self.k_inst)
        pipe.hgetall(self.k_dl)
        insts, deadlines = pipe.execute()
        return self._doc(insts, deadlines)

    def _doc(self, insts: dict, deadlines: dict) -> dict:
        records = []
        for node, raw in insts.items():
            rec = orjson.loads(raw)
            d = deadlines.get(node)
            if d is not None:
                rec["deadline"] = float(d)
            records.append(rec)
        return {"format": state.FORMAT, "version": state.VERSION, "index": self.registry.index,
                "services": {}, "instances": records}

    def _set_up(self) -> None:
        if not self.writable:
            log.info("Redis available at %s", self.url)
        self.writable = self.healthy = True
        self.down_since = None
        if self.maxine.sweeper is not None:
            self.maxine.sweeper.paused_reason = None

    def _set_down(self, exc: Exception) -> None:
        if self.writable or self.down_since is None:
            self.outages += 1
            self.down_since = time.time()
            log.warning("Redis unreachable (%s): discovery continues from the local copy; writes get 503", exc)
        self.writable = self.healthy = False
        self.last_error = str(exc)[:200]
        if self.maxine.sweeper is not None:
            self.maxine.sweeper.paused_reason = "redis unavailable"

    def unavailable_message(self) -> str:
        return ("Registry store (Redis) unavailable: writes are refused until it returns; "
                "discovery keeps answering from this replica's copy")

    def close(self) -> None:
        try:
            self.sync.close()
        except Exception:
            pass

    # --- local changes -> Redis ----------------------------------------------------
    def on_change(self, change: Change) -> None:
        if self._remote or self._expiring:
            return
        if change.kind == EXPIRED:
            op = ("expire", change.node_id, None)
        elif change.kind == DEREGISTERED:
            op = ("del", change.node_id, change.kind)
        else:
            op = ("put", change.node_id, self.registry.nodes[change.node_id].to_record())
            self.renewed.pop(change.node_id, None)
        if not self.writable:
            self.pending.append(op)
            return
        try:
            self._write(op)
        except redis.RedisError as exc:
            self.pending.append(op)
            self._set_down(exc)

    def _write(self, op: tuple) -> None:
        kind, node, payload = op
        if kind == "expire":  # expired outside the sweeper (e.g. discovery found it dead)
            result = self.sync.eval(EXPIRE_LUA, 4, self.k_dl, self.k_inst, self.k_exp, self.k_chan,
                                    repr(time.time()), self.origin, node)
            if result and result[0] not in (b"0", b"1"):  # renewed on another replica: take it back
                asyncio.get_running_loop().call_soon(self._refetch, node)
            return
        pipe = self.sync.pipeline(transaction=True)
        if kind == "put":
            pipe.hset(self.k_inst, node, orjson.dumps(payload))
            pipe.hset(self.k_dl, node, repr(payload["deadline"]))
            pipe.publish(self.k_chan, orjson.dumps({"o": self.origin, "t": "put", "r": payload}))
        else:
            pipe.hdel(self.k_inst, node)
            pipe.hdel(self.k_dl, node)
            pipe.publish(self.k_chan, orjson.dumps({"o": self.origin, "t": "del", "n": node, "k": payload}))
        pipe.execute()

    def _refetch(self, node: str) -> None:
        try:
            raw, d = self.sync.hget(self.k_inst, node), self.sync.hget(self.k_dl, node)
        except redis.RedisError:
            return
        if raw is not None and d is not None:
            rec = orjson.loads(raw)
            rec["deadline"] = float(d)
            self._apply_put(rec)

    def on_renew(self, inst) -> None:
        if not self._remote:
            self.renewed[inst.node_id] = inst

    # --- sweeper hook: expire exactly once across replicas -------------------------------
    async def expire(self, insts: list) -> int:
        registry = self.registry
        insts = [i for i in insts if registry.nodes.get(i.node_id) is i]
        if not insts:
            return 0
        try:
            result = await self.client.eval(EXPIRE_LUA, 4, self.k_dl, self.k_inst, self.k_exp, self.k_chan,
                                            repr(time.time()), self.origin, *[i.node_id for i in insts])
        except redis.RedisError as exc:
            self._set_down(exc)
            self.maxine.sweeper.hold(insts, registry.clock())
            return 0
        expired = 0
        self._expiring = True
        try:
            for inst, res in zip(insts, result):
                if registry.nodes.get(inst.node_id) is not inst:
                    continue
                if res == b"1":
                    registry.expire(inst)
                    self.expired_here += 1
                    expired += 1
                elif res == b"0":  # gone from Redis: another replica expired or removed it
                    registry.expire(inst)
                else:  # another replica renewed it
                    registry.set_deadline(inst, float(res))
        finally:
            self._expiring = False
        return expired

    # --- Redis -> local copy --------------------------------------------------------------
    def _apply(self, msg: dict) -> None:
        if msg.get("o") == self.origin:
            return
        self._remote = True
        try:
            kind = msg.get("t")
            if kind == "put":
                self._apply_put(msg["r"])
            elif kind == "del":
                inst = self.registry.nodes.get(msg["n"])
                if inst is not None:
                    if msg.get("k") == "service_expired":
                        self.registry.expire(inst)
                    else:
                        self.registry.deregister(msg["n"])
            elif kind == "dl":
                now = self.registry.clock()
                for node, deadline, last, load in msg["d"]:
                    inst = self.registry.nodes.get(node)
                    if inst is None:
                        continue
                    if deadline > inst.deadline:
                        self.registry.set_deadline(inst, deadline, last)
                    if load:
                        inst.state.on_load_report(now, **load)
            self.applied += 1
        finally:
            self._remote = False

    def _apply_put(self, rec: dict) -> None:
        registry = self.registry
        was_remote, self._remote = self._remote, True
        try:
            node = f"{rec['serviceName']}:{rec['host']}:{rec['port']}"
            inst = registry.nodes.get(node)
            if inst is None or not inst.alive(registry.clock()):
                registry.restore_instance(rec)
                return
            if (rec.get("metadata") or {}) != inst.metadata or float(rec["ttl"]) != inst.ttl:
                keep = inst.deadline, inst.last_heartbeat
                registry.register(rec["serviceName"], rec["host"], int(rec["port"]), rec.get("metadata") or {},
                                  rec["ttl"])
                inst.deadline, inst.last_heartbeat = keep
                inst.registered_at = rec.get("registeredAt", inst.registered_at)
            if float(rec["deadline"]) > inst.deadline:  # leases only move forward here
                registry.set_deadline(inst, float(rec["deadline"]), rec.get("lastHeartbeat", inst.last_heartbeat))
            else:
                registry.leases.schedule(inst)
        finally:
            self._remote = was_remote

    def _resync(self, doc: dict) -> None:
        """Make the local copy equal to Redis, emitting the differences as events."""
        wanted = {f"{r['serviceName']}:{r['host']}:{r['port']}": r for r in doc["instances"]}
        self._remote = True
        try:
            for node in [n for n in self.registry.nodes if n not in wanted]:
                self.registry.deregister(node)
            for rec in wanted.values():
                self._apply_put(rec)
        finally:
            self._remote = False

    # --- background -------------------------------------------------------------------------
    async def run(self, maxine) -> None:
        self.client = aredis.Redis.from_url(self.url, socket_timeout=2.0, socket_connect_timeout=0.5)
        tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._flush_loop())]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.client.aclose()

    async def _listen(self) -> None:
        """Subscribe, then (re)load the full state, then apply changes as they come."""
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.k_chan)
                await self._catch_up()  # whatever changed before we (re)subscribed
                self._set_up()
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        try:
                            self._apply(orjson.loads(msg["data"]))
                        except Exception:
                            log.exception("could not apply a change from Redis; resyncing")
                            await self._catch_up()
                    elif msg is None:
                        await self.client.ping()  # notices a dead connection within a second
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as exc:
                self._set_down(exc)
                await asyncio.sleep(0.25)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    pass

    async def _catch_up(self) -> None:
        """Write what was kept locally, then reload everything from Redis."""
        pending, self.pending = self.pending, []
        if not await self.client.exists(self.k_epoch):
            # Redis came back without its data (no persistence configured): re-seed it
            # from this replica's copy; every replica doing so writes the same records.
            await self.client.set(self.k_epoch, self.origin, nx=True)
            pending = [("put", n, i.to_record()) for n, i in self.registry.nodes.items()] + pending
            log.warning("Redis lost its registry state; re-seeding it with %d local instances", len(self.registry.nodes))
        try:
            for op in pending:
                self._write(op)
        except redis.RedisError:
            self.pending = pending + self.pending
            raise
        pipe = self.client.pipeline(transaction=True)
        pipe.hgetall(self.k_inst)
        pipe.hgetall(self.k_dl)
        insts, deadlines = await pipe.execute()
        self._resync(self._doc(insts, deadlines))
        log.info("caught up with Redis: %d instances (%d kept writes replayed)", len(insts), len(pending))

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            if not self.renewed or not self.writable:
                continue
            batch, self.renewed = self.renewed, {}
            live = [(n, i) for n, i in batch.items() if self.registry.nodes.get(n) is i]
            if not live:
                continue
            argv = []
            rows = []
            for node, inst in live:
                argv += [node, repr(inst.deadline)]
                st = inst.state
                load = {k: getattr(st, a) for k, a in LOAD_FIELDS if getattr(st, a) is not None}
                rows.append([node, inst.deadline, inst.last_heartbeat, load or None])
            try:
                pipe = self.client.pipeline(transaction=True)
                pipe.eval(RENEW_LUA, 1, self.k_dl, *argv)
                pipe.publish(self.k_chan, orjson.dumps({"o": self.origin, "t": "dl", "d": rows}))
                await pipe.execute()
            except (redis.RedisError, OSError) as exc:
                for node, inst in live:
                    self.renewed.setdefault(node, inst)
                self._set_down(exc)

    def status(self) -> dict:
        return {"type": "redis", "healthy": self.healthy, "writable": self.writable, "url": self.url,
                "prefix": self.prefix, "replica": self.origin, "pendingWrites": len(self.pending),
                "outages": self.outages, "downSince": self.down_since, "lastError": self.last_error,
                "expiriesDecidedHere": self.expired_here, "changesApplied": self.applied,
                "localCopy": "serving" if not self.healthy else "in sync"}
