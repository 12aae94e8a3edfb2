"""Training the ``advanced-ml`` latency model (torch, in its own process), and
the pieces every trainer shares (:func:`read_columns`, :func:`latency_target`,
:func:`time_cut`, :func:`fit_mlp`, :func:`data_summary`; ``train_anomaly.py``
and ``train_forecast.py`` use them).

Pipeline (all vectorised, no Python loop per row):

1. read the telemetry log (:mod:`maxine.training.telemetry_log`);
2. build features with THE feature code the server uses
   (:func:`maxine.models.features.feature_matrix`, then its scale-free view
   :func:`~maxine.models.features.relative_matrix`: times in units of the
   node's own latency scale s);
3. target = log(expected latency in ms of a request sent to that node now)
   − log s: the simulator's ground truth ``true_delay_ms`` where present, else
   the realised ``latency_ms`` (failed calls count as slow: × 5, like
   NodeState); the server adds log s back;
4. hold out the last ``holdout`` fraction of each run's time span (a time
   slice, not random rows: the model is judged on a future it did not see);
5. train ``members`` small ReLU MLPs (Adam, MSE on the log target) with torch
   on CPU, from consecutive seeds, and export their mean as one net;
6. evaluate on the held-out slice: RMSE of the log, and how often the node the
   model ranks best among a decision's candidates is the truly best one;
7. write ``models/advanced-ml/<version>/`` (:mod:`maxine.models.artifacts`).

torch is imported here only; the server loads the numpy export.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from ..models.features import RELATIVE_FEATURES, feature_matrix, relative_matrix
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


def latency_target(cols: dict) -> np.ndarray:
    """Latency in ms a request to the node saw or would see: the simulator's ``true_delay_ms``,
    else the realised latency (failures × :data:`FAIL_FACTOR`, as NodeState counts them); NaN if neither."""
    true = cols["true_delay_ms"]
    realised = np.where(cols["success"] == 0, cols["latency_ms"] * FAIL_FACTOR, cols["latency_ms"])
    return np.where(np.isfinite(true), true, realised)


def time_cut(now: np.ndarray, runs: np.ndarray, holdout: float) -> np.ndarray:
    """Per row, the time after which its run is held out: the last ``holdout`` fraction of the run's span."""
    n_runs = int(runs.max()) + 1 if len(runs) else 0
    t_min = np.full(n_runs, np.inf)
    t_max = np.full(n_runs, -np.inf)
    np.minimum.at(t_min, runs, now)
    np.maximum.at(t_max, runs, now)
    return t_max[runs] - holdout * (t_max[runs] - t_min[runs])


def dataset(cols: dict, holdout: float = 0.2):
    """(X, y, log_scale, is_test, decision_key, chosen) from raw log columns: X the scale-free rows
    (:func:`~maxine.models.features.relative_matrix`), y the log latency in ms; the model learns
    ``y - log_scale``."""
    x, log_scale = relative_matrix(feature_matrix(cols), cols["scale_ms"])
    target = latency_target(cols)
    ok = np.isfinite(target) & (target > 0) & np.all(np.isfinite(x), axis=1)
    kind = cols.get("kind")
    if kind is not None:  # server logs also hold reports, load reports, call edges: learn from decisions
        ok &= kind == 0
    runs = run_ids(cols["now"])
    now = cols["now"]
    is_test = now > time_cut(now, runs, holdout)
    key = runs * 10_000_000 + cols["decision"]
    return x[ok], np.log(target[ok]), log_scale[ok], is_test[ok], key[ok], cols["chosen"][ok]


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


def read_columns(data_dir: str, max_rows: int | None = None, progress: bool = True) -> dict:
    """The log's columns (the first ``max_rows`` rows), with a progress bar; :class:`TrainError` if unusable."""
    try:
        reading = Progress(0, "read", enabled=progress)
        cols = read_log(data_dir, progress=lambda done, total: reading.update(done, total))
    except TelemetryLogError as exc:
        raise TrainError(str(exc)) from None
    if max_rows and len(cols["now"]) > max_rows:
        cols = {k: v[:max_rows] for k, v in cols.items()}
    return cols


