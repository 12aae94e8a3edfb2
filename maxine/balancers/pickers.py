"""Pickers: how a strategy chooses among candidates, given a load estimate.

A pool (:class:`maxine.registry.Pool`) is immutable while it lives, so a
picker may cache derived structures (cumulative weights, a hash ring, a
:class:`ScanBook` of loads) in ``pool.cache`` under its own key.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from itertools import accumulate, islice

import numpy as np

from ..telemetry import PEAK_EWMA_DECAY_S, PoolWatcher

REBASE_S = 50.0 * PEAK_EWMA_DECAY_S  # a book's time frame moves after this long (keeps exp() finite)


class ScanBook(PoolWatcher):
    """One pool's loads under one estimate, kept up to date instead of
    re-evaluated for every candidate on every pick (Finagle's heap balancer,
    and advanced-ml's ``CostBook``, do the same).

    The estimate splits its load into a part that no dispatch moves and a
    count that every dispatch moves by one: ``rank(node, ctx, t_ref) ->
    (base, q, decays, until)`` and ``cost(base, q) -> key``, a key ordering
    nodes as ``load`` does at any time before ``until``. A ``decays`` key is
    Peak-EWMA's load without its common factor exp(-(now - t_ref)/tau), which
    does not change which node is lowest, so it stays valid as time passes;
    other keys are loads as they are.

    A dispatch to a node (by any strategy: ``NodeState.on_dispatch`` calls
    :meth:`dispatched`) moves its entry to ``cost(base, q + 1)``: what ``rank``
    would give then, bit for bit, when ``q`` is a positive whole number (a
    dispatch adds exactly one to in-flight and to outstanding counts; from 0 a
    clamped in-flight may stay 0, and a fractional reported in-flight may round
    differently). Otherwise the entry is recomputed before it is next compared,
    as it is after a result or a load report (``NodeState.changed`` calls
    :meth:`add`) or once ``until`` passed (a report going stale, the
    outstanding-dispatch ring forgetting, a cached value to re-read).

    A book no pick has read for a while retires (:class:`~maxine.telemetry.PoolWatcher`);
    :func:`scan_book` then builds a new one, with the same entries: a settle
    from scratch gives what the kept-up book would have.
    """

    __slots__ = ("nodes", "index", "rank", "cost", "key", "base", "q", "steps", "decays", "n_decaying",
                 "until", "dirty", "due", "t_ref", "__weakref__")

    def __init__(self, nodes, estimate, now: float):
        n = len(nodes)
        self.nodes = nodes
        states = [node.state for node in nodes]
        self.index = {state: i for i, state in enumerate(states)}
        self.rank = estimate.rank
        self.cost = estimate.cost
        self.key = [math.inf] * n
        self.base = [None] * n
        self.q = [0] * n
        self.steps = [False] * n  # whether a dispatch moves the entry to cost(base, q + 1)
        self.decays = [False] * n
        self.n_decaying = 0
        self.until = [-math.inf] * n
        self.dirty: set = set()
        self.due = -math.inf  # the earliest ``until``
        self.t_ref = now
        self.watch(states)  # self.watched: the nodes' states, in pool order

    def add(self, state) -> None:
        """``state``'s telemetry changed: recompute its entry before it is next compared."""
        self.dirty.add(state)
        self.idle -= 1
        if not self.idle:
            self.idle_round()

    def dispatched(self, state) -> None:
        """``state`` took one more dispatch."""
        self.idle -= 1
        if not self.idle:
            self.idle_round()
            if self.retired:
                return
        i = self.index[state]
        if self.steps[i]:
            self.q[i] = q = self.q[i] + 1
            self.key[i] = self.cost(self.base[i], q)
        else:
            self.dirty.add(state)

    def settle(self, ctx) -> None:
        """Recompute the entries whose node changed or whose ``until`` passed."""
        now = ctx.now
        states, dirty = self.watched, self.dirty
        timed = now >= self.due
        if timed:
            if now - self.t_ref > REBASE_S:
                self.t_ref = now
                dirty.update(states)
            else:
                dirty.update(s for s, u in zip(states, self.until) if u <= now)
        if dirty:
            nodes, index, rank, cost, t_ref, due = self.nodes, self.index, self.rank, self.cost, self.t_ref, self.due
            key, base, qs, steps, decays, until = self.key, self.base, self.q, self.steps, self.decays, self.until
            for i in sorted(index[state] for state in dirty):  # pool order: a set's order varies run to run
                base[i], q, d, u = rank(nodes[i], ctx, t_ref)
                qs[i] = q
                key[i] = cost(base[i], q)
                steps[i] = 0 < q == int(q)
                if d is not decays[i]:
                    decays[i] = d
                    self.n_decaying += 1 if d else -1
                until[i] = u
                if u < due:
                    due = u
            self.due = due
            dirty.clear()
        if timed:
            self.due = min(self.until)

    def comparable(self, now: float) -> list:
        """The keys, comparable with each other at ``now``."""
        key = self.key
        if 0 < self.n_decaying < len(key):  # decaying and steady keys: bring the decaying ones to ``now``
            f = math.exp((self.t_ref - now) / PEAK_EWMA_DECAY_S)
            key = [k * f if d else k for k, d in zip(key, self.decays)]
        return key


def first_lowest(values, rand) -> int:
    """The index of the lowest of ``values``, ties broken at random by reservoir
    sampling in order, as a loop keeping the lowest so far would: each value
    equal to the lowest so far draws ``rand()`` and replaces it if
    ``rand() * ties < 1``. The same draws; the search is C-level (``min``,
    ``index``, ``count``), Python loops only over what may tie."""
    m = min(values)
    i = values.index(m)
    if i > 1:  # values before the first lowest that tie with the lowest so far draw too
        lowest = values[0]
        for v in islice(values, 1, i):
            if v < lowest:
                lowest = v
            elif v == lowest:
                rand()
    best = j = i
    for t in range(2, values.count(m) + 1):
        j = values.index(m, j + 1)
        if rand() * t < 1.0:
            best = j
    return best


class RoundRobin:
    def __init__(self, name: str = "round-robin"):
        self.name = name
        self._key = f"rr:{id(self)}"

    def pick(self, pool, ctx):
        nodes = pool.nodes
        i = pool.cache.get(self._key, 0)
        pool.cache[self._key] = i + 1
        return nodes[i % len(nodes)]


class RandomPick:
    def __init__(self, name: str = "random"):
        self.name = name

    def pick(self, pool, ctx):
        nodes = pool.nodes
        return nodes[int(ctx.rng.random() * len(nodes))]


class WeightedRandom:
    """Probability proportional to ``weight``: binary search over cumulative weights."""

    def __init__(self, name: str = "weighted-random"):
        self.name = name
        self._key = f"wr:{id(self)}"

    def pick(self, pool, ctx):
        cumulative = pool.cache.get(self._key)
        if cumulative is None:
            cumulative = pool.cache[self._key] = list(accumulate(n.weight for n in pool.nodes))
        i = bisect.bisect_right(cumulative, ctx.rng.random() * cumulative[-1])
        return pool.nodes[min(i, len(pool.nodes) - 1)]


def scan_book(pool, key, estimate, ctx) -> ScanBook:
    """``pool``'s book under ``key`` (one per set of request parameters, which an
    estimate may read, e.g. C3's ``clients``), brought up to date."""
    if ctx.params:
        key = (key, frozenset(ctx.params.items()))
    book = pool.cache.get(key)
    if book is None or book.retired:
        book = pool.cache[key] = ScanBook(pool.nodes, estimate, ctx.now)
    book.rounds = 0
    if book.dirty or ctx.now >= book.due:
        book.settle(ctx)
    return book


class FullScan:
    """The least-loaded candidate; ties broken at random so equals share load.

    An estimate with ``rank`` is read from the pool's :class:`ScanBook`; one
    without (e.g. the lab's oracle) is evaluated for every candidate."""

    def __init__(self, estimate, name: str):
        self.estimate = estimate
        self.name = name
        self._key = f"scan:{id(self)}"
        self.cached = hasattr(estimate, "rank")

    def pick(self, pool, ctx):
        if not self.cached:
            return self.scan(pool, ctx)
        book = scan_book(pool, self._key, self.estimate, ctx)
        return pool.nodes[first_lowest(book.comparable(ctx.now), ctx.rng.random)]

    def scan(self, pool, ctx):
        """The exact scan: every candidate's load evaluated now."""
        load = self.estimate.load
        return pool.nodes[first_lowest([load(node, ctx) for node in pool.nodes], ctx.rng.random)]


def two_distinct(n: int, rand) -> tuple[int, int]:
    """Two distinct indices below ``n`` (≥ 2) drawn at random: two draws."""
    i = int(rand() * n)
    j = int(rand() * (n - 1))
    return i, (j + 1 if j >= i else j)


class PowerOfTwo:
    """Two distinct candidates at random; the less loaded wins (ties: the first)."""

    def __init__(self, estimate, name: str):
        self.estimate = estimate
        self.name = name

    def pick(self, pool, ctx):
        nodes = pool.nodes
        if len(nodes) == 1:
            return nodes[0]
        i, j = two_distinct(len(nodes), ctx.rng.random)
        a, b = nodes[i], nodes[j]
        load = self.estimate.load
        return b if load(b, ctx) < load(a, ctx) else a


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


_GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def virtual_points(node_ids, vnodes: int) -> np.ndarray:
    """``vnodes`` ring points per node, row by row: splitmix64 over a blake2b seed
    of the node's id. One hash per node in Python, the rest vectorised, so a ring
    of 10,000 nodes builds in tens of milliseconds, not seconds."""
    seeds = np.fromiter((_hash64(node_id) for node_id in node_ids), dtype=np.uint64, count=len(node_ids))
    z = seeds[:, None] + np.arange(1, vnodes + 1, dtype=np.uint64) * _GOLDEN  # wraps mod 2**64
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


OWNER_BITS = 24  # a ring point's low bits hold its owner's index in the pool
_OWNER_MASK = (1 << OWNER_BITS) - 1
_OWNER, _POINT = np.uint64(_OWNER_MASK), ~np.uint64(_OWNER_MASK)
LIST_POINTS = 1 << 16  # rings of up to 409 nodes (160 points each) are lists, rebuilt on a change
LARGE_RINGS_KEPT = 16  # larger rings are numpy arrays, updated from their service's previous ring


def ring_points(node_ids, indices, vnodes: int) -> np.ndarray:
    """The sorted ring points of ``node_ids``, each carrying its node's index in
    the pool (``indices``, row by row) in its low ``OWNER_BITS``, so one plain sort
    orders points and owners together."""
    points = virtual_points(node_ids, vnodes)
    points &= _POINT
    points |= np.asarray(indices, dtype=np.uint64)[:, None]
    points = points.ravel()
    points.sort()
    return points


def updated_ring(points: np.ndarray, old_ids: tuple, new_ids: tuple, vnodes: int) -> np.ndarray | None:
    """The ring of ``new_ids``, exactly as :func:`ring_points` builds it, from
    ``points``, the ring of ``old_ids``: the leavers' points dropped, the others
    renumbered, the newcomers' merged in. A few passes over the points, where a
    build sorts them all; in place where it can be, as fresh arrays of 13 MB (a
    10,000-node ring) cost page faults. None when building is the better way:
    fewer than half the nodes are in the old ring, or the ones that stayed changed
    order (their new indices would sort their tied points differently)."""
    where = {node_id: i for i, node_id in enumerate(new_ids)}
    renumber = np.fromiter((where.get(node_id, -1) for node_id in old_ids), dtype=np.int64, count=len(old_ids))
    stayed = renumber[renumber >= 0]
    if 2 * len(stayed) < len(new_ids) or np.any(np.diff(stayed) <= 0):
        return None
    owners = (points & _OWNER).view(np.int64)
    np.take(renumber, owners, out=owners, mode="clip")  # every index is valid; "clip" works in place
    if len(stayed) < len(old_ids):
        kept = owners >= 0
        points, owners = points[kept], owners[kept]
    else:
        points = points.copy()
    points &= _POINT
    points |= owners.view(np.uint64)
    joined = np.ones(len(new_ids), dtype=bool)
    joined[stayed] = False
    joined = np.flatnonzero(joined)
    if len(joined):
        fresh = ring_points([new_ids[i] for i in joined], joined, vnodes)
        points = np.insert(points, points.searchsorted(fresh), fresh)
    return points


class HashRing:
    """A consistent-hash ring with virtual nodes, keyed per request.

    Adding one node to N moves about 1/N of the keys; lookups are O(log n).
    ``key_of(ctx)`` picks the request's key; with no key, falls back to
    ``fallback``."""

    keyed = True  # needs the client's identity in the pick context

    def __init__(self, key_of, fallback, name: str, vnodes: int = 160):
        self.key_of = key_of
        self.fallback = fallback
        self.name = name
        self.vnodes = vnodes
        self._key = f"ring:{id(self)}"
        # (service, query) -> (node ids, ring) of the last large ring built for it,
        # to update from. Bounded: a removed service's ring waits here until pushed out.
        self._large: dict[tuple, tuple[tuple, np.ndarray]] = {}

    def ring(self, pool):
        """The pool's sorted ring points (see :func:`ring_points`) as a sequence
        of ints for bisect: a list, where bisect is cheapest, or for large pools a
        memoryview of a numpy array, which a change updates in milliseconds where
        a rebuild takes ~100 ms at 10,000 nodes, mostly sorting."""
        ring = pool.cache.get(self._key)
        if ring is None:
            ring = pool.cache[self._key] = self._build(pool)
        return ring

    def _build(self, pool):
        ids = tuple(node.node_id for node in pool.nodes)
        if len(ids) * self.vnodes <= LIST_POINTS:
            return ring_points(ids, range(len(ids)), self.vnodes).tolist()
        query = (pool.service_name, pool.query)
        previous = self._large.pop(query, None)
        points = None if previous is None else updated_ring(previous[1], previous[0], ids, self.vnodes)
        if points is None:
            points = ring_points(ids, range(len(ids)), self.vnodes)
        self._large[query] = (ids, points)
        if len(self._large) > LARGE_RINGS_KEPT:
            del self._large[next(iter(self._large))]
        return memoryview(points)  # its items are ints: bisect as cheap as numpy's searchsorted, no copy

    def pick(self, pool, ctx):
        key = self.key_of(ctx)
        if key is None:
            return self.fallback.pick(pool, ctx)
        points = self.ring(pool)
        return pool.nodes[points[bisect.bisect_left(points, _hash64(key)) % len(points)] & _OWNER_MASK]


def _haversine_km(lat1, lon1, lat2, lon2) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 12742.0 * math.asin(min(1.0, math.sqrt(a)))


def _coordinate(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


class Nearest:
    """Geo-aware: the nearest candidate by ``metadata.lat/lon`` to the caller's
    ``lat``/``lon``; without coordinates, candidates in the caller's ``zone``,
    then ``region``; then ``within`` picks among what is left."""

    def __init__(self, within, name: str = "geo-aware"):
        self.within = within
        self.name = name

    def pick(self, pool, ctx):
        nodes = pool.nodes
        if ctx.lat is not None and ctx.lon is not None:
            key = ("nearest", ctx.lat, ctx.lon)  # the pool is immutable: the answer holds until it changes
            best = pool.cache.get(key, pool)
            if best is pool:
                best = self._nearest(nodes, ctx.lat, ctx.lon)
                if len(pool.cache) < 512:
                    pool.cache[key] = best
            if best is not None:
                return best
        for field, wanted in (("zone", ctx.zone), ("region", ctx.region)):
            if wanted is None:
                continue
            local = tuple(n for n in nodes if n.metadata.get(field) == wanted)
            if local:
                return self.within.pick(_Subset(pool, local, field, wanted), ctx)
        return self.within.pick(pool, ctx)

    @staticmethod
    def _nearest(nodes, lat0: float, lon0: float):
        best, best_d = None, math.inf
        for node in nodes:
            lat, lon = _coordinate(node.metadata.get("lat")), _coordinate(node.metadata.get("lon"))
            if lat is None or lon is None:
                continue
            d = _haversine_km(lat0, lon0, lat, lon)
            if d < best_d:
                best, best_d = node, d
        return best


class _Subset:
    """A pool restricted to some of its nodes; shares the parent's cache lifetime."""

    __slots__ = ("service_name", "nodes", "cache", "query")

    def __init__(self, pool, nodes, field, value):
        self.service_name = pool.service_name
        self.nodes = nodes
        self.cache = pool.cache.setdefault(("subset", field, value), {})
        self.query = (pool.query, field, value)
