"""Training the ``anomaly`` model: an autoencoder over THE per-node feature row.

1. read the telemetry log; build each node observation's feature row with the
   server's code (:func:`maxine.models.features.feature_matrix`);
2. hold out the last ``holdout`` of each run's time span;
3. train on the healthy rows before the cut — where the log has the simulator's
   ground truth (``true_speed``, ``true_fail_rate``), a row is degraded when its
   node runs below :data:`SLOW_SPEED` of nominal speed or fails fast; a server
   log has no ground truth, so every row counts as healthy (anomalies are rare);
4. fit a bottleneck MLP (19 → 32 → 6 → 32 → 19) to reproduce the standardised
   row (:func:`maxine.training.train.fit_mlp`);
5. threshold = the :data:`QUANTILE` quantile of the training rows' reconstruction
   error (:func:`maxine.models.anomaly_model.reconstruction_error`);
6. on the held-out slice: ROC AUC of the error for "degraded", precision and
   recall at the threshold, the healthy rows flagged — against a baseline that
   scores a row by its Peak-EWMA latency alone.
"""

from __future__ import annotations

import time

import numpy as np

from ..models.anomaly_model import MODEL, reconstruction_error
from ..models.features import FEATURES, feature_matrix
from .train import TrainError, data_summary, fit_mlp, fit_sections, read_columns, run_ids, time_cut

SLOW_SPEED = 0.5      # a node below half its nominal speed is degraded (ground truth)
QUANTILE = 0.99       # of the training rows' reconstruction error
THRESHOLD_SAMPLE = 200_000
PEAK = FEATURES.index("peak_ewma_ms")
SIM = {"scenarios": ("homogeneous", "speed-spread-10x", "slow-server-middle", "rotating-slow", "ramps"),
       "behaviours": ("least-response-time", "p2c-peak-ewma"), "seeds": "10-12", "every": 20, "requests": 60000}


def observations(cols: dict):
    """(X, usable) over node observations: discoveries, client reports and load reports (not call edges)."""
    x = feature_matrix(cols)
    ok = np.all(np.isfinite(x), axis=1)
    kind = cols.get("kind")
    if kind is not None:
        ok &= kind != 3
    return x, ok


def degraded(cols: dict) -> tuple[np.ndarray, np.ndarray]:
    """(label, known): the simulator's ground truth where the log has it."""
    speed, fail = cols.get("true_speed"), cols.get("true_fail_rate")
    if speed is None:
        n = len(cols["now"])
        return np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    known = np.isfinite(speed)
    label = known & ((speed < SLOW_SPEED) | (np.nan_to_num(fail) > 0.0))
    return label, known


def roc_auc(score: np.ndarray, label: np.ndarray) -> float:
    """Probability that a degraded row scores above a healthy one (ties count half)."""
    pos, neg = int(label.sum()), int((~label).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(score)
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * neg))


def detection_metrics(score: np.ndarray, label: np.ndarray, threshold: float) -> dict:
    flagged = score > threshold
    tp = int((flagged & label).sum())
    return {"auc": roc_auc(score, label),
            "precision": float(tp / flagged.sum()) if flagged.any() else float("nan"),
            "recall": float(tp / label.sum()) if label.any() else float("nan"),
            "flagged_healthy": float((flagged & ~label).sum() / max(1, (~label).sum())),
            "rows": int(len(label)), "degraded_rows": int(label.sum())}


