"""Per-node telemetry: what every balancer knows about one instance.

Three feeds update it, each in O(1):
- ``on_dispatch``: this registry handed the node to a caller;
- ``on_result``: a caller reported how a call went (latency, success);
- ``on_load_report``: the instance's own heartbeat load report.

Caches of values derived from a node (the cost books of the scanning
strategies) register with :meth:`NodeState.add_watcher`; a result or a load
report tells every live one (:meth:`NodeState.changed`), and a dispatch tells
those with a ``dispatched`` method. A per-pool book is a :class:`PoolWatcher`:
it stops watching once no pick has read it for a while.

The server and the simulator drive the same object through the same verbs,
so a strategy sees identical information in both places. Times are seconds
on whatever clock the caller uses (wall clock in the server, simulated time
in the lab); latencies are milliseconds.
"""

from __future__ import annotations

import math
import weakref

PEAK_EWMA_DECAY_S = 10.0  # Linkerd/Finagle's tau
ERROR_EWMA_ALPHA = 0.1
FAILURE_PENALTY_FACTOR = 5.0  # a failed call counts as this many times the current estimate
FAILURE_PENALTY_CAP_MS = 10_000.0
REPORT_FRESH_S = 90.0  # a heartbeat load report older than this is ignored
# A pool's book retires after this many events per node (dispatches by other strategies,
# results, load reports) without a pick reading it: a strategy tried once must not tax every
# later discovery and report of the pool (nine idle books added ~70 % to a round-robin discovery).
RETIRE_EVENTS_PER_NODE = 64
IDLE_ROUND = 256


