"""Consistent-hash picks in process, to count instructions on (a pick's cost
against a service's size, ring built first):

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m maxine.bench.ring INSTANCES PICKS
    # minus the same with 0 picks, divided by PICKS = instructions per pick

``maxine bench scale`` times the same picks, the ring's build and its updates on a change.
"""

from __future__ import annotations

import random
import sys

from ..balancers import Balancers, PickContext
from ..registry import Registry


def hashed_service(instances: int, now: float = 1.0):
    """``(registry, strategy, ctx)``: a registry holding one service, ``big``, of
    ``instances`` instances, a consistent-hash strategy whose ring is not built
    yet, and a pick context."""
    registry = Registry(default_ttl=3600)
    for i in range(instances):
        registry.register("big", f"10.0.{i >> 8}.{i & 255}", 8000)
    strategy = Balancers(["consistent-hash"]).get("consistent-hash")
    return registry, strategy, PickContext(now, random.Random(1))


def pick_each(registry, strategy, ctx, keys) -> None:
    pool = registry.pool("big")
    for key in keys:
        ctx.client_key = key
        strategy.pick(pool, ctx)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m maxine.bench.ring INSTANCES PICKS", file=sys.stderr)
        return 2
    instances, picks = int(argv[0]), int(argv[1])
    registry, strategy, ctx = hashed_service(instances)
    keys = [f"client-{k}" for k in range(picks)]
    pick_each(registry, strategy, ctx, ["warm-up"])  # builds the ring
    pick_each(registry, strategy, ctx, keys)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