def fit_mlp(x: np.ndarray, y: np.ndarray, hidden: list[int], epochs: int, batch: int = 4096, lr: float = 3e-3,
            seed: int = 0, threads: int = 1, max_seconds: float | None = 45.0, progress: bool = True,
            label: str = "train") -> dict:
    """Standardise ``x``, fit a ReLU MLP ``x → hidden... → y`` (MSE, Adam, one-cycle LR) with torch on CPU,
    and export it for :class:`maxine.models.mlp.NumpyMLP`. ``y`` is (n,) or (n, k).

    ``threads`` torch threads (default 1: these MLPs are too small to gain from
    more, and on a busy 2-core machine two spinning OpenMP threads made an
    epoch 13x slower); ``max_seconds`` bounds the optimisation loop (it stops
    after the step that crosses it, and the result says so)."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(max(1, int(threads)))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    rng = np.random.default_rng(seed)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    xt = torch.from_numpy(((x - mean) / scale).astype(np.float32))
    yt = torch.from_numpy(y.astype(np.float32))
    n_out = 1 if y.ndim == 1 else y.shape[1]
    dims = [x.shape[1]] + list(hidden) + [n_out]
    mods = []
    for k in range(len(dims) - 1):
        mods.append(torch.nn.Linear(dims[k], dims[k + 1]))
        if k < len(dims) - 2:
            mods.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*mods)
    with torch.no_grad():
        model[-1].bias.copy_(torch.as_tensor(np.atleast_1d(y.mean(axis=0)), dtype=torch.float32))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(yt)
    steps_per_epoch = (n + batch - 1) // batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    t0 = time.perf_counter()
    deadline = t0 + max_seconds if max_seconds else float("inf")
    training = Progress(epochs, label, enabled=progress)
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
            pred = model(xt[idx])
            if n_out == 1:
                pred = pred.squeeze(-1)
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
    arrays = {"mean": mean, "scale": scale}
    linear = [m for m in model if isinstance(m, torch.nn.Linear)]
    for k, m in enumerate(linear):
        arrays[f"W{k}"] = m.weight.detach().numpy().astype(np.float64).T.copy()
        arrays[f"b{k}"] = m.bias.detach().numpy().astype(np.float64).copy()
    from ..models.mlp import NumpyMLP

    return {"arrays": arrays, "mlp": NumpyMLP(arrays), "dims": dims, "losses": losses,
            "stopped_early": stopped_early, "seconds": time.perf_counter() - t0,
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "settings": {"epochs": epochs, "batch": batch, "lr": lr, "seed": seed, "loss": losses,
                         "threads": int(threads), "max_seconds": max_seconds, "stopped_early": stopped_early}}


def fit_sections(fit: dict, seconds: dict) -> dict:
    """The ``architecture``, ``scaling`` and ``training`` sections of every model's
    metadata, from :func:`fit_mlp`'s result and the steps' timings (seconds)."""
    arrays = fit["arrays"]
    return {"architecture": {"layers": fit["dims"], "activation": "relu"},
            "scaling": {"mean": arrays["mean"].tolist(), "scale": arrays["scale"].tolist()},
            "training": {**fit["settings"], "seconds": {k: round(v, 2) for k, v in seconds.items()}}}


def data_summary(data_dir: str, cols: dict, rows: int, train_rows: int, test_rows: int, holdout: float) -> dict:
    """The ``data`` section of every model's metadata."""
    now = cols["now"]
    return {"dir": data_dir, "rows": int(rows), "train_rows": int(train_rows), "test_rows": int(test_rows),
            "runs": int(run_ids(now).max() + 1), "sim_time_range_s": [float(np.nanmin(now)), float(np.nanmax(now))],
            "holdout": f"last {holdout:.0%} of each run's time span"}


