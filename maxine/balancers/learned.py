"""``advanced-ml``: a learned latency estimate inside a load-spreading picker.

The model (``models/advanced-ml/<version>/``, trained by ``maxine train
advanced-ml``) predicts, from a node's telemetry (:mod:`maxine.models.features`:
last load report and its age, this registry's dispatches and completions
since, the share of the node's traffic this registry sees, service time,
Peak-EWMA, errors, ...), the log of the latency a request sent to that node
now would see. It sees that telemetry scale-free — latencies and times in
units of the node's own latency scale s (``NodeState.scale_ms``, a slow
average of its reported p50s; else its Peak-EWMA), rates per s — predicts
log(latency / s), and the picker adds log s back; so a model trained on
50 ms services carries to 5 ms ones. It was trained on simulator runs where
the ground truth (true queue × true service time) is known, so it learns how
a stale report plus the registry's own dispatches translates into the node's
current queue. The shipped model is three nets served as one, their mean
(:func:`maxine.models.mlp.ensemble_arrays`).

The picker (never a plain argmax over predictions across registries):

- candidates: the whole pool when it has at most ``scan_max`` nodes, else
  ``d`` distinct nodes drawn at random (power of d choices) — O(d) per pick;
- cost = (predicted latency + ``error_penalty`` × fast-error EWMA × the pool's
  typical latency) ÷ slow-start ramp: a failure weighs 1 − latency / predicted
  latency, so a fast failure costs ``error_penalty`` typical requests of the pool
  (not of the node itself, whose fast failures make it look quick) while a timeout
  counts only through its latency; lowest cost wins, ties at random;
- the costs live in a per-pool :class:`CostBook`: an entry is recomputed when
  its node's telemetry changes or every ``refresh_s`` (for the factors that
  move with time; ``sampled_refresh_s`` in a sampled pool, where each node is
  compared rarely), so the common pick is an argmin over a list plus the cost
  of the one request it adds — about as cheap as round-robin's bookkeeping;
- guardrails: **slow start** — a node registered later than its peers ramps
  from ``slow_start_min`` to full weight over ``slow_start_s``; **share cap** —
  a node whose decayed share of this strategy's recent dispatches exceeds
  ``cap`` × fair share (1/n) is skipped while any other candidate is under it;
  **one probe at a time** — old evidence against a node (errors, latency)
  fades while nobody checks it (a node never answered: since it registered),
  so it gets a probe; while the node has requests in flight (its load report,
  plus this registry's dispatches and minus the results since) the full
  estimate stands, so a node that is still slow takes one request, not a
  burst — a dispatch whose report was lost does not hold it past the next
  load report;
  **fallback** — without a usable model (missing, refused, stale by
  ``max_age_s``, or a forward pass that raised or returned non-finite values)
  the pick is made by ``p2c-peak-ewma`` and counted in ``fallbacks``.

The model's forward pass is numpy (:mod:`maxine.models.mlp`); nothing here
imports torch. ``pick`` never raises because of the model, and runs it only for
a node never scored and, in a scanned pool, for at most ``inline_max``
candidates with a new load report; other re-scoring happens in ``learn_one``
and ``refresh_pending`` (the server's :func:`refresh_learned` background job).
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..models.artifacts import ModelStore, default_store
from ..models.features import node_row, relative_row
from ..telemetry import PoolWatcher
from .estimates import PeakEwma
from .pickers import PowerOfTwo

CACHE_KEY = "aml.cache"
FERR_KEY = "aml.fast_errors"
CAPPED = 1e12  # added to a capped node's cost: it loses to every node under the cap
UNCAPPED = 1 << 62
CAP_MIN_TOTAL = 20.0  # the share cap applies once the pool's decayed dispatch count passes this


class CostBook(PoolWatcher):
    """One pool's pick state: each node's current cost, what one more dispatch
    from this registry adds to it, and how many more it may take under the
    share cap.

    An entry is recomputed only when the node's telemetry changed (a load
    report or a re-score calls :meth:`add` through ``NodeState.changed``) or
    when the pool's time-dependent factors (error decay, exploration, slow
    start, share cap) are due, every ``refresh_s``; between, a pick is an
    argmin and two additions. Every live book watching a node (one per pool
    it is in) is told.

    Shares of recent dispatches decay with ``tau``; they are kept multiplied by
    exp((t - t0) / tau) and brought up to date at each sweep (:meth:`rebase`)
    from the picks counted down in ``allow`` since the previous one.

    A book no pick has read for a while retires (:class:`~maxine.telemetry.PoolWatcher`),
    and its nodes' scores are then no longer refreshed on their reports: no
    pick reads them. The next pick builds a new book, which scores afresh the
    nodes whose telemetry changed since their last score."""

    __slots__ = ("nodes", "index", "d", "refresh_s", "mlp", "cost", "slope", "stamp", "allow", "granted",
                 "share", "total",
                 "t0", "unit", "dirty", "oldest", "typical", "due", "sweep_at", "__weakref__")

    def __init__(self, nodes, now, d: int, refresh_s: float):
        n = len(nodes)
        self.nodes = nodes
        self.index = {node.state: i for i, node in enumerate(nodes)}
        self.d = d  # candidates drawn per pick; 0 = all
        self.refresh_s = refresh_s  # sweep interval, and the age at which a drawn entry is settled again
        self.mlp = None  # the model's forward pass, as of the last update
        self.cost = [0.0] * n
        self.slope = [0.0] * n
        self.stamp = [-math.inf] * n  # when each entry was computed
        self.allow = [UNCAPPED] * n  # picks left before the share cap binds
        self.granted = [UNCAPPED] * n  # allow at the last rebase
        self.share = [0.0] * n
        self.total = 0.0
        self.t0 = now
        self.unit = 1.0
        self.dirty: set = set()
        self.watch([node.state for node in nodes])
        self.oldest = min(node.registered_at for node in nodes)
        self.typical = None  # running mean of the entries' per-request latency (the error penalty's unit)
        self.due = self.sweep_at = now

    def add(self, state) -> None:
        """``state``'s telemetry changed: recompute its entry before it is next compared."""
        self.dirty.add(state)
        if not self.d:
            self.due = -math.inf
        self.idle -= 1
        if not self.idle:
            self.idle_round()

    def rebase(self, now: float, tau: float, cap: float) -> None:
        """Count the picks since the last rebase into the decayed shares, then
        give each node its allowance: how many more picks keep its share of the
        recent ones within ``cap`` × fair share (once there are enough of them)."""
        unit = self.unit
        used = [g - a for g, a in zip(self.granted, self.allow)]
        self.share = share = [s + k * unit for s, k in zip(self.share, used)]
        self.total += sum(used) * unit
        if now - self.t0 > 50.0 * tau:  # move t0 to now: keeps the scaled counts finite
            f = math.exp(-(now - self.t0) / tau)
            self.share = share = [v * f for v in share]
            self.total *= f
            self.t0 = now
        self.unit = unit = math.exp((now - self.t0) / tau)
        n = len(self.nodes)
        c = cap / n if n >= 3 else 1.0
        if c >= 1.0 or self.total <= CAP_MIN_TOTAL * unit:
            allow = [UNCAPPED] * n
        else:  # share + k·unit <= c·(total + k·unit)
            limit, per = c * self.total, unit * (1.0 - c)
            allow = [int((limit - v) // per) for v in share]
        self.allow = allow
        self.granted = list(allow)


class AdvancedML:
    name = "advanced-ml"

    def __init__(self, store: ModelStore | None = None, name: str = "advanced-ml", model: str = "advanced-ml",
                 scan_max: int = 16, d: int = 8,
                 error_penalty: float = 20.0, slow_start_s: float = 30.0, slow_start_min: float = 0.1,
                 slow_start_grace_s: float = 5.0, cap: float = 4.0, share_tau_s: float = 5.0,
                 max_age_s: float | None = None, recheck_s: float = 5.0, refresh_s: float = 0.05,
                 sampled_refresh_s: float = 0.25,
                 error_tau_s: float = 5.0, idle_s: float = 1.0, idle_tau_s: float = 3.0, drain_max: int = 64,
                 fast_errors: bool = True, inline_max: int = 2, one_probe: bool = True):
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
        self.sampled_refresh_s = sampled_refresh_s
        self.error_tau_s = error_tau_s
        self.idle_s = idle_s
        self.idle_tau_s = idle_tau_s
        self.refreshes = 0
        self.share_ewma = 1.0
        self.fallback = PowerOfTwo(PeakEwma(), "p2c-peak-ewma")
        self.fallbacks = 0
        self.model_errors = 0
        self.last_error: str | None = None
        self.fallback_reason: str | None = None
        self._key = f"aml:{id(self)}"
        self._checked = -math.inf
        # nodes whose cached prediction is out of date, refreshed off the pick
        # path: by learn_one (a client report), refresh_pending (the server's
        # background job) — never by pick, which reads the stale value meanwhile
        self._pending: dict[int, object] = {}
        self.noted_reports = 0  # reports re-scored by settle (batches, deferred reports)
        self.settles = 0
        self.drain_max = drain_max
        # error penalty from *fast* failures only: a failure weighs 1 - latency /
        # predicted latency (an instant error 1, a timeout 0 — its latency
        # already counts as slow through the model)
        self.fast_errors = fast_errors
        # re-score at most this many out-of-date candidates inside a pick (one
        # batched forward, ~15 µs); the rest wait for learn_one / the background job
        self.inline_max = inline_max
        self.cold_refreshes = 0
        self.one_probe = one_probe

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
        book = pool.cache.get(self._key)
        if book is None or ctx.now >= book.due or book.retired:
            book = self._update(pool, book, ctx)
            if book is None:
                return self._fall_back(pool, ctx)
        book.rounds = 0
        # the common case: nothing changed since the costs were computed
        cost = book.cost
        if book.d:  # a large pool: power of d choices, O(d), and no herding across registries
            i = self._sample(book, ctx)
            if i is None:
                return self._fall_back(pool, ctx)
        else:
            i = cost.index(min(cost))
        cost[i] += book.slope[i]  # one more request from this registry in the node's queue
        allow = book.allow
        allow[i] -= 1
        if allow[i] == -1:  # over the share cap: picked only while every candidate is
            cost[i] += CAPPED
        return book.nodes[i]

    # --- the inference cache ------------------------------------------------------
    # Per node, in state.extra[CACHE_KEY]: [results, report_time, computed_at,
    # predicted ms, queue estimate then, dispatched_since then, share,
    # completed_since then]. The model
    # runs when the node's telemetry changes, never inside ``pick``:
    # ``learn_one`` (a client report) refreshes that node and drains the nodes
    # ``pick`` found out of date (a new load report, or ``refresh_s`` of age);
    # the server's background job (:func:`refresh_learned`) drains them too.
    # A cost entry (``_settle``) reads the cached prediction and applies this
    # registry's dispatches and completions since (× (q_now + 1) / (q_then + 1)); after a new
    # load report it rescales by the queue estimate from that report until the
    # refresh. Only a node never scored, and at most ``inline_max`` nodes with a
    # new load report, are scored while a pick waits.
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

    def _refresh(self, mlp, nodes, now, notify=True):
        """Score ``nodes`` now, cache the predictions and tell the nodes' cost books;
        ``notify=False`` skips that when the caller knows every book was just told (a
        client report: ``on_result`` ran right before ``learn_one``)."""
        # the model predicts log(latency / s) from the node's scale-free row; log s brings it back to ms
        if len(nodes) == 1:  # a client report's node: the single-row pass, ~0.45x the cost
            state = nodes[0].state
            row, log_s = relative_row(node_row(state, now), state.scale_ms)
            pred = [mlp.predict_one(row) + log_s]
        else:
            rows = [relative_row(node_row(node.state, now), node.state.scale_ms) for node in nodes]
            pred = (mlp.predict(np.array([row for row, _ in rows])) + [log_s for _, log_s in rows]).tolist()
        if not all(map(math.isfinite, pred)):
            raise FloatingPointError("non-finite prediction")
        exp = math.exp
        pending = self._pending
        queue = self._queue
        for node, p in zip(nodes, pred):
            state = node.state
            q, share = queue(state, now)
            state.extra[CACHE_KEY] = [state.results, state.report_time, now, exp(p), q,
                                      state.dispatched_since_report, share, state.completed_since_report]
            pending.pop(id(node), None)
            if notify:  # only the cost books read the prediction; a scan cache need not recompute
                state.changed_for(CostBook)
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

    def _fast_error(self, node, latency_ms, success):
        extra = node.state.extra
        x = 0.0
        if not success:
            c = extra.get(CACHE_KEY)
            x = 1.0 if c is None or c[3] <= 0.0 else min(1.0, max(0.0, 1.0 - latency_ms / c[3]))
        v = extra.get(FERR_KEY, 0.0)
        extra[FERR_KEY] = v + 0.1 * (x - v)

    def note_one(self, node, latency_ms, success, now):
        """:meth:`learn_one` within a batch of reports: the node joins the out-of-date
        ones, and :meth:`settle` re-scores them all in one forward pass."""
        if self.store is None or self.store.current is None:
            return
        if self.fast_errors:
            self._fast_error(node, latency_ms, success)
        if not node.state.watched_by(CostBook):  # no pick reads its score (see CostBook)
            return
        self._pending[id(node)] = node
        self.noted_reports += 1

    def settle(self, now):
        """The end of a batch of reports: re-score the out-of-date nodes, at most
        ``drain_max`` in one pass like a single report's drain (the background job takes
        the rest within ``refresh_s``), so no batch blocks the loop for long. Never raises."""
        self.settles += 1
        self.refresh_pending(now)

    def learn_one(self, node, latency_ms, success, now):
        """A client report changed the node's telemetry: refresh its cached score
        and the out-of-date ones (off the discovery path). Never raises."""
        model = self.store.current if self.store is not None else None
        if model is None:
            return
        if self.fast_errors:
            self._fast_error(node, latency_ms, success)
        if not node.state.watched_by(CostBook):  # no pick reads its score (see CostBook)
            return
        pending = self._pending
        if pending:
            pending[id(node)] = node
            self.refresh_pending(now)
            return
        try:
            # no changed(): the report's on_result (just before this call, on the
            # server and in the lab) already told every book watching the node,
            # and no pick ran since
            self._refresh(model.mlp, (node,), now, False)
        except Exception as exc:
            self.model_errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            node.state.extra.pop(CACHE_KEY, None)

    def _update(self, pool, book, ctx):
        """Bring ``pool``'s cost book up to date, or None when the model is not
        usable: build the book, recompute the entries of nodes whose telemetry
        changed, and every ``refresh_s`` re-derive the time-dependent factors.
        A large pool (sampled picks) leaves its entries to :meth:`_sample`,
        which settles only the candidates it draws."""
        model = self._model()
        if model is None:
            pool.cache.pop(self._key, None)
            return None
        now, rng = ctx.now, ctx.rng
        nodes = pool.nodes
        try:
            if book is None or book.retired:
                self._forget_stale(nodes)
                if len(nodes) > self.scan_max:
                    book = CostBook(nodes, now, self.d, self.sampled_refresh_s)
                else:
                    book = CostBook(nodes, now, 0, self.refresh_s)
            book.mlp = model.mlp
            if now >= book.sweep_at:
                book.rebase(now, self.share_tau_s, self.cap)
                book.sweep_at = now + book.refresh_s
                if not book.d:
                    self._settle(book, range(len(nodes)), now, rng)
            elif book.dirty and not book.d:
                index = book.index
                self._settle(book, sorted(index[s] for s in book.dirty), now, rng)  # pool order: deterministic
            if not book.d:
                book.dirty.clear()  # includes the nodes re-scored just now, whose entries are fresh
            book.due = book.sweep_at
            pool.cache[self._key] = book
        except Exception as exc:  # a model must never break discovery
            self._failed(exc)
            return None
        self.fallback_reason = None
        return book

    @staticmethod
    def _forget_stale(nodes) -> None:
        """Drop the cached scores that client reports made stale while no book watched the
        node (a watched node is re-scored on each report): the new book scores them cold,
        in one pass. A new load report is handled as in a live book (``_settle``)."""
        for node in nodes:
            state = node.state
            c = state.extra.get(CACHE_KEY)
            if c is not None and c[0] != state.results:
                del state.extra[CACHE_KEY]

    def _sample(self, book, ctx):
        """Power of d choices in a large pool: d distinct candidates, whose
        entries are settled if their node changed or they are older than the
        book's ``refresh_s``; the index of the cheapest, or None if the model failed."""
        rand = ctx.rng.random
        n = len(book.cost)
        seen = set()
        while len(seen) < book.d:
            seen.add(int(rand() * n))
        now = ctx.now
        old = now - book.refresh_s
        stamp, nodes, dirty = book.stamp, book.nodes, book.dirty
        todo = [i for i in seen if stamp[i] <= old or nodes[i].state in dirty]
        if todo:
            try:
                self._settle(book, todo, now, ctx.rng)
            except Exception as exc:  # a model must never break discovery
                self._failed(exc)
                return None
            for i in todo:
                dirty.discard(nodes[i].state)
        return min(seen, key=book.cost.__getitem__)

    def _failed(self, exc) -> None:
        self.model_errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.fallback_reason = "failing: " + self.last_error

    def _settle(self, book, indices, now, rng):
        """Recompute the cost entries ``indices`` of ``book`` from the nodes'
        cached predictions and current telemetry. A node never scored, or (at
        most ``inline_max``) one with a new load report, is scored first in one
        batched forward; other out-of-date nodes are queued for re-scoring off
        the pick path and meanwhile rescaled by their queue now."""
        nodes = book.nodes
        cold = None
        inline = 0 if book.d else self.inline_max
        for i in indices:
            state = nodes[i].state
            c = state.extra.get(CACHE_KEY)
            if c is None or (inline and (c[1] != state.report_time or state.dispatched_since_report < c[5])):
                if c is not None:
                    if inline <= 0:
                        continue
                    inline -= 1
                if cold is None:
                    cold = [nodes[i]]
                else:
                    cold.append(nodes[i])
        if cold:
            self._refresh(book.mlp, cold, now)
            self.cold_refreshes += len(cold)
        exp = math.exp
        pending = self._pending
        refresh_s = self.refresh_s
        err_tau = self.error_tau_s
        # evidence about a node reaches this registry at its share of the node's
        # traffic: with K registries, wait K times longer before exploring
        scale = 1.0 / max(self.share_ewma, 0.05)
        idle_s, idle_tau = self.idle_s * scale, self.idle_tau_s * scale
        oldest = book.oldest
        typical, weight = book.typical, 1.0 / len(nodes)
        rand = rng.random
        cost, slope, stamp = book.cost, book.slope, book.stamp
        for i in indices:
            node = nodes[i]
            state = node.state
            c = state.extra[CACHE_KEY]
            if c[1] != state.report_time or state.dispatched_since_report < c[5]:
                # a new load report since the score: rescale by the queue it implies
                pending[id(node)] = node
                q, share, _ = self._queue_now(state, now)
            else:
                if c[0] != state.results or now - c[2] > refresh_s:
                    pending[id(node)] = node
                share = c[6]
                # this registry's dispatches and completions since the score
                q = max(0.0, c[4] + (state.dispatched_since_report - c[5]
                                     - state.completed_since_report + c[7]) / share)
            own = c[3] / (c[4] + 1.0)  # the predicted latency of one request in the node's queue
            typical = own if typical is None else typical + (own - typical) * weight
            # fast failures count as slow: a failure costs error_penalty requests of the
            # pool's typical latency (not of the node's own, which its fast failures
            # make look short); the penalty fades while the node gets no reports
            err = state.extra.get(FERR_KEY, 0.0) if self.fast_errors else state.error_ewma
            penalty = self.error_penalty * err * typical
            base = faded = own + penalty
            lr = state.last_result_time
            if lr is None:  # never answered here: its estimate is the model's guess, checked by nobody
                lr = node.registered_at
            if now > lr:
                if penalty > 0.0:
                    faded = own + penalty * exp(-(now - lr) / err_tau)
                # exploration: an estimate nobody has checked for a while fades (as
                # Peak-EWMA does), so a node that was slow gets a probe once it may
                # have recovered instead of being starved on old evidence (or, never
                # tried, on a guess)
                if now - lr > idle_s:
                    faded *= exp(-(now - lr - idle_s) / idle_tau)
                # one probe at a time: while the faded node has requests in flight, the
                # old evidence stands (else a slow node takes a burst before the first
                # probe's answer returns); in_flight, not outstanding: a lost report
                # leaves a dispatch outstanding until its TTL
                if faded < base and self.one_probe and state.in_flight(now) > 0.0:
                    faded = base
            # slow start: a node that joined after its peers ramps up
            born = node.registered_at
            if born - oldest > self.slow_start_grace_s and now - born < self.slow_start_s:
                ramp = max(self.slow_start_min, (now - born) / self.slow_start_s)
                base /= ramp
                faded /= ramp
            # equal costs are broken at random, once per entry
            cost[i] = c_i = faded * (q + 1.0) * (1.0 + 1e-9 * rand())
            stamp[i] = now
            if faded < base and self.one_probe:  # after the probe, the full estimate with it queued
                slope[i] = base * (q + 1.0 + 1.0 / share) - c_i
            else:
                slope[i] = faded / share
            if book.allow[i] < 0:  # over the share cap
                cost[i] += CAPPED
        book.typical = typical

    # --- observability -----------------------------------------------------------
    def status(self) -> dict:
        store = self._store()
        s = store.status()
        s.update({
            "strategy": self.name, "fallbacks": self.fallbacks,
            "fallbackActive": store.current is None or self.fallback_reason is not None,
            "fallbackReason": self.fallback_reason, "modelErrors": self.model_errors,
            "cacheRefreshes": self.refreshes, "coldRefreshes": self.cold_refreshes,
            "pendingRefreshes": len(self._pending),
            "reportsPerDeferredRefresh": (round(self.noted_reports / self.settles, 2)
                                          if self.settles else None),
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
