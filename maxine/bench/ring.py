"""Consistent-hash picks in process, to count instructions on (a pick's cost
against a service's size, ring built first):

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m maxine.bench.ring INSTANCES PICKS
    # minus the same with 0 picks, divided by PICKS = instructions per pick

``maxine bench scale`` times the same picks and the ring's build.
"""

from __future__ import annotations

import random
import sys

from ..balancers import Balancers, PickContext
from ..registry import Registry


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m maxine.bench.ring INSTANCES PICKS", file=sys.stderr)
        return 2
    instances, picks = int(argv[0]), int(argv[1])
    registry = Registry(default_ttl=3600)
    for i in range(instances):
        registry.register("big", f"10.0.{i >> 8}.{i & 255}", 8000)
    pool = registry.pool("big")
    strategy = Balancers(["consistent-hash"]).get("consistent-hash")
    ctx = PickContext(1.0, random.Random(1))
    keys = [f"client-{k}" for k in range(picks)]
    ctx.client_key = "warm-up"
    strategy.pick(pool, ctx)  # builds the ring
    for key in keys:
        ctx.client_key = key
        strategy.pick(pool, ctx)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
