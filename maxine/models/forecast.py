"""Time-series forecasts (statsmodels Holt) of per-node latency and error rate.

The hub samples every node's Peak-EWMA latency and error rate on a timer into a
bounded :class:`Series`; :class:`Forecaster` fits a damped Holt (additive
trend) exponential smoothing to each series in a worker thread, never on the
event loop and never on the request path, at most ``max_fits`` series per
round (round-robin over the rest), and keeps the latest :class:`Forecast` per
series. A fit costs 4–120 ms here, so only its outputs are ever read per request.
With too few points, or if statsmodels fails, the forecast is an ordinary
least-squares line (numpy) — a forecast is always there, marked by ``method``.
"""

from __future__ import annotations

import math
import warnings
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
    """(time, value) samples at a roughly fixed interval, bounded."""

    __slots__ = ("t", "v")

    def __init__(self, maxlen: int = SERIES_POINTS):
        self.t = deque(maxlen=maxlen)
        self.v = deque(maxlen=maxlen)

    def add(self, t: float, value: float) -> None:
        self.t.append(t)
        self.v.append(value)

    def __len__(self) -> int:
        return len(self.v)


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

            res = Holt(y, damped_trend=True, initialization_method="estimated").fit()
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
    """Fits many series with a bounded cost per round; thread-confined (the hub's worker)."""

    def __init__(self, max_fits: int = 32):
        self.max_fits = max_fits
        self.forecasts: dict = {}  # key -> Forecast
        self._cursor = 0
        self.fits = 0
        self.last_error: str | None = None
        self.last_round_s = 0.0

    def round(self, series: dict, now: float) -> int:
        """Refit up to ``max_fits`` of ``series`` ({key: (times, values)}), oldest forecasts first."""
        import time as _time

        started = _time.perf_counter()
        keys = sorted(series, key=lambda k: self.forecasts[k].fitted_at if k in self.forecasts else -1.0)
        done = 0
        for key in keys[: self.max_fits]:
            times, values = series[key]
            try:
                fc = fit(times, values, now)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                continue
            if fc is not None:
                self.forecasts[key] = fc
                done += 1
        for key in [k for k in self.forecasts if k not in series]:
            del self.forecasts[key]
        self.fits += done
        self.last_round_s = _time.perf_counter() - started
        return done
