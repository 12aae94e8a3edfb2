"""Online learners (river) behind one small uniform interface.

Every learner has river's verbs: ``learn_one(x, y=None)``, ``predict_one(x)``
and ``score_one(x)`` (the latter two return ``None`` when not applicable or
not warmed up), plus ``status()``. ``x`` is the shared per-node feature row
(:func:`maxine.models.features.node_row`, named by ``FEATURES``).

- :class:`LatencyPredictor` — per service: standard-scaled linear regression
  (SGD) of log1p(latency) on the node's features, with its progressive
  (predict-then-learn) mean absolute error;
- :class:`AnomalyDetector` — per service: Half-Space Trees over the same
  features, min-max scaled first (HST assumes features in [0, 1]); high score =
  anomalous; scores only after ``warmup`` rows;
- :class:`DriftDetector` — per node: ADWIN over log1p(latency) / 10; ``learn_one``
  returns True when ADWIN reports a change (``drift_detected``).

All of them are confined to the hub's worker thread.
"""

from __future__ import annotations

import math
from functools import cached_property

from .features import FEATURES

# river takes ~2 s to import: each learner builds its river model on first use
# (in the hub's worker thread), so the server starts, and restarts, quickly.


def as_dict(row) -> dict:
    return dict(zip(FEATURES, row)) if not isinstance(row, dict) else row


class LatencyPredictor:
    kind = "river LinearRegression (latency)"

    def __init__(self, lr: float = 0.01):
        self.lr = lr
        self.n = 0
        self.mae = None  # EWMA of |log1p error|
        self.last_error: str | None = None

    @cached_property
    def model(self):
        from river import compose, linear_model, optim, preprocessing

        return compose.Pipeline(
            preprocessing.StandardScaler(),
            linear_model.LinearRegression(optimizer=optim.SGD(self.lr), l2=1e-4),
        )

    def learn_one(self, x, y: float | None = None) -> None:
        if y is None:
            return
        x = as_dict(x)
        target = math.log1p(max(y, 0.0))
        try:
            guess = self.model.predict_one(x)
            err = abs(guess - target)
            if math.isfinite(err):
                self.mae = err if self.mae is None else self.mae + 0.02 * (err - self.mae)
            self.model.learn_one(x, target)
            self.n += 1
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]

    def predict_one(self, x) -> float | None:
        if self.n < 20:
            return None
        v = self.model.predict_one(as_dict(x))
        return math.expm1(min(max(v, 0.0), 12.0)) if math.isfinite(v) else None

    def score_one(self, x) -> float | None:
        return None

    def status(self) -> dict:
        return {"kind": self.kind, "trainingRows": self.n,
                "maeLog": None if self.mae is None else round(self.mae, 4), "lastError": self.last_error}


class AnomalyDetector:
    kind = "river HalfSpaceTrees (MinMax-scaled features)"

    def __init__(self, window: int = 64, warmup: int | None = None, seed: int = 7):
        self.window, self.seed = window, seed
        self.warmup = 2 * window if warmup is None else warmup
        self.n = 0
        self.last_error: str | None = None

    @cached_property
    def model(self):
        from river import anomaly, compose, preprocessing

        return compose.Pipeline(
            preprocessing.MinMaxScaler(),
            anomaly.HalfSpaceTrees(n_trees=10, height=6, window_size=self.window, seed=self.seed),
        )

    def learn_one(self, x, y=None) -> None:
        try:
            self.model.learn_one(as_dict(x))
            self.n += 1
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]

    def predict_one(self, x) -> None:
        return None

    def score_one(self, x) -> float | None:
        """0..1 (high = anomalous), None while warming up."""
        if self.n < self.warmup:
            return None
        return float(self.model.score_one(as_dict(x)))

    def status(self) -> dict:
        return {"kind": self.kind, "trainingRows": self.n, "warm": self.n >= self.warmup,
                "lastError": self.last_error}


class DriftDetector:
    kind = "river ADWIN (node latency)"

    def __init__(self, delta: float = 0.002):
        self.delta = delta
        self.n = 0
        self.detections = 0
        self.last_change = None  # (before, after) estimations at the last drift

    @cached_property
    def model(self):
        from river import drift

        return drift.ADWIN(delta=self.delta)

    def learn_one(self, x, y: float | None = None) -> bool:
        value = x if y is None else y
        before = self.model.estimation
        self.model.update(math.log1p(max(float(value), 0.0)) / 10.0)
        self.n += 1
        if self.model.drift_detected:
            self.detections += 1
            self.last_change = (math.expm1(before * 10.0), math.expm1(self.model.estimation * 10.0))
            return True
        return False

    def predict_one(self, x) -> float | None:
        return math.expm1(self.model.estimation * 10.0) if self.n else None

    def score_one(self, x) -> None:
        return None

    def status(self) -> dict:
        return {"kind": self.kind, "samples": self.n, "detections": self.detections}