def train(data_dir: str, epochs: int = 8, hidden: int = 64, layers: int = 2, batch: int = 4096, lr: float = 3e-3,
          holdout: float = 0.2, seed: int = 0, max_rows: int | None = None, progress: bool = True,
          threads: int = 1, max_seconds: float | None = 45.0, members: int = 3) -> dict:
    """Train ``advanced-ml`` and return {'arrays', 'state_dict', 'metadata'} (not yet written);
    ``threads`` and ``max_seconds`` as in :func:`fit_mlp`. ``members`` > 1 trains
    that many nets from seeds ``seed``, ``seed + 1``, ... on the same rows and
    exports their mean as one net (:func:`maxine.models.mlp.ensemble_arrays`):
    near-identical nets differ in how they route even fleets by more than any
    recipe change did, and the mean evens that out."""
    t_start = time.perf_counter()
    cols = read_columns(data_dir, max_rows, progress)
    t_read = time.perf_counter() - t_start
    x, y, log_scale, is_test, key, chosen = dataset(cols, holdout)
    if len(y) < 100:
        raise TrainError(f"telemetry log {data_dir!r} has only {len(y)} usable rows (need >= 100 with a target)")
    train_idx = ~is_test
    if train_idx.sum() < 50 or is_test.sum() < 10:
        raise TrainError("not enough rows on both sides of the held-out time slice")
    t_feat = time.perf_counter() - t_start - t_read
    ytr = y[train_idx]
    xtr, target = x[train_idx], ytr - log_scale[train_idx]
    fits = [fit_mlp(xtr, target, [hidden] * layers, epochs, batch, lr, seed + k, threads, max_seconds, progress,
                    label=f"train {k + 1}/{members}" if members > 1 else "train")
            for k in range(max(1, members))]
    fit = fits[0] if len(fits) == 1 else _ensemble(fits)
    losses = fit["losses"]
    metrics = evaluate(fit["mlp"], x[is_test], y[is_test], log_scale[is_test], key[is_test])
    metrics["train_rmse_log"] = float(np.sqrt(losses[-1])) if losses else float("nan")
    metrics["baseline_rmse_log"] = float(np.sqrt(np.mean((y[is_test] - ytr.mean()) ** 2)))
    meta = {
        "model": MODEL,
        "kind": "mlp-latency",
        "target": "log(expected latency ms / the node's latency scale s) (true_delay_ms, else realised latency; "
                  "failures x5); the server adds log s",
        "features": list(RELATIVE_FEATURES),
        "data": data_summary(data_dir, cols, len(y), train_idx.sum(), is_test.sum(), holdout),
        **fit_sections(fit, {"read": t_read, "features": t_feat, "train": fit["seconds"],
                             "total": time.perf_counter() - t_start}),
        "metrics": metrics,
    }
    return {"arrays": fit["arrays"], "state_dict": fit["state_dict"], "metadata": meta}


def _ensemble(fits: list[dict]) -> dict:
    """:func:`fit_mlp`'s result for the mean of ``fits``' nets (one net, see ``train``)."""
    from ..models.mlp import NumpyMLP, ensemble_arrays

    arrays = ensemble_arrays([f["arrays"] for f in fits])
    dims = [arrays["W0"].shape[0]] + [arrays[f"W{k}"].shape[1] for k in range(len(fits[0]["dims"]) - 1)]
    epochs = min(len(f["losses"]) for f in fits)  # a time budget may stop members at different epochs
    losses = np.mean([f["losses"][:epochs] for f in fits], axis=0).tolist() if epochs else []
    stopped_early = any(f["stopped_early"] for f in fits)
    return {"arrays": arrays, "mlp": NumpyMLP(arrays), "dims": dims, "losses": losses,
            "stopped_early": stopped_early, "seconds": sum(f["seconds"] for f in fits),
            "state_dict": {f"member{k}.{name}": t for k, f in enumerate(fits) for name, t in f["state_dict"].items()},
            "settings": {**fits[0]["settings"], "members": len(fits), "member_dims": fits[0]["dims"],
                         "seeds": [f["settings"]["seed"] for f in fits], "loss": losses,
                         "member_loss": [f["losses"] for f in fits], "stopped_early": stopped_early}}


def summary(meta: dict) -> str:
    m = meta["metrics"]
    return (f"test_rmse_log={m['test_rmse_log']:.3f} (baseline {m['baseline_rmse_log']:.3f}) "
            f"pick_agreement={m['test_pick_agreement']:.3f}")


def replay(loaded, cols: dict) -> dict:
    """``maxine models eval advanced-ml --data``: prediction metrics over a whole log."""
    x, y, log_scale, _, key, _ = dataset(cols, holdout=0.0)
    if len(y) == 0:
        raise TrainError("no rows with a target")
    return evaluate(loaded.mlp, x, y, log_scale, key)


def evaluate(mlp, x: np.ndarray, y: np.ndarray, log_scale: np.ndarray, key: np.ndarray) -> dict:
    """Errors of the predicted log latency (ms) against ``y``, and how often the lowest prediction of a
    decision is its truly fastest node."""
    pred = mlp.predict(x) + log_scale if len(x) else np.zeros(0)
    err = pred - y
    return {
        "test_rmse_log": float(np.sqrt(np.mean(err ** 2))) if len(err) else float("nan"),
        "test_mae_log": float(np.mean(np.abs(err))) if len(err) else float("nan"),
        "test_pick_agreement": pick_agreement(pred, y, key),
        "test_rows": int(len(y)),
    }
