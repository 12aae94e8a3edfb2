"""Pickers: how a strategy chooses among candidates, given a load estimate.

A pool (:class:`maxine.registry.Pool`) is immutable while it lives, so a
picker may cache derived structures (cumulative weights, a hash ring) in
``pool.cache`` under its own key.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from itertools import accumulate


class RoundRobin:
    def __init__(self, name: str = "round-robin"):
        self.name = name
        self._key = ("rr", id(self))

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
        self._key = ("wr", id(self))

    def pick(self, pool, ctx):
        cumulative = pool.cache.get(self._key)
        if cumulative is None:
            cumulative = pool.cache[self._key] = list(accumulate(n.weight for n in pool.nodes))
        i = bisect.bisect_right(cumulative, ctx.rng.random() * cumulative[-1])
        return pool.nodes[min(i, len(pool.nodes) - 1)]


class FullScan:
    """The least-loaded candidate; ties broken at random so equals share load."""

    def __init__(self, estimate, name: str):
        self.estimate = estimate
        self.name = name

    def pick(self, pool, ctx):
        load = self.estimate.load
        best, best_load, ties = None, None, 0
        for node in pool.nodes:
            value = load(node, ctx)
            if best is None or value < best_load:
                best, best_load, ties = node, value, 1
            elif value == best_load:
                ties += 1
                if ctx.rng.random() * ties < 1.0:  # reservoir sampling among ties
                    best = node
        return best


class PowerOfTwo:
    """Two distinct candidates at random; the less loaded wins (ties: the first)."""

    def __init__(self, estimate, name: str):
        self.estimate = estimate
        self.name = name

    def pick(self, pool, ctx):
        nodes = pool.nodes
        n = len(nodes)
        if n == 1:
            return nodes[0]
        rand = ctx.rng.random
        i = int(rand() * n)
        j = int(rand() * (n - 1))
        if j >= i:
            j += 1
        a, b = nodes[i], nodes[j]
        load = self.estimate.load
        return b if load(b, ctx) < load(a, ctx) else a


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


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
        self._key = ("ring", id(self))

    def ring(self, pool):
        ring = pool.cache.get(self._key)
        if ring is None:
            points = sorted(
                (_hash64(f"{node.node_id}#{v}"), idx)
                for idx, node in enumerate(pool.nodes) for v in range(self.vnodes)
            )
            ring = pool.cache[self._key] = ([p for p, _ in points], [i for _, i in points])
        return ring

    def pick(self, pool, ctx):
        key = self.key_of(ctx)
        if key is None:
            return self.fallback.pick(pool, ctx)
        hashes, owners = self.ring(pool)
        i = bisect.bisect_left(hashes, _hash64(key))
        return pool.nodes[owners[i % len(hashes)]]


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

    __slots__ = ("service_name", "nodes", "cache")

    def __init__(self, pool, nodes, field, value):
        self.service_name = pool.service_name
        self.nodes = nodes
        self.cache = pool.cache.setdefault(("subset", field, value), {})
