"""Training the ``advanced-ml`` latency model (torch, in its own process).

Pipeline (all vectorised, no Python loop per row):

1. read the telemetry log (:mod:`maxine.training.telemetry_log`);
2. build features with THE feature code the server uses
   (:func:`maxine.models.features.feature_matrix`);
3. target = log(expected latency in ms of a request sent to that node now):
   the simulator's ground truth ``true_delay_ms`` where present, else the
   realised ``latency_ms`` (failed calls count as slow: × 5, like NodeState);
4. hold out the last ``holdout`` fraction of each run's time span (a time
   slice, not random rows: the model is judged on a future it did not see);
5. train a small ReLU MLP (Adam, MSE on the log target) with torch on CPU;
6. evaluate on the held-out slice: RMSE of the log, and how often the node the
   model ranks best among a decision's candidates is the truly best one;
7. write ``models/advanced-ml/<version>/`` (:mod:`maxine.models.artifacts`).

torch is imported here only; the server loads the numpy export.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from ..models.features import FEATURES, feature_matrix
from ..progress import Progress
from .telemetry_log import TelemetryLogError, read_log

MODEL = "advanced-ml"
FAIL_FACTOR = 5.0


class TrainError(Exception):
    """A clear reason the training cannot run (no traceback for the user)."""


def run_ids(now: np.ndarray) -> np.ndarray:
    """Runs are concatenated in the log: a run starts where time goes backwards."""
    if len(now) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([[0], np.cumsum(np.diff(now) < 0)]).astype(np.int64)


def dataset(cols: dict, holdout: float = 0.2):
    """(X, y, is_test, decision_key) from raw log columns."""
    x = feature_matrix(cols)
    true = cols["true_delay_ms"]
    realised = np.where(cols["success"] == 0, cols["latency_ms"] * FAIL_FACTOR, cols["latency_ms"])
    target = np.where(np.isfinite(true), true, realised)
    ok = np.isfinite(target) & (target > 0) & np.all(np.isfinite(x), axis=1)
    kind = cols.get("kind")
    if kind is not None:  # server logs also hold reports, load reports, call edges: learn from decisions
        ok &= kind == 0
    runs = run_ids(cols["now"])
    now = cols["now"]
    # per-run time span: test = the last `holdout` fraction of it
    n_runs = int(runs.max()) + 1 if len(runs) else 0
    t_min = np.full(n_runs, np.inf)
    t_max = np.full(n_runs, -np.inf)
    np.minimum.at(t_min, runs, now)
    np.maximum.at(t_max, runs, now)
    cut = t_max[runs] - holdout * (t_max[runs] - t_min[runs])
    is_test = now > cut
    key = runs * 10_000_000 + cols["decision"]
    return x[ok], np.log(target[ok]), is_test[ok], key[ok], cols["chosen"][ok]


def pick_agreement(pred: np.ndarray, y: np.ndarray, key: np.ndarray) -> float:
    """Fraction of decisions where the lowest prediction is (one of) the truly lowest."""
    if len(key) == 0:
        return float("nan")
    order = np.lexsort((pred, key))
    k_sorted = key[order]
    first = np.concatenate([[True], k_sorted[1:] != k_sorted[:-1]])
    best_pred_idx = order[first]
    order_y = np.lexsort((y, key))
    best_y = y[order_y][np.concatenate([[True], key[order_y][1:] != key[order_y][:-1]])]
    return float(np.mean(y[best_pred_idx] <= best_y + 1e-9))


def train(data_dir: str, epochs: int = 8, hidden: int = 64, layers: int = 2, batch: int = 4096, lr: float = 3e-3,
          holdout: float = 0.2, seed: int = 0, max_rows: int | None = None, progress: bool = True,
          threads: int = 1, max_seconds: float | None = 45.0) -> dict:
    """Train and return {'arrays', 'state_dict', 'metadata', ...} (not yet written).

    ``threads`` torch threads (default 1: this MLP is too small to gain from
    more, and on a busy 2-core machine two spinning OpenMP threads made an
    epoch 13x slower); ``max_seconds`` bounds the optimisation loop (it stops
    after the step that crosses it, and the metadata says so)."""
    t_start = time.perf_counter()
    try:
        reading = Progress(0, "read", enabled=progress)
        cols = read_log(data_dir, progress=lambda done, total: reading.update(done, total))
    except TelemetryLogError as exc:
        raise TrainError(str(exc)) from None
    if max_rows and len(cols["now"]) > max_rows:
        cols = {k: v[:max_rows] for k, v in cols.items()}
    t_read = time.perf_counter() - t_start
    x, y, is_test, key, chosen = dataset(cols, holdout)
    if len(y) < 100:
        raise TrainError(f"telemetry log {data_dir!r} has only {len(y)} usable rows (need >= 100 with a target)")
    train_idx = ~is_test
    if train_idx.sum() < 50 or is_test.sum() < 10:
        raise TrainError("not enough rows on both sides of the held-out time slice")
    t_feat = time.perf_counter() - t_start - t_read

    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(max(1, int(threads)))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    rng = np.random.default_rng(seed)
    xtr, ytr = x[train_idx], y[train_idx]
    mean = xtr.mean(axis=0)
    scale = xtr.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    xt = torch.from_numpy(((xtr - mean) / scale).astype(np.float32))
    yt = torch.from_numpy(ytr.astype(np.float32))
    dims = [x.shape[1]] + [hidden] * layers + [1]
    mods = []
    for k in range(len(dims) - 1):
        mods.append(torch.nn.Linear(dims[k], dims[k + 1]))
        if k < len(dims) - 2:
            mods.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*mods)
    with torch.no_grad():
        model[-1].bias.fill_(float(ytr.mean()))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(yt)
    steps_per_epoch = (n + batch - 1) // batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    t0 = time.perf_counter()
    deadline = t0 + max_seconds if max_seconds else float("inf")
    training = Progress(epochs, "train", enabled=progress)
    losses = []
    stopped_early = False
    for epoch in range(epochs):
        perm = torch.from_numpy(rng.permutation(n))
        total = 0.0
        seen = 0
        for s in range(steps_per_epoch):
            if time.perf_counter() > deadline:
                stopped_early = True
                break
            idx = perm[s * batch:(s + 1) * batch]
            pred = model(xt[idx]).squeeze(-1)
            loss = torch.mean((pred - yt[idx]) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        if seen:
            losses.append(total / seen)
        training.step()
        if stopped_early:
            if progress:
                sys.stderr.write(f"\ntraining stopped by the {max_seconds:.0f}s budget in epoch {epoch + 1}\n")
            break
    t_train = time.perf_counter() - t0

    arrays = {"mean": mean, "scale": scale}
    linear = [m for m in model if isinstance(m, torch.nn.Linear)]
    for k, m in enumerate(linear):
        arrays[f"W{k}"] = m.weight.detach().numpy().astype(np.float64).T.copy()
        arrays[f"b{k}"] = m.bias.detach().numpy().astype(np.float64).copy()
    from ..models.mlp import NumpyMLP

    mlp = NumpyMLP(arrays)
    metrics = evaluate(mlp, x[is_test], y[is_test], key[is_test])
    metrics["train_rmse_log"] = float(np.sqrt(losses[-1])) if losses else float("nan")
    metrics["baseline_rmse_log"] = float(np.sqrt(np.mean((y[is_test] - ytr.mean()) ** 2)))
    now = cols["now"]
    meta = {
        "model": MODEL,
        "kind": "mlp-latency",
        "target": "log expected latency ms (true_delay_ms, else realised latency; failures x5)",
        "features": list(FEATURES),
        "architecture": {"layers": dims, "activation": "relu"},
        "scaling": {"mean": mean.tolist(), "scale": scale.tolist()},
        "data": {"dir": data_dir, "rows": int(len(y)), "train_rows": int(train_idx.sum()),
                 "test_rows": int(is_test.sum()), "runs": int(run_ids(now).max() + 1),
                 "sim_time_range_s": [float(np.nanmin(now)), float(np.nanmax(now))],
                 "holdout": f"last {holdout:.0%} of each run's time span"},
        "training": {"epochs": epochs, "batch": batch, "lr": lr, "seed": seed, "loss": losses,
                     "threads": int(threads), "max_seconds": max_seconds, "stopped_early": stopped_early,
                     "seconds": {"read": round(t_read, 2), "features": round(t_feat, 2),
                                 "train": round(t_train, 2), "total": round(time.perf_counter() - t_start, 2)}},
        "metrics": metrics,
    }
    state_dict = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"arrays": arrays, "state_dict": state_dict, "metadata": meta}


def evaluate(mlp, x: np.ndarray, y: np.ndarray, key: np.ndarray) -> dict:
    pred = mlp.predict(x) if len(x) else np.zeros(0)
    err = pred - y
    return {
        "test_rmse_log": float(np.sqrt(np.mean(err ** 2))) if len(err) else float("nan"),
        "test_mae_log": float(np.mean(np.abs(err))) if len(err) else float("nan"),
        "test_pick_agreement": pick_agreement(pred, y, key),
        "test_rows": int(len(y)),
    }
