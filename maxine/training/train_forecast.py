"""Training the ``forecast`` model: a node's latency ``horizon`` seconds ahead.

1. read the telemetry log; each node observation's feature row with the
   server's code, next to the same node's row :data:`~maxine.models.features.LAG_S`
   earlier (:func:`~maxine.models.features.lagged_matrix`, the rule the hub
   applies to its per-node row history);
2. target = log of the mean Peak-EWMA latency (the ``peak_ewma_ms`` feature:
   what ``/predict-health`` calls ``currentResponseTime`` and what its Holt
   fit forecasts) of the same node's rows within ± ``window`` seconds of
   ``now + horizon`` (at least 3 rows);
3. held-out time slice: test = rows after each run's cut; training rows end
   ``horizon + window`` before it, so no target comes from the held-out slice;
4. fit a ReLU MLP (38 → 32 → 32 → 1) with torch (:func:`maxine.training.train.fit_mlp`);
5. on the held-out slice, against two baselines that forecast from the
   Peak-EWMA the server forecasts today: "last value" (it stays as it is) and
   statsmodels Holt (damped, :func:`maxine.models.forecast.fit`, on the node's
   Peak-EWMA sampled each second over the last 120 s, on a sample of rows — a
   fit costs ~10–30 ms): RMSE of the log latency, and how often the forecast
   gets the direction of a change of more than 20 % right.
"""

from __future__ import annotations

import time

import numpy as np

from ..models.features import FEATURES, LAG_S, LAGGED_FEATURES, lagged_matrix
from ..models.forecast import SERIES_POINTS, fit as holt_fit
from ..models.forecast_model import MODEL
from ..progress import Progress
from .train import TrainError, data_summary, fit_mlp, fit_sections, read_columns, run_ids, time_cut
from .train_anomaly import SIM, observations  # the same simulator runs and node observations

HORIZON_S = 30.0
WINDOW_S = 2.5
MIN_SAMPLES = 3
CHANGE = 0.2          # a "change" for the direction metric: ≥ 20 % up or down
HOLT_SAMPLE = 200
PEAK = FEATURES.index("peak_ewma_ms")
FLOOR_MS = 0.1        # logs of forecasts are taken of max(value, FLOOR_MS)
__all__ = ["SIM", "train", "summary", "replay", "dataset"]


def peak_ms(x: np.ndarray) -> np.ndarray:
    """The node's Peak-EWMA latency (ms) from a feature row."""
    return np.expm1(x[:, PEAK])


def groups(cols: dict) -> np.ndarray:
    """One id per node per run."""
    return run_ids(cols["now"]) * 1_000_000 + np.nan_to_num(cols["node"]).astype(np.int64)


def future_mean(now: np.ndarray, group: np.ndarray, value: np.ndarray, horizon: float, window: float):
    """Per row: the mean of the finite ``value`` of its group within ± ``window`` of ``now + horizon``
    (NaN with fewer than :data:`MIN_SAMPLES`)."""
    n = len(now)
    out = np.full(n, np.nan)
    order = np.lexsort((now, group))
    g, t, v = group[order], now[order], value[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(g)) + 1, [n]]) if n else np.zeros(1, dtype=int)
    for a, b in zip(starts[:-1], starts[1:]):
        tt, vv = t[a:b], v[a:b]
        valid = np.isfinite(vv)
        csum = np.concatenate([[0.0], np.cumsum(np.where(valid, vv, 0.0))])
        ccnt = np.concatenate([[0], np.cumsum(valid)])
        lo = np.searchsorted(tt, tt + horizon - window, side="left")
        hi = np.searchsorted(tt, tt + horizon + window, side="right")
        cnt = ccnt[hi] - ccnt[lo]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[order[a:b]] = np.where(cnt >= MIN_SAMPLES, (csum[hi] - csum[lo]) / np.maximum(cnt, 1), np.nan)
    return out


def dataset(cols: dict, holdout: float = 0.2, horizon: float = HORIZON_S, window: float = WINDOW_S):
    """(X lagged, y log future ms, is_train, is_test, group)."""
    x, ok = observations(cols)
    now = cols["now"]
    group = groups(cols)
    xl, has_lag = lagged_matrix(x, now, group)
    peak = peak_ms(x)
    future = future_mean(now, group, np.where(ok & (peak > 0), peak, np.nan), horizon, window)
    ok &= has_lag & np.isfinite(future) & (future > 0)
    cut = time_cut(now, run_ids(now), holdout)
    is_test = ok & (now > cut)
    is_train = ok & (now + horizon + window <= cut)
    y = np.log(np.where(ok, future, 1.0))
    return xl, y, is_train, is_test, group


def holt_forecasts(now: np.ndarray, xl: np.ndarray, group: np.ndarray, rows: np.ndarray, horizon: float,
                   progress: bool) -> np.ndarray:
    """The baseline the server has today, per row: Holt over the node's Peak-EWMA sampled once a second."""
    peak = peak_ms(xl)
    order = np.lexsort((now, group))
    g_sorted, t_sorted = group[order], now[order]
    bar = Progress(len(rows), "holt baseline", enabled=progress)
    out = np.full(len(rows), np.nan)
    for k, r in enumerate(rows):
        a = np.searchsorted(g_sorted, group[r], side="left")
        b = np.searchsorted(g_sorted, group[r], side="right")
        tt = t_sorted[a:b]
        grid = np.arange(now[r] - SERIES_POINTS + 1, now[r] + 1e-9, 1.0)
        j = np.searchsorted(tt, grid, side="right") - 1
        keep = j >= 0
        if keep.sum() >= 2:
            fc = holt_fit(grid[keep], peak[order[a + j[keep]]], now[r])
            out[k] = max(fc.at(horizon), 0.0)
        bar.step()
    return out


