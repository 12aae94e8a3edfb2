"""``advanced-ml``: a learned latency estimate inside a load-spreading picker.

The model (``models/advanced-ml/<version>/``, trained by ``maxine train
advanced-ml``) predicts, from a node's telemetry (:mod:`maxine.models.features`:
last load report and its age, this registry's dispatches and completions
since, the share of the node's traffic this registry sees, service time,
Peak-EWMA, errors, ...), the log of the latency a request sent to that node
now would see. It was trained on simulator runs where that ground truth (true
queue × true service time) is known, so it learns how a stale report plus the
registry's own dispatches translates into the node's current queue.

The picker (never a plain argmax over predictions across registries):

- candidates: the whole pool when it has at most ``scan_max`` nodes, else
  ``d`` distinct nodes drawn at random (power of d choices) — O(d) per pick;
- cost = predicted latency × (1 + ``error_penalty`` × fast-error EWMA: a failure
  weighs 1 − latency / predicted latency, so fast failures count as slow while a
  timeout counts only through its latency) ÷ slow-start ramp; lowest cost wins,
  ties at random;
- guardrails: **slow start** — a node registered later than its peers ramps
  from ``slow_start_min`` to full weight over ``slow_start_s``; **share cap** —
  a node whose decayed share of this strategy's recent dispatches exceeds
  ``cap`` × fair share (1/n) is skipped while any other candidate is under it;
  **fallback** — without a usable model (missing, refused, stale by
  ``max_age_s``, or a forward pass that raised or returned non-finite values)
  the pick is made by ``p2c-peak-ewma`` and counted in ``fallbacks``.

The model's forward pass is numpy (:mod:`maxine.models.mlp`); nothing here
imports torch. ``pick`` never raises because of the model, and runs it only for
a node never scored and for at most ``inline_max`` candidates with a new load
report; other re-scoring happens in ``learn_one`` and ``refresh_pending`` (the
server's :func:`refresh_learned` background job).
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..models.artifacts import ModelStore, default_store
from ..models.features import node_row
from .estimates import PeakEwma
from .pickers import PowerOfTwo

SHARE_KEY = "aml.share"
CACHE_KEY = "aml.cache"
FERR_KEY = "aml.fast_errors"


class AdvancedML:
    name = "advanced-ml"

    def __init__(self, store: ModelStore | None = None, name: str = "advanced-ml", model: str = "advanced-ml",
                 scan_max: int = 16, d: int = 8,
                 error_penalty: float = 5.0, slow_start_s: float = 30.0, slow_start_min: float = 0.1,
                 slow_start_grace_s: float = 5.0, cap: float = 4.0, share_tau_s: float = 5.0,
                 max_age_s: float | None = None, recheck_s: float = 5.0, refresh_s: float = 0.05,
                 error_tau_s: float = 5.0, idle_s: float = 1.0, idle_tau_s: float = 3.0, drain_max: int = 64,
                 fast_errors: bool = True, inline_max: int = 2):
        self.name = name
        self.model = model
        self.store = store
        self.scan_max = scan_max
        self.d = d
        self.error_penalty = error_penalty
        self.slow_start_s = slow_start_s
        self.slow_start_min = slow_start_min
        self.slow_start_grace_s = slow_start_grace_s
        self.cap = cap
        self.share_tau_s = share_tau_s
        self.max_age_s = max_age_s
        self.recheck_s = recheck_s
        self.refresh_s = refresh_s
        self.error_tau_s = error_tau_s
        self.idle_s = idle_s
        self.idle_tau_s = idle_tau_s
        self.refreshes = 0
        self.share_ewma = 1.0
        self.fallback = PowerOfTwo(PeakEwma(), "p2c-peak-ewma")
        self.fallbacks = 0
        self.picks = 0
        self.model_errors = 0
        self.last_error: str | None = None
        self.fallback_reason: str | None = None
        self._key = ("aml", id(self))
        self._checked = -math.inf
        # nodes whose cached prediction is out of date, refreshed off the pick
        # path: by learn_one (a client report), refresh_pending (the server's
        # background job) — never by pick, which reads the stale value meanwhile
        self._pending: dict[int, object] = {}
        self.drain_max = drain_max
        # error penalty from *fast* failures only: a failure weighs 1 - latency /
        # predicted latency (an instant error 1, a timeout 0 — its latency
        # already counts as slow through the model)
        self.fast_errors = fast_errors
        # re-score at most this many out-of-date candidates inside a pick (one
        # batched forward, ~15 µs); the rest wait for learn_one / the background job
        self.inline_max = inline_max
        self.cold_refreshes = 0

    # --- the model -----------------------------------------------------------
    def _store(self) -> ModelStore:
        if self.store is None:
            self.store = default_store(self.model)
        return self.store

    def _model(self):
        store = self._store()
        wall = time.monotonic()
        if wall - self._checked >= self.recheck_s or store.current is None and self._checked == -math.inf:
            self._checked = wall
            if store.current is None:
                store.ensure_loaded()
        model = store.current
        if model is None:
            self.fallback_reason = "missing: " + (store.last_error or "no model loaded")
            return None
        if self.max_age_s is not None and model.trained_at is not None and time.time() - model.trained_at > self.max_age_s:
            self.fallback_reason = f"stale: trained more than {self.max_age_s:.0f}s ago"
            return None
        return model

    def _fall_back(self, pool, ctx):
        self.fallbacks += 1
        return self.fallback.pick(pool, ctx)

    # --- picking ---------------------------------------------------------------
    def pick(self, pool, ctx):
        self.picks += 1
        nodes = pool.nodes
        if len(nodes) == 1:
            return nodes[0]
        model = self._model()
        if model is None:
            return self._fall_back(pool, ctx)
        try:
            node = self._pick(model.mlp, pool, nodes, ctx)
        except Exception as exc:  # a model must never break discovery
            self.model_errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.fallback_reason = "failing: " + self.last_error
            return self._fall_back(pool, ctx)
        if node is None:
            return self._fall_back(pool, ctx)
        self.fallback_reason = None
        return node

    # --- the inference cache ------------------------------------------------------
    # Per node, in state.extra[CACHE_KEY]: [results, report_time, computed_at,
    # predicted ms, queue estimate then, dispatched_since then, share]. The model
    # runs when the node's telemetry changes, never inside ``pick``:
    # ``learn_one`` (a client report) refreshes that node and drains the nodes
    # ``pick`` found out of date (a new load report, or ``refresh_s`` of age);
    # the server's background job (:func:`refresh_learned`) drains them too.
    # A pick reads the cached prediction and applies this registry's
    # dispatches since (× (q_now + 1) / (q_then + 1)); after a new load report
    # it rescales by the queue estimate from that report until the refresh.
    # Only a node that has never been scored is scored inside a pick (once).
    @staticmethod
    def _queue_now(state, now):
        rt = state.report_time
        if rt is not None and now - rt <= 90.0:
            interval = state.prev_interval_s
            expected = (state.qps or 0.0) * (interval or 0.0)
            share = state.prev_dispatched / expected if expected > 0.5 else 1.0
            share = min(max(share, 0.05), 1.0)
            return max(0.0, (state.reported_in_flight or 0.0)
                       + (state.dispatched_since_report - state.completed_since_report) / share), share, expected
        return float(state.outstanding.count(now)), 1.0, 0.0

    def _queue(self, state, now):
        q, share, expected = self._queue_now(state, now)
        if expected > 0.5:  # this registry's share of the fleet's traffic, for exploration
            self.share_ewma += 0.05 * (share - self.share_ewma)
        return q, share

    def _refresh(self, mlp, nodes, now):
        pred = mlp.predict(np.array([node_row(node.state, now) for node in nodes])).tolist()
        if not all(map(math.isfinite, pred)):
            raise FloatingPointError("non-finite prediction")
        exp = math.exp
        pending = self._pending
        queue = self._queue
        for node, p in zip(nodes, pred):
            state = node.state
            q, share = queue(state, now)
            state.extra[CACHE_KEY] = [state.results, state.report_time, now, exp(p), q,
                                      state.dispatched_since_report, share]
            pending.pop(id(node), None)
        self.refreshes += len(nodes)

    def refresh_pending(self, now, limit: int | None = None) -> int:
        """Re-score up to ``limit`` nodes ``pick`` found out of date (one batched
        forward pass); returns how many. Off the discovery path; never raises."""
        pending = self._pending
        if not pending:
            return 0
        model = self.store.current if self.store is not None else None
        if model is None:
            pending.clear()
            return 0
        limit = self.drain_max if limit is None else limit
        if len(pending) <= limit:
            nodes = list(pending.values())
        else:
            nodes = [pending[k] for k in list(pending)[:limit]]
        try:
            self._refresh(model.mlp, nodes, now)
        except Exception as exc:
            self.model_errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            for node in nodes:
                pending.pop(id(node), None)
                node.state.extra.pop(CACHE_KEY, None)
            return 0
        return len(nodes)

    def learn_one(self, node, latency_ms, success, now):
        """A client report changed the node's telemetry: refresh its cached score
        and the out-of-date ones (off the discovery path). Never raises."""
        model = self.store.current if self.store is not None else None
        if model is None:
            return
        if self.fast_errors:
            extra = node.state.extra
            x = 0.0
            if not success:
                c = extra.get(CACHE_KEY)
                x = 1.0 if c is None or c[3] <= 0.0 else min(1.0, max(0.0, 1.0 - latency_ms / c[3]))
            v = extra.get(FERR_KEY, 0.0)
            extra[FERR_KEY] = v + 0.1 * (x - v)
        pending = self._pending
        if pending:
            pending[id(node)] = node
            self.refresh_pending(now)
            return
        try:
            self._refresh(model.mlp, (node,), now)
        except Exception as exc:
            self.model_errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            node.state.extra.pop(CACHE_KEY, None)

    def _pick(self, mlp, pool, nodes, ctx):
        now = ctx.now
        n = len(nodes)
        if n <= self.scan_max:
            cand = nodes
        else:
            rand = ctx.rng.random
            seen = set()
            while len(seen) < self.d:
                seen.add(int(rand() * n))
            cand = [nodes[k] for k in seen]
        cold = None
        inline = self.inline_max
        for node in cand:
            state = node.state
            c = state.extra.get(CACHE_KEY)
            if c is None or (inline and (c[1] != state.report_time or state.dispatched_since_report < c[5])):
                if c is not None:
                    if inline <= 0:
                        continue
                    inline -= 1
                if cold is None:
                    cold = [node]
                else:
                    cold.append(node)
        if cold:  # never scored, or (at most inline_max) a new load report since: one batched forward
            self._refresh(mlp, cold, now)
            self.cold_refreshes += len(cold)
        refresh_s = self.refresh_s
        pending = self._pending
        # pool-level bookkeeping: first registration time and the decayed dispatch total
        book = pool.cache.get(self._key)
        if book is None:
            book = pool.cache[self._key] = [min(node.registered_at for node in nodes), now, 0.0]
        exp = math.exp
        tau = self.share_tau_s
        total = book[2] * exp(-max(now - book[1], 0.0) / tau)
        fair_cap = self.cap / n if n >= 3 else math.inf
        oldest = book[0]
        err_tau = self.error_tau_s
        # evidence about a node reaches this registry at its share of the node's
        # traffic: with K registries, wait K times longer before exploring
        scale = 1.0 / max(self.share_ewma, 0.05)
        idle_s, idle_tau = self.idle_s * scale, self.idle_tau_s * scale
        best, best_cost, best_capped, ties = None, math.inf, True, 0
        rand = ctx.rng.random
        queue_now = self._queue_now
        fast_errors = self.fast_errors
        for node in cand:
            state = node.state
            c = state.extra[CACHE_KEY]
            if c[1] != state.report_time or state.dispatched_since_report < c[5]:
                # a new load report since the score: rescale by the queue it implies
                pending[id(node)] = node
                q = queue_now(state, now)[0]
            else:
                if c[0] != state.results or now - c[2] > refresh_s:
                    pending[id(node)] = node
                q = c[4] + (state.dispatched_since_report - c[5]) / c[6]
            cost = c[3] * (q + 1.0) / (c[4] + 1.0)
            # fast failures count as slow; the penalty fades while the node gets no reports
            err = state.extra.get(FERR_KEY, 0.0) if fast_errors else state.error_ewma
            if err > 0.0:
                lr = state.last_result_time
                if lr is not None and now > lr:
                    err *= exp(-(now - lr) / err_tau)
                cost *= 1.0 + self.error_penalty * err
            # exploration: an estimate nobody has checked for a while fades (as
            # Peak-EWMA does), so a node that was slow gets a probe once it may
            # have recovered instead of being starved on old evidence
            lr = state.last_result_time
            if lr is not None and now - lr > idle_s:
                cost *= exp(-(now - lr - idle_s) / idle_tau)
            # slow start: a node that joined after its peers ramps up
            born = node.registered_at
            if born - oldest > self.slow_start_grace_s and now - born < self.slow_start_s:
                cost /= max(self.slow_start_min, (now - born) / self.slow_start_s)
            # share cap
            capped = False
            if total > 20.0:
                share = state.extra.get(SHARE_KEY)
                if share is not None:
                    capped = share[1] * exp(-max(now - share[0], 0.0) / tau) > fair_cap * total
            if (best_capped and not capped) or (capped == best_capped and cost < best_cost):
                best, best_cost, best_capped, ties = node, cost, capped, 1
            elif capped == best_capped and cost == best_cost:
                ties += 1
                if rand() * ties < 1.0:
                    best = node
        # account the dispatch for the share cap
        book[1] = now
        book[2] = total + 1.0
        extra = best.state.extra
        share = extra.get(SHARE_KEY)
        mine = 0.0 if share is None else share[1] * exp(-max(now - share[0], 0.0) / tau)
        extra[SHARE_KEY] = (now, mine + 1.0)
        return best

    # --- observability -----------------------------------------------------------
    def status(self) -> dict:
        store = self._store()
        s = store.status()
        s.update({
            "strategy": self.name, "picks": self.picks, "fallbacks": self.fallbacks,
            "fallbackActive": store.current is None or self.fallback_reason is not None,
            "fallbackReason": self.fallback_reason, "modelErrors": self.model_errors,
            "cacheRefreshes": self.refreshes, "coldRefreshes": self.cold_refreshes,
            "pendingRefreshes": len(self._pending),
            "lastError": self.last_error or s.get("lastError"),
        })
        return s


async def watch_models(maxine) -> None:
    """Background task: reload the promoted ``advanced-ml`` artifact, and the ML
    hub's trained models (``maxine.ml.stores``: anomaly, forecast), when they
    change (every ``settings.models_watch_s`` seconds, default 2; 0 disables).
    Loading runs in a worker thread, never on the event loop; a refused
    artifact leaves the previous model serving."""
    import asyncio
    import logging

    interval = maxine.settings.models_watch_s
    if interval <= 0:
        return
    log = logging.getLogger("maxine.models")
    while True:
        strategy = maxine.balancers.get("advanced-ml")
        stores = [strategy._store()] if isinstance(strategy, AdvancedML) else []
        stores += getattr(getattr(maxine, "ml", None), "stores", {}).values()
        for store in stores:
            try:
                await asyncio.to_thread(store.reload)
            except Exception:
                log.exception("%s model watch failed; retrying", store.model)
        await asyncio.sleep(interval)


async def refresh_learned(maxine) -> None:
    """Background task: every ``refresh_s`` (50 ms) re-score the nodes
    ``advanced-ml`` picks found out of date (new load report, aged score), in
    batches of 64 with a yield between, so /discover only reads cached scores
    even for services that get no client reports."""
    import asyncio
    import logging

    log = logging.getLogger("maxine.models")
    while True:
        strategy = maxine.balancers.get("advanced-ml")
        interval = getattr(strategy, "refresh_s", 0.05) or 0.05
        await asyncio.sleep(interval)
        if not isinstance(strategy, AdvancedML) or not strategy._pending:
            continue
        try:
            for _ in range(len(strategy._pending) // 64 + 1):
                if not strategy.refresh_pending(maxine.clock(), 64):
                    break
                await asyncio.sleep(0)
        except Exception:
            log.exception("advanced-ml cache refresh failed; retrying")
