"""Time-series forecasts (statsmodels Holt) of per-node latency and error rate.

The hub samples every node's Peak-EWMA latency and error rate on a timer into a
bounded :class:`Series`; :class:`Forecaster` fits a damped Holt (additive
trend) exponential smoothing to each series in a worker thread, never on the
event loop and never on the request path, at most ``max_fits`` series per
round (round-robin over the rest, each series at most every ``every_s``), and keeps the latest :class:`Forecast` per
series. A fit costs 4–120 ms here, so only its outputs are ever read per request.
With too few points, or if statsmodels fails, the forecast is an ordinary
least-squares line (numpy) — a forecast is always there, marked by ``method``.
"""

from __future__ import annotations

import math
import warnings
from array import array
from collections import deque
from dataclasses import dataclass

import numpy as np

warnings.filterwarnings("ignore", module=r"statsmodels(\..*)?$")

MIN_POINTS_HOLT = 10
SERIES_POINTS = 120


@dataclass(slots=True)
class Forecast:
    """A fitted series: ``level`` now, ``slope`` per second, ``resid`` (std of one-step errors)."""

    level: float
    slope: float
    resid: float
    points: int
    method: str
    fitted_at: float
    damping: float = 1.0

    def at(self, seconds: float) -> float:
        """The forecast ``seconds`` after the last point (damped trend summed)."""
        if self.damping >= 0.9999 or self.damping <= 0.0:
            return self.level + self.slope * seconds
        phi = self.damping
        # sum_{k=1..h} phi^k in closed form, h in steps of one second
        h = max(seconds, 0.0)
        return self.level + self.slope * phi * (1.0 - phi ** h) / (1.0 - phi)

    def confidence(self) -> float:
        """0..1: more points and smaller residuals relative to the level → higher."""
        scale = max(abs(self.level), 1e-6)
        fit = 1.0 / (1.0 + self.resid / scale)
        return round(max(0.0, min(1.0, fit * min(1.0, self.points / 30.0))), 3)


class Series:
    """(time, value) samples at a roughly fixed interval, bounded: a ring of
    C doubles (8 bytes a point, not a deque of float objects)."""

    __slots__ = ("_t", "_v", "_head", "maxlen")

    def __init__(self, maxlen: int = SERIES_POINTS):
        self._t = array("d")
        self._v = array("d")
        self._head = 0  # index of the oldest point once the ring is full
        self.maxlen = maxlen

    def add(self, t: float, value: float) -> None:
        if len(self._v) < self.maxlen:
            self._t.append(t)
            self._v.append(value)
        else:
            h = self._head
            self._t[h] = t
            self._v[h] = value
            self._head = (h + 1) % self.maxlen

    @property
    def t(self) -> list:
        h = self._head
        return self._t[h:].tolist() + self._t[:h].tolist()

    @property
    def v(self) -> list:
        h = self._head
        return self._v[h:].tolist() + self._v[:h].tolist()

    def last(self) -> float | None:
        if not self._v:
            return None
        return self._v[(self._head - 1) % len(self._v)]

    def __len__(self) -> int:
        return len(self._v)


_quieted = False


def _quiet_statsmodels() -> None:
    """statsmodels resets some filters on import; silence its fit warnings once, by category."""
    global _quieted
    if not _quieted:
        from statsmodels.tools.sm_exceptions import ConvergenceWarning, ValueWarning

        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        warnings.filterwarnings("ignore", category=ValueWarning)
        _quieted = True


def fit(times, values, now: float | None = None, use_statsmodels: bool = True) -> Forecast | None:
    """Fit one series; ``None`` with fewer than two points."""
    t = np.asarray(times, dtype=float)
    y = np.asarray(values, dtype=float)
    n = len(y)
    if n < 2:
        return None
    fitted_at = float(t[-1] if now is None else now)
    step = float(np.median(np.diff(t))) if n > 1 else 1.0
    step = step if step > 0 else 1.0
    if use_statsmodels and n >= MIN_POINTS_HOLT and float(np.ptp(y)) > 1e-9:
        try:
            from statsmodels.tsa.holtwinters import Holt

            _quiet_statsmodels()

            # SLSQP without the brute-force start grid: the same fit, ~20x cheaper than the default
            res = Holt(y, damped_trend=True, initialization_method="estimated").fit(method="SLSQP", use_brute=False)
            level = float(res.level[-1])
            slope = float(res.trend[-1]) / step
            phi = float(res.params.get("damping_trend", 1.0))
            resid = float(np.std(res.resid))
            if all(math.isfinite(v) for v in (level, slope, phi, resid)):
                # damping is per step; convert to per second
                return Forecast(level, slope, resid, n, "holt", fitted_at, phi ** (1.0 / step))
        except Exception:  # statsmodels failing on odd data falls back to a line
            pass
    # least squares line over the series, level at the last point
    tc = t - t[-1]
    if float(np.ptp(tc)) <= 0.0:
        return Forecast(float(y[-1]), 0.0, 0.0, n, "last", fitted_at)
    slope, intercept = np.polyfit(tc, y, 1)
    resid = float(np.std(y - (slope * tc + intercept)))
    return Forecast(float(intercept), float(slope), resid, n, "linear", fitted_at)


class Forecaster:
    """Fits many series with a bounded cost per round; thread-confined (the hub's worker).

    Series keys are registered with :meth:`add`; each round looks at a bounded
    number of keys round-robin and refits at most ``max_fits`` of those whose
    forecast is older than ``every_s`` (so the cost of a round does not depend
    on how many series exist)."""

    def __init__(self, max_fits: int = 2, every_s: float = 5.0):
        self.max_fits = max_fits
        self.every_s = every_s
        self.forecasts: dict = {}  # key -> Forecast
        self.queue: deque = deque()
        self.keys: set = set()
        self.fits = 0
        self.last_error: str | None = None
        self.last_round_s = 0.0

    def add(self, key) -> None:
        if key not in self.keys:
            self.keys.add(key)
            self.queue.append(key)

    def discard(self, key) -> bool:
        """Forget a series; True if it had a forecast."""
        self.keys.discard(key)  # its queue entry is dropped when reached
        return self.forecasts.pop(key, None) is not None

    def round(self, series_of, now: float, between=None) -> dict:
        """Refit up to ``max_fits`` due series; ``series_of(key)`` → (times, values) or None;
        ``between()``, if given, is called before each fit. Returns {key: Forecast} of the fits made."""
        import time as _time

        started = _time.perf_counter()
        done: dict = {}
        queue = self.queue
        budget = min(len(queue), max(64, 16 * self.max_fits))
        while budget > 0 and len(done) < self.max_fits:
            budget -= 1
            key = queue.popleft()
            if key not in self.keys:
                continue
            queue.append(key)
            fc = self.forecasts.get(key)
            if fc is not None and now - fc.fitted_at < self.every_s:
                continue
            data = series_of(key)
            if data is None:
                continue
            times, values = data
            if between is not None:
                between()
            try:
                fc = fit(times, values, now)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                continue
            if fc is not None:
                self.forecasts[key] = fc
                done[key] = fc
        self.fits += len(done)
        self.last_round_s = _time.perf_counter() - started
        return done
