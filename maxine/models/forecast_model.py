"""The learned latency forecast: a torch-trained MLP served in numpy.

The ``forecast`` artifact (``models/forecast/<version>/``) predicts the log of
a node's Peak-EWMA latency (what ``/predict-health`` reports as
``currentResponseTime``) ``horizon_s`` seconds from now (metadata), from the node's feature row now and its row
:data:`~maxine.models.features.LAG_S` seconds ago
(:data:`~maxine.models.features.LAGGED_FEATURES`). The hub keeps each tracked
node's recent rows (:class:`RowHistory`), picks the lagged one with THE rule
the trainer uses (:func:`~maxine.models.features.lag_index`), and predicts in
one batched forward per round in its worker thread. ``/predict-health`` uses
the result for windows up to the horizon (method ``learned``) and the
statsmodels Holt forecast beyond it or when no artifact is loaded. numpy only.
"""

from __future__ import annotations

from array import array

import numpy as np

from .features import LAG_S, LAG_TOLERANCE_S, lag_index

MODEL = "forecast"
HISTORY_S = LAG_S + LAG_TOLERANCE_S + 2.0  # rows kept per node: enough to find the lagged one


class RowHistory:
    """One node's recent (time, feature row) pairs, oldest first, bounded by age."""

    __slots__ = ("times", "rows")

    def __init__(self):
        self.times = array("d")
        self.rows: list = []

    def add(self, now: float, row) -> None:
        self.times.append(now)
        self.rows.append(row)
        drop = 0
        while drop < len(self.times) - 1 and self.times[drop] < now - HISTORY_S:
            drop += 1
        if drop:
            del self.times[:drop]
            del self.rows[:drop]

    def lagged_input(self, now: float, row) -> list | None:
        """``row`` followed by the row :func:`lag_index` picks, or None without one."""
        j = int(lag_index(self.times, now))
        if j < 0:
            return None
        return list(row) + list(self.rows[j])


def horizon_of(loaded) -> float:
    return float(loaded.metadata["horizon_s"])


def confidence_of(loaded) -> float:
    """0..1: how much of the "last value" baseline's held-out error the model removed (metadata)."""
    m = loaded.metadata.get("metrics", {})
    try:
        skill = 1.0 - float(m["test_rmse_log"]) / float(m["test_last_value_rmse_log"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return 0.0
    return round(min(max(skill, 0.0), 1.0), 3) if np.isfinite(skill) else 0.0


def predict_many(loaded, inputs) -> np.ndarray:
    """Forecast latency (ms) ``horizon_s`` ahead per input row."""
    return np.exp(loaded.mlp.predict(np.asarray(inputs, dtype=np.float64)))


def at(current_ms: float | None, forecast_ms: float, horizon_s: float, seconds: float) -> float:
    """The forecast ``seconds`` ahead: linear from now to the horizon (used only up to it)."""
    if current_ms is None:
        return forecast_ms
    f = min(max(seconds / horizon_s, 0.0), 1.0)
    return current_ms + (forecast_ms - current_ms) * f