class OutstandingCounter:
    """Dispatches not yet reported back, forgetting those older than ``ttl``.

    Callers that never report would otherwise inflate a node's load forever
    (the original's least-connections counter only ever grew). Dispatches are
    counted in a ring of time buckets; a completion retires the oldest one.
    """

    __slots__ = ("ttl", "width", "buckets", "head", "slot", "until", "total")
    SLOTS = 16

    def __init__(self, ttl: float = 30.0):
        self.ttl = ttl
        self.width = ttl / self.SLOTS
        self.buckets = None  # allocated at the first dispatch: most instances of a big registry never get one
        self.head = None  # absolute bucket number of the newest bucket
        self.slot = 0  # its index in buckets
        self.until = -math.inf  # when it ends: a float compare tells whether a time falls in it
        self.total = 0

    def _advance(self, now: float) -> None:
        if self.buckets is None:
            return
        b = int(now // self.width)
        head = self.head
        if head is not None:
            steps = b - head
            if steps <= 0:  # the clock went back: keep counting in the newest bucket
                return
            if steps >= self.SLOTS:
                self.buckets = [0] * self.SLOTS
                self.total = 0
            else:
                for i in range(1, steps + 1):
                    slot = (head + i) % self.SLOTS
                    self.total -= self.buckets[slot]
                    self.buckets[slot] = 0
        self.head = b
        self.slot = b % self.SLOTS
        self.until = (b + 1) * self.width

    def add(self, now: float) -> None:
        if now >= self.until:  # past the newest bucket, or none yet: move the ring
            if self.buckets is None:
                self.buckets = [0] * self.SLOTS
            self._advance(now)
        self.buckets[self.slot] += 1
        self.total += 1

    def remove(self, now: float) -> bool:
        """Retire the oldest outstanding dispatch; False if none is left."""
        if now >= self.until:
            self._advance(now)
        if self.total <= 0:
            return False
        for i in range(self.SLOTS - 1, -1, -1):  # oldest first
            slot = (self.slot - i) % self.SLOTS
            if self.buckets[slot]:
                self.buckets[slot] -= 1
                self.total -= 1
                return True
        return False

    def trim(self, now: float, limit: float) -> None:
        """Retire the oldest dispatches until at most ``limit`` are left."""
        while self.count(now) > limit and self.remove(now):
            pass

    def count(self, now: float) -> int:
        if self.total and now >= self.until:
            self._advance(now)
        return self.total


class PoolWatcher:
    """A per-pool cache that watches its nodes while picks read it.

    Each event it is told of counts down ``idle`` (the subclass's ``add`` and
    ``dispatched`` do ``self.idle -= 1`` and call :meth:`idle_round` at 0); a
    pick reading it sets ``rounds = 0``. After ``RETIRE_EVENTS_PER_NODE`` events
    per node (whole rounds of 256) with no pick, it retires: it no longer watches,
    and its strategy builds a new one at the next pick. (Counting down in rounds
    keeps the count a small int, which costs no allocation per event.)"""

    __slots__ = ("watched", "idle", "rounds", "rounds_max", "retired")

    def watch(self, states) -> None:
        self.watched = states
        self.idle = IDLE_ROUND
        self.rounds = 0
        self.rounds_max = -(-RETIRE_EVENTS_PER_NODE * len(states) // IDLE_ROUND)
        self.retired = False
        for state in states:
            state.add_watcher(self)

    def idle_round(self) -> None:
        self.idle = IDLE_ROUND
        self.rounds += 1
        if self.rounds > self.rounds_max:  # a pick may come in any round: wait rounds_max whole ones
            self.retire()

    def retire(self) -> None:
        self.retired = True
        for state in self.watched:
            state.remove_watcher(self)


# scale_ms: the mean of a node's first SCALE_REPORTS reported latencies, then an EWMA with
# alpha = 1 / SCALE_REPORTS (a single first report would be a noisy one-second p50 for ~20 s)
SCALE_REPORTS = 20


class NodeState:
    """Load and latency knowledge about one node, updated in O(1) per event."""

    __slots__ = (
        "outstanding", "dispatches", "results", "failures",
        "reported_in_flight", "report_time", "dispatched_since_report", "completed_since_report",
        "cpu", "qps", "error_rate", "reported_latency_ms", "scale_ms", "scale_reports",
        "ewma_ms", "ewma_time", "error_ewma", "last_latency_ms", "last_result_time",
        "extra", "prev_dispatched", "prev_interval_s", "watchers", "dispatch_watchers",
    )

    def __init__(self, dispatch_ttl: float = 30.0):
        self.outstanding = OutstandingCounter(dispatch_ttl)
        self.dispatches = 0
        self.results = 0
        self.failures = 0
        self.reported_in_flight: float | None = None
        self.report_time: float | None = None
        self.dispatched_since_report = 0
        self.completed_since_report = 0
        self.cpu: float | None = None
        self.qps: float | None = None
        self.error_rate: float | None = None
        self.reported_latency_ms: float | None = None
        self.scale_ms: float | None = None  # a slow average of the reported latency: the node's usual speed
        self.scale_reports = 0
        self.ewma_ms: float | None = None
        self.ewma_time = 0.0
        self.error_ewma = 0.0
        self.last_latency_ms: float | None = None
        self.last_result_time: float | None = None
        self.extra: dict = {}  # strategies keep their own per-node state here
        # this registry's dispatches during the previous report interval, and its
        # length: with the reported qps, the share of the node's traffic we see
        self.prev_dispatched = 0
        self.prev_interval_s: float | None = None
        # weak references to the caches of this node (anything with ``add(state)``), told by
        # :meth:`changed`; weak, so an expired node does not keep a cache alive in a cycle
        self.watchers: tuple = ()
        self.dispatch_watchers: tuple = ()  # those of them with ``dispatched(state)``

    # --- the three feeds -------------------------------------------------
    def on_dispatch(self, now: float) -> None:
        self.dispatches += 1
        self.dispatched_since_report += 1
        self.outstanding.add(now)
        for ref in self.dispatch_watchers:
            cache = ref()
            if cache is not None:
                cache.dispatched(self)

    def on_result(self, latency_ms: float, success: bool, now: float) -> None:
        self.results += 1
        self.completed_since_report += 1
        self.outstanding.remove(now)
        self.last_latency_ms = latency_ms
        self.last_result_time = now
        self.error_ewma += ERROR_EWMA_ALPHA * ((0.0 if success else 1.0) - self.error_ewma)
        if not success:
            self.failures += 1
            # A fast failure must not look like a fast server (Linkerd's load biaser).
            current = self.ewma_ms if self.ewma_ms is not None else latency_ms
            latency_ms = min(max(latency_ms, FAILURE_PENALTY_FACTOR * max(current, 1.0)), FAILURE_PENALTY_CAP_MS)
        self._observe_latency(latency_ms, now)
        if self.watchers:
            self.changed()

    def on_load_report(self, now: float, in_flight=None, cpu=None, qps=None,
                       error_rate=None, latency_ms=None) -> None:
        if in_flight is not None:
            if self.report_time is not None:
                self.prev_dispatched = self.dispatched_since_report
                self.prev_interval_s = now - self.report_time
                if qps is not None:
                    # this registry's unanswered dispatches are at the node (at most
                    # in_flight), answered within the report's window and not yet
                    # reported (at most qps × window), or sent during the window and
                    # not yet arrived (at most this registry's dispatches in it); more
                    # means a caller never reported, which would read as requests
                    # stuck at an idle node
                    self.outstanding.trim(now, float(in_flight) + float(qps) * self.prev_interval_s
                                          + self.dispatched_since_report)
            self.reported_in_flight = float(in_flight)
            self.report_time = now
            self.dispatched_since_report = 0
            self.completed_since_report = 0
        if cpu is not None:
            self.cpu = float(cpu)
        if qps is not None:
            self.qps = float(qps)
        if error_rate is not None:
            self.error_rate = float(error_rate)
        if latency_ms is not None:
            self.reported_latency_ms = latency = float(latency_ms)
            k = self.scale_reports = min(self.scale_reports + 1, SCALE_REPORTS)
            scale = self.scale_ms
            self.scale_ms = latency if scale is None else scale + (latency - scale) / k
            if self.ewma_ms is None:
                self._observe_latency(float(latency_ms), now)
        self.changed()

    def changed(self) -> None:
        """Tell every live cache watching this node that its telemetry changed."""
        for ref in self.watchers:
            cache = ref()
            if cache is not None:
                cache.add(self)

    def changed_for(self, kind) -> None:
        """:meth:`changed`, told only to the watching caches of type ``kind``: for a change
        only they read (advanced-ml's cached prediction, read by its cost books)."""
        for ref in self.watchers:
            cache = ref()
            if type(cache) is kind:
                cache.add(self)

    def add_watcher(self, cache) -> None:
        """Have ``cache.add(self)`` called on every :meth:`changed`, and
        ``cache.dispatched(self)`` on every dispatch if it has that method, while
        ``cache`` lives (held by a weak reference; dead ones are dropped here)."""
        self.remove_watcher(cache)
        ref = weakref.ref(cache)
        self.watchers += (ref,)
        if hasattr(cache, "dispatched"):
            self.dispatch_watchers += (ref,)

    def watched_by(self, kind) -> bool:
        """Whether a live cache of type ``kind`` watches this node."""
        for ref in self.watchers:
            if type(ref()) is kind:
                return True
        return False

    def remove_watcher(self, cache) -> None:
        """Undo :meth:`add_watcher` (and drop dead watchers)."""
        self.watchers = tuple(w for w in self.watchers if w() is not None and w() is not cache)
        self.dispatch_watchers = tuple(w for w in self.dispatch_watchers if w() is not None and w() is not cache)

    def steady_until(self, now: float) -> float:
        """Until when :meth:`in_flight` and ``outstanding.count`` keep their values
        unless an event (dispatch, result, load report) arrives: the load report
        going stale, or the outstanding ring forgetting its oldest bucket."""
        until = math.inf
        if self.report_time is not None and now - self.report_time <= REPORT_FRESH_S:
            until = self.report_time + REPORT_FRESH_S
        ring = self.outstanding
        if ring.total > 0 and ring.count(now) > 0:  # count() first moves the ring to now
            until = min(until, ring.until)
        return until

    # --- estimates ----------------------------------------------------------
    def _observe_latency(self, latency_ms: float, now: float) -> None:
        if self.ewma_ms is None or latency_ms > self.ewma_ms:
            self.ewma_ms = latency_ms  # peak: jump up at once
        else:
            w = math.exp(-max(now - self.ewma_time, 0.0) / PEAK_EWMA_DECAY_S)
            self.ewma_ms = self.ewma_ms * w + latency_ms * (1.0 - w)
        self.ewma_time = now

    def in_flight(self, now: float) -> float:
        """Requests in flight: the last load report corrected by this registry's
        dispatches and completions since; without a fresh report, the registry's
        own outstanding dispatches."""
        if self.report_time is not None and now - self.report_time <= REPORT_FRESH_S:
            # a conditional, not max(0.0, ...): every pick of most strategies calls this per
            # candidate, and the builtin's call cost three times the comparison
            q = self.reported_in_flight + self.dispatched_since_report - self.completed_since_report
            return q if q > 0.0 else 0.0
        return float(self.outstanding.count(now))

    def peak_ewma(self, now: float) -> float | None:
        """Peak-EWMA latency in ms, decaying towards zero while unobserved so
        that a node which was slow is retried eventually (as tower does)."""
        if self.ewma_ms is None:
            return None
        idle = now - self.ewma_time
        return self.ewma_ms * math.exp(-(idle if idle > 0.0 else 0.0) / PEAK_EWMA_DECAY_S)

    def snapshot(self, now: float) -> dict:
        return {
            "inFlight": self.in_flight(now),
            "latencyEwmaMs": self.peak_ewma(now),
            "errorRate": round(self.error_ewma, 6),
            "dispatches": self.dispatches,
            "results": self.results,
            "failures": self.failures,
            "reported": {
                "inFlight": self.reported_in_flight, "cpu": self.cpu, "qps": self.qps,
                "errorRate": self.error_rate, "latencyMs": self.reported_latency_ms,
            },
        }
