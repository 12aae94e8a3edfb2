"""The two parts every strategy is made of: a picker over a load estimate.

As in tower and Finagle, "least-connections", "least-response-time" and
"power-of-two over Peak-EWMA" are not separate algorithms: they are one of a
few pickers (round-robin, random, power-of-two, full scan, hash ring, ...)
reading one of a few load estimates (none, in-flight, Peak-EWMA, ...).

A strategy is any object with ``pick(pool, ctx) -> node``. Nodes are
:class:`maxine.registry.Instance` objects in the server and in the simulator
alike; what a strategy may know about a node is its ``state``
(:class:`maxine.telemetry.NodeState`), ``weight`` and ``metadata``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol, Sequence


@dataclass(slots=True)
class PickContext:
    """What one discovery request knows besides the candidates."""

    now: float
    rng: random.Random
    client_key: str | None = None  # clientId, else X-Client-Id, else the client IP
    client_ip: str | None = None
    lat: float | None = None
    lon: float | None = None
    zone: str | None = None
    region: str | None = None
    params: dict = field(default_factory=dict)


class Strategy(Protocol):
    """``keyed = True`` (optional) asks for ``ctx.client_key``/``client_ip`` to be filled."""

    name: str

    def pick(self, pool, ctx: PickContext): ...


class LoadEstimate(Protocol):
    """Lower is better. ``load(node, ctx)`` must be O(1). An estimate may also
    provide ``rank(node, ctx, t_ref)`` and ``cost(base, q)`` for a cached scan
    (see :class:`maxine.balancers.pickers.ScanBook`)."""

    def load(self, node, ctx: PickContext) -> float: ...


def nodes_of(pool) -> Sequence:
    return pool.nodes if hasattr(pool, "nodes") else pool