def direction_hits(pred_log: np.ndarray, current_log: np.ndarray, y: np.ndarray) -> float:
    """Among rows whose latency changes by more than CHANGE, how often the forecast moves the same way."""
    moved = np.abs(y - current_log) > np.log1p(CHANGE)
    if not moved.any():
        return float("nan")
    return float(np.mean(np.sign(pred_log[moved] - current_log[moved]) == np.sign(y[moved] - current_log[moved])))


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2))) if len(a) else float("nan")


def scores(model_log, last_log, y) -> dict:
    return {"rmse_log": rmse(model_log, y), "last_value_rmse_log": rmse(last_log, y),
            "direction": direction_hits(model_log, last_log, y),
            "rows": int(len(y))}


def train(data_dir: str, epochs: int = 8, hidden: int = 32, layers: int = 2, batch: int = 4096, lr: float = 3e-3,
          holdout: float = 0.2, seed: int = 0, max_rows: int | None = None, progress: bool = True,
          threads: int = 1, max_seconds: float | None = 30.0, horizon: float = HORIZON_S,
          holt_sample: int = HOLT_SAMPLE) -> dict:
    t_start = time.perf_counter()
    cols = read_columns(data_dir, max_rows, progress)
    t_read = time.perf_counter() - t_start
    xl, y, is_train, is_test, group = dataset(cols, holdout, horizon)
    if is_train.sum() < 100 or is_test.sum() < 10:
        raise TrainError(f"telemetry log {data_dir!r} has too few rows with a target {horizon:g} s ahead "
                         f"({int(is_train.sum())} before the held-out slice, {int(is_test.sum())} in it; need 100 "
                         f"and 10): runs must be longer than {horizon / holdout:g} s")
    t_feat = time.perf_counter() - t_start - t_read
    fit = fit_mlp(xl[is_train], y[is_train], [hidden] * layers, epochs, batch, lr, seed, threads, max_seconds,
                  progress)
    mlp = fit["mlp"]
    t_eval = time.perf_counter()
    test = np.flatnonzero(is_test & (peak_ms(xl) > 0))  # rows where the server has a Peak-EWMA to forecast from
    pred = mlp.predict(xl[test])
    last = np.log(np.maximum(peak_ms(xl[test]), FLOOR_MS))
    metrics = {f"test_{k}": v for k, v in scores(pred, last, y[test]).items()}
    metrics["test_mean_rmse_log"] = rmse(np.full(len(test), y[is_train].mean()), y[test])
    if holt_sample and len(test):
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(test), min(holt_sample, len(test)), replace=False))
        holt = np.log(np.maximum(holt_forecasts(cols["now"], xl, group, test[pick], horizon, progress), FLOOR_MS))
        sub = scores(pred[pick], last[pick], y[test][pick])
        sub["holt_rmse_log"] = rmse(holt, y[test][pick])
        sub["holt_direction"] = direction_hits(holt, last[pick], y[test][pick])
        metrics["holt_sample"] = sub
    t_eval = time.perf_counter() - t_eval
    meta = {
        "model": MODEL,
        "kind": "mlp-forecast",
        "target": f"log mean Peak-EWMA latency ms of the node's rows within +-{WINDOW_S:g} s of now + {horizon:g} s",
        "features": list(LAGGED_FEATURES),
        "horizon_s": horizon, "lag_s": LAG_S, "window_s": WINDOW_S,
        "data": data_summary(data_dir, cols, is_train.sum() + is_test.sum(), is_train.sum(), is_test.sum(), holdout),
        **fit_sections(fit, {"read": t_read, "features": t_feat, "train": fit["seconds"], "evaluate": t_eval,
                             "total": time.perf_counter() - t_start}),
        "metrics": metrics,
    }
    return {"arrays": fit["arrays"], "state_dict": fit["state_dict"], "metadata": meta}


def summary(meta: dict) -> str:
    m = meta["metrics"]
    out = (f"test_rmse_log={m['test_rmse_log']:.3f} (last value {m['test_last_value_rmse_log']:.3f}, "
           f"mean {m['test_mean_rmse_log']:.3f}) direction={m['test_direction']:.3f}")
    h = m.get("holt_sample")
    if h:
        out += f"; on {h['rows']} rows: model {h['rmse_log']:.3f} vs Holt {h['holt_rmse_log']:.3f}"
    return out


def replay(loaded, cols: dict) -> dict:
    """``maxine models eval forecast --data``: forecast metrics over a whole log (no Holt fits)."""
    horizon = float(loaded.metadata.get("horizon_s", HORIZON_S))
    xl, y, _, is_test, _ = dataset(cols, holdout=1.0, horizon=horizon)
    rows = np.flatnonzero(is_test & (peak_ms(xl) > 0))
    if len(rows) == 0:
        raise TrainError(f"no rows with a target {horizon:g} s ahead")
    return scores(loaded.mlp.predict(xl[rows]), np.log(np.maximum(peak_ms(xl[rows]), FLOOR_MS)), y[rows])