def train(data_dir: str, epochs: int = 6, hidden: int = 32, bottleneck: int = 6, batch: int = 4096,
          lr: float = 3e-3, holdout: float = 0.2, seed: int = 0, max_rows: int | None = None,
          progress: bool = True, threads: int = 1, max_seconds: float | None = 35.0) -> dict:
    t_start = time.perf_counter()
    cols = read_columns(data_dir, max_rows, progress)
    t_read = time.perf_counter() - t_start
    x, ok = observations(cols)
    label, known = degraded(cols)
    now = cols["now"]
    is_test = now > time_cut(now, run_ids(now), holdout)
    train_rows = ok & ~is_test & ~label
    test_rows = ok & is_test
    if train_rows.sum() < 100 or test_rows.sum() < 10:
        raise TrainError(f"telemetry log {data_dir!r} has too few usable rows ({int(train_rows.sum())} healthy "
                         f"before the held-out slice, {int(test_rows.sum())} in it; need 100 and 10)")
    t_feat = time.perf_counter() - t_start - t_read
    xtr = x[train_rows]
    mean = xtr.mean(axis=0)
    scale = np.where(xtr.std(axis=0) > 1e-6, xtr.std(axis=0), 1.0)
    fit = fit_mlp(xtr, (xtr - mean) / scale, [hidden, bottleneck, hidden], epochs, batch, lr, seed, threads,
                  max_seconds, progress)
    mlp = fit["mlp"]
    rng = np.random.default_rng(seed)
    sample = xtr if len(xtr) <= THRESHOLD_SAMPLE else xtr[rng.choice(len(xtr), THRESHOLD_SAMPLE, replace=False)]
    threshold = float(np.quantile(reconstruction_error(mlp, sample), QUANTILE))
    xte, lte = x[test_rows], label[test_rows]
    error = reconstruction_error(mlp, xte)
    metrics = {"threshold_quantile": QUANTILE, "test_error_p50": float(np.median(error)),
               "test_flagged": float(np.mean(error > threshold))}
    if known[test_rows].any():
        model = detection_metrics(error, lte, threshold)
        peak = xte[:, PEAK]  # baseline: the slowest-looking rows, flagging as many rows as the model does
        base_threshold = float(np.quantile(peak, 1.0 - max(metrics["test_flagged"], 1e-6)))
        baseline = detection_metrics(peak, lte, base_threshold)
        metrics.update({f"test_{k}": v for k, v in model.items()})
        metrics.update({f"baseline_peak_ewma_{k}": v for k, v in baseline.items() if k in ("auc", "precision", "recall")})
    meta = {
        "model": MODEL,
        "kind": "autoencoder-anomaly",
        "target": "the standardised feature row (reconstruction); score = mean squared error / threshold",
        "features": list(FEATURES),
        "threshold": threshold,
        "ground_truth": f"true_speed < {SLOW_SPEED} or true_fail_rate > 0 (simulator logs); trained on healthy rows",
        "data": {**data_summary(data_dir, cols, ok.sum(), train_rows.sum(), test_rows.sum(), holdout),
                 "degraded_rows": int(label[ok].sum()), "ground_truth_rows": int(known[ok].sum())},
        **fit_sections(fit, {"read": t_read, "features": t_feat, "train": fit["seconds"],
                             "total": time.perf_counter() - t_start}),
        "metrics": metrics,
    }
    return {"arrays": fit["arrays"], "state_dict": fit["state_dict"], "metadata": meta}


def summary(meta: dict) -> str:
    m = meta["metrics"]
    if "test_auc" not in m:
        return f"threshold={meta['threshold']:.3f} flagged={m['test_flagged']:.3%} (no ground truth in the log)"
    return (f"auc={m['test_auc']:.3f} (Peak-EWMA baseline {m['baseline_peak_ewma_auc']:.3f}) "
            f"precision={m['test_precision']:.3f} recall={m['test_recall']:.3f} "
            f"healthy flagged={m['test_flagged_healthy']:.3%}")


def replay(loaded, cols: dict) -> dict:
    """``maxine models eval anomaly --data``: detection metrics over a whole log."""
    x, ok = observations(cols)
    if not ok.any():
        raise TrainError("no usable rows")
    label, known = degraded(cols)
    error = reconstruction_error(loaded.mlp, x[ok])
    threshold = float(loaded.metadata["threshold"])
    out = {"rows": int(ok.sum()), "flagged": float(np.mean(error > threshold))}
    if known[ok].any():
        out.update(detection_metrics(error, label[ok], threshold))
        out["baseline_peak_ewma_auc"] = roc_auc(x[ok][:, PEAK], label[ok])
    return out
