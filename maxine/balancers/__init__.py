"""Load-balancing strategies: named combinations of a picker and a load estimate.

Plugins add strategies with :func:`register` or through the entry-point group
``maxine.balancers`` (each entry point names a factory taking no arguments and
returning an object with ``name`` and ``pick(pool, ctx)``).

The factories here are only recipes; every app (and every simulation run)
builds its own strategy objects with :class:`Balancers`, so no state is shared
through module globals.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Callable

from .base import PickContext, Strategy
from .estimates import InFlight, MetadataCost, PeakEwma, WeightedInFlight
from .pickers import FullScan, HashRing, Nearest, PowerOfTwo, RandomPick, RoundRobin, WeightedRandom

DEFAULT = "round-robin"

_factories: dict[str, Callable[[], Strategy]] = {}


def register(name: str, factory: Callable[[], Strategy]) -> None:
    """Make a strategy available to ``/discover?loadBalancing=<name>``."""
    _factories[name] = factory


def factories() -> dict[str, Callable[[], Strategy]]:
    _load_entry_points()
    return dict(_factories)


_entry_points_loaded = False


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group="maxine.balancers"):
        if ep.name not in _factories:
            _factories[ep.name] = ep.load()


class Balancers:
    """The strategy objects of one app or one simulation run: every registered
    strategy, or ``names`` (the first is then the default)."""

    def __init__(self, names=None):
        available = factories()
        unknown = [n for n in names or () if n not in available]
        if unknown:
            raise ValueError(f"unknown strategies {', '.join(unknown)}; choose from {', '.join(sorted(available))}")
        chosen = available if not names else {n: available[n] for n in names}
        self.default = names[0] if names else DEFAULT
        self.strategies: dict[str, Strategy] = {name: factory() for name, factory in chosen.items()}
        self.observers = self.strategies.values()
        # On the server, the event loop's call_soon (set by :func:`defer_learning`): a
        # client report is then noted at once and the strategies settle at the end of
        # the loop iteration, once for all the reports of the iteration (advanced-ml:
        # one forward pass). None: each report is learnt at once (the lab, tests).
        self.defer = None
        self._settle_at: float | None = None  # the latest deferred report's time
        self.deferred_reports = 0
        self.deferred_settles = 0

    @property
    def observers(self) -> tuple:
        """The strategies that learn from call outcomes (``learn_one``)."""
        return self._observers

    @observers.setter
    def observers(self, strategies) -> None:
        """Those of ``strategies`` that learn, each one's methods bound once (a client
        report calls them all)."""
        self._observers = tuple(s for s in strategies if hasattr(s, "learn_one"))
        self._learns = tuple(s.learn_one for s in self._observers)
        self._notes = tuple(getattr(s, "note_one", s.learn_one) for s in self._observers)
        self._settles = tuple(s.settle for s in self._observers if hasattr(s, "settle"))

    def get(self, name: str) -> Strategy | None:
        return self.strategies.get(name)

    def names(self) -> list[str]:
        return sorted(self.strategies)

    def learn_one(self, node, latency_ms: float, success: bool, now: float) -> None:
        """Feed a call outcome to the strategies that learn from outcomes."""
        if self.defer is not None and self._settle_later(now):
            self.note_one(node, latency_ms, success, now)
            return
        for learn in self._learns:
            learn(node, latency_ms, success, now)

    def note_one(self, node, latency_ms: float, success: bool, now: float) -> None:
        """:meth:`learn_one` for one outcome of a batch: a strategy with ``note_one``
        leaves its heavy part for :meth:`settle`, which must follow the batch."""
        for note in self._notes:
            note(node, latency_ms, success, now)

    def settle(self, now: float) -> None:
        """After a batch of :meth:`note_one`: the deferred parts, once each."""
        for settle in self._settles:
            settle(now)

    def _settle_later(self, now: float) -> bool:
        """A :meth:`settle` at the end of this loop iteration, unless one is due already;
        False if the loop refuses the callback (it is closed: learn at once from now on)."""
        if self._settle_at is None:
            try:
                self.defer(self._settle_deferred)
            except RuntimeError:
                self.defer = None
                return False
        self._settle_at = now
        self.deferred_reports += 1
        return True

    def _settle_deferred(self) -> None:
        now, self._settle_at = self._settle_at, None
        self.deferred_settles += 1
        self.settle(now)


async def defer_learning(maxine) -> None:
    """Background job: while the app runs, client reports are learnt once per event-loop
    iteration (:attr:`Balancers.defer`); when it stops, at once again. A settle still
    due when the loop stops leaves advanced-ml's nodes pending for its next drain."""
    import asyncio

    balancers = maxine.balancers
    balancers.defer = asyncio.get_running_loop().call_soon
    try:
        await asyncio.Event().wait()
    finally:
        balancers.defer = balancers._settle_at = None


def _client_key(ctx: PickContext):
    return ctx.client_key


def _client_ip(ctx: PickContext):
    return ctx.client_ip


def _builtin():
    # imported here: these modules build on this package's parts (pickers, estimates)
    from .adaptive import register_adaptive
    from .learned import AdvancedML
    from .ml_strategies import register_ml

    register("round-robin", RoundRobin)
    register("random", RandomPick)
    register("weighted-random", WeightedRandom)
    register("least-connections", lambda: FullScan(InFlight(), "least-connections"))
    register("weighted-least-connections", lambda: FullScan(WeightedInFlight(), "weighted-least-connections"))
    register("power-of-two-choices", lambda: PowerOfTwo(InFlight(), "power-of-two-choices"))
    register("consistent-hash", lambda: HashRing(_client_key, RoundRobin(), "consistent-hash"))
    register("ip-hash", lambda: HashRing(_client_ip, RoundRobin(), "ip-hash"))
    register("geo-aware", lambda: Nearest(FullScan(InFlight(), "least-connections")))
    register("cost-aware", lambda: FullScan(MetadataCost(), "cost-aware"))
    register("least-response-time", lambda: FullScan(PeakEwma(), "least-response-time"))
    register_adaptive(register)
    register("advanced-ml", AdvancedML)
    register_ml(register)


_builtin()

__all__ = ["register", "factories", "Balancers", "defer_learning", "PickContext", "Strategy", "DEFAULT"]
