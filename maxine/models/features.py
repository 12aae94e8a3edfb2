"""THE per-node feature row, shared by serving and training.

One definition of what a learned model sees about a node, in two forms that
produce the same numbers:

- :func:`feature_matrix` — vectorised numpy over columns of raw NodeState
  fields (training, replay, evaluation: one row per logged decision);
- :func:`node_features` — one node's row from its live
  :class:`maxine.telemetry.NodeState` (``feature_matrix`` over a single row, so
  the same object computes it), and :func:`node_row`, a pure-Python copy of the
  same arithmetic for the hot path (a few µs per node instead of ~40 µs of numpy
  call overhead); the tests assert ``node_row == feature_matrix`` on random
  and edge-case states.

Raw columns (:data:`RAW`) are the NodeState fields at decision time ``now``
(seconds) with ``None`` as NaN; :func:`raw_row` reads them from a node. The
telemetry log (``maxine.training.telemetry_log``) stores these raw columns, so
a log written today can be re-featurised by a later feature version.

Stable API: ``FEATURES``, ``RAW``, ``FEATURE_VERSION``, ``raw_row(state, now)``,
``node_features(node, now)``, ``node_row(state, now)``, ``feature_matrix(columns)``.

The forecast model sees a node's row now and its row :data:`LAG_S` seconds
earlier (:data:`LAGGED_FEATURES`); :func:`lag_index` is THE rule that picks the
earlier row, used on a sorted time array by the trainer (vectorised) and on a
node's short row history by the hub (one node).
"""

from __future__ import annotations

import math

import numpy as np

from ..telemetry import PEAK_EWMA_DECAY_S, REPORT_FRESH_S  # the same decay and freshness as NodeState

FEATURE_VERSION = 1

# raw NodeState columns at decision time (NaN = unknown)
RAW: tuple[str, ...] = (
    "now", "report_time", "reported_in_flight", "dispatched_since_report", "completed_since_report",
    "outstanding", "reported_latency_ms", "cpu", "qps", "error_rate", "ewma_ms", "ewma_time",
    "error_ewma", "last_latency_ms", "last_result_time", "prev_dispatched", "prev_interval_s", "scale_ms",
)

FEATURES: tuple[str, ...] = (
    "age_s",             # seconds since the last load report (capped; 10 without one)
    "has_report",        # 1 if a load report is known
    "rif_reported",      # log1p(in-flight in the last report)
    "dispatched_since",  # log1p(this registry's dispatches since that report)
    "completed_since",   # log1p(reports of completions since)
    "rif_est",           # log1p(reported + dispatched - completed), else own outstanding
    "share",             # fraction of the node's traffic this registry dispatches (1 if unknown)
    "rif_scaled",        # log1p(reported + (dispatched - completed) / share)
    "outstanding",       # log1p(own unreported dispatches)
    "svc_p50_ms",        # log1p(reported p50 service time)
    "svc_busy_ms",       # log1p(utilisation / qps: busy ms per completion), else p50
    "drain",             # log1p(expected completions since the report: age × qps)
    "peak_ewma_ms",      # log1p(Peak-EWMA of client latency, decayed)
    "last_latency_ms",   # log1p(last client-reported latency)
    "since_result_s",    # seconds since the last client report (capped 10)
    "error_ewma",        # client error EWMA
    "error_rate",        # reported error rate
    "cpu",               # reported utilisation
    "qps",               # log1p(reported qps)
)

AGE_CAP_S = 10.0

LAG_S = 10.0            # the forecast model's second row: the node's row this long ago ...
LAG_TOLERANCE_S = 3.0   # ... or up to this much older (else the node has no lagged input yet)
LAGGED_FEATURES: tuple[str, ...] = FEATURES + tuple(f"{name}@-{LAG_S:g}s" for name in FEATURES)


def lag_index(times, now):
    """Index of the latest entry of sorted ``times`` at or before ``now - LAG_S``
    and no older than ``LAG_TOLERANCE_S`` more, else -1 (vectorised over ``now``)."""
    times = np.asarray(times, dtype=np.float64)
    now = np.asarray(now, dtype=np.float64)
    j = np.searchsorted(times, now - LAG_S, side="right") - 1
    ok = j >= 0
    jc = np.where(ok, j, 0)
    ok &= times[jc] >= now - LAG_S - LAG_TOLERANCE_S if len(times) else False
    return np.where(ok, j, -1)


def raw_row(state, now: float) -> list[float]:
    """The :data:`RAW` columns of one NodeState at ``now`` (None → NaN)."""
    nan = math.nan

    def f(v):
        return nan if v is None else float(v)

    return [
        float(now), f(state.report_time), f(state.reported_in_flight), float(state.dispatched_since_report),
        float(state.completed_since_report), float(state.outstanding.count(now)), f(state.reported_latency_ms),
        f(state.cpu), f(state.qps), f(state.error_rate), f(state.ewma_ms), float(state.ewma_time),
        float(state.error_ewma), f(state.last_latency_ms), f(state.last_result_time),
        float(getattr(state, "prev_dispatched", 0) or 0), f(getattr(state, "prev_interval_s", None)),
        f(getattr(state, "scale_ms", None)),
    ]


def feature_matrix(columns: dict) -> np.ndarray:
    """Rows of :data:`FEATURES` (float64, shape (n, len(FEATURES))) from
    :data:`RAW` columns (any array-likes of equal length; NaN = unknown)."""
    missing = [k for k in RAW if k not in columns]
    if missing:
        raise KeyError(f"feature_matrix: missing raw columns {missing}")
    c = {k: np.asarray(columns[k], dtype=np.float64).reshape(-1) for k in RAW}
    now = c["now"]
    rt = c["report_time"]
    fresh = ~np.isnan(rt) & (now - rt <= REPORT_FRESH_S)
    rif = np.where(fresh, np.nan_to_num(c["reported_in_flight"]), 0.0)
    d = c["dispatched_since_report"]
    comp = c["completed_since_report"]
    out_ = c["outstanding"]
    age = np.where(fresh, np.clip(now - np.where(fresh, rt, now), 0.0, AGE_CAP_S), AGE_CAP_S)
    rif_est = np.where(fresh, np.maximum(0.0, rif + d - comp), out_)
    qps = c["qps"]
    interval = c["prev_interval_s"]
    seen = c["prev_dispatched"]
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.nan_to_num(qps) * np.nan_to_num(interval)
        share = np.where(expected > 0.5, seen / np.where(expected > 0.5, expected, 1.0), 1.0)
    share = np.clip(share, 0.05, 1.0)
    rif_scaled = np.where(fresh, np.maximum(0.0, rif + (d - comp) / share), out_)
    p50 = np.nan_to_num(c["reported_latency_ms"])
    cpu = np.nan_to_num(c["cpu"])
    qz = np.nan_to_num(qps)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # tiny qps: clipped below
        busy = np.where(qz > 0.0, cpu / np.where(qz > 0.0, qz, 1.0) * 1000.0, p50)
    busy = np.clip(busy, 0.0, 1e5)
    drain = np.where(fresh, age * qz, 0.0)
    ewma = c["ewma_ms"]
    peak = np.where(np.isnan(ewma), 0.0,
                    np.nan_to_num(ewma) * np.exp(-np.maximum(now - c["ewma_time"], 0.0) / PEAK_EWMA_DECAY_S))
    lr = c["last_result_time"]
    since = np.where(np.isnan(lr), AGE_CAP_S, np.clip(now - np.nan_to_num(lr), 0.0, AGE_CAP_S))
    cols = [
        age, fresh.astype(np.float64), np.log1p(rif), np.log1p(d), np.log1p(comp), np.log1p(rif_est),
        share, np.log1p(rif_scaled), np.log1p(out_), np.log1p(p50), np.log1p(busy), np.log1p(drain),
        np.log1p(peak), np.log1p(np.nan_to_num(c["last_latency_ms"])), since, c["error_ewma"],
        np.nan_to_num(c["error_rate"]), cpu, np.log1p(qz),
    ]
    return np.stack(cols, axis=1)


def node_features(node, now: float) -> np.ndarray:
    """One node's feature row (the trainer's code path, on the live state)."""
    state = getattr(node, "state", node)
    raw = raw_row(state, now)
    return feature_matrix({k: [v] for k, v in zip(RAW, raw)})[0]


def node_row(state, now: float) -> list[float]:
    """:func:`node_features` in pure Python for the request path (same arithmetic;
    clamps as comparisons: this runs on every client report)."""
    log1p = math.log1p
    rt = state.report_time
    fresh = rt is not None and now - rt <= REPORT_FRESH_S
    d = float(state.dispatched_since_report)
    comp = float(state.completed_since_report)
    out_ = float(state.outstanding.count(now))
    qps = state.qps
    qz = 0.0 if qps is None else float(qps)
    if fresh:
        rif = float(state.reported_in_flight or 0.0)
        age = now - rt
        age = 0.0 if age < 0.0 else AGE_CAP_S if age > AGE_CAP_S else age
    else:
        rif = 0.0
        age = AGE_CAP_S
    rif_est = state.in_flight(now)
    interval = state.prev_interval_s
    expected = qz * (0.0 if interval is None else float(interval))
    share = float(state.prev_dispatched or 0) / expected if expected > 0.5 else 1.0
    share = 0.05 if share < 0.05 else 1.0 if share > 1.0 else share
    if fresh:
        rif_scaled = rif + (d - comp) / share
        if rif_scaled < 0.0:
            rif_scaled = 0.0
    else:
        rif_scaled = out_
    p50 = state.reported_latency_ms
    p50 = 0.0 if p50 is None else float(p50)
    cpu = state.cpu
    cpu = 0.0 if cpu is None else float(cpu)
    busy = cpu / qz * 1000.0 if qz > 0.0 else p50
    busy = 0.0 if busy < 0.0 else 1e5 if busy > 1e5 else busy
    drain = age * qz if fresh else 0.0
    peak = state.peak_ewma(now) or 0.0
    lr = state.last_result_time
    if lr is None:
        since = AGE_CAP_S
    else:
        since = now - lr
        since = 0.0 if since < 0.0 else AGE_CAP_S if since > AGE_CAP_S else since
    last = state.last_latency_ms
    er = state.error_rate
    return [
        age, 1.0 if fresh else 0.0, log1p(rif), log1p(d), log1p(comp), log1p(rif_est),
        share, log1p(rif_scaled), log1p(out_), log1p(p50), log1p(busy), log1p(drain),
        log1p(peak), log1p(0.0 if last is None else float(last)), since, float(state.error_ewma),
        0.0 if er is None else float(er), cpu, log1p(qz),
    ]


# --- advanced-ml's scale-free view of the same row --------------------------------------
# Latencies and times in units of the node's own latency scale ``s`` (ms), rates per ``s``: a node
# with 5 ms services and one with 50 ms then look alike when their queues do, so a model trained on
# one time scale carries to another. The model predicts log(latency / s); the caller adds log(s).
RELATIVE_FEATURES: tuple[str, ...] = (
    "age_rel",           # log1p(report age / s) (the age capped as in age_s)
    "has_report",
    "rif_reported", "dispatched_since", "completed_since", "rif_est", "share", "rif_scaled", "outstanding",
    "svc_p50_rel",       # log1p(reported p50 / s)
    "svc_busy_rel",      # log1p(busy ms per completion / s)
    "drain",
    "peak_ewma_rel",     # log1p(Peak-EWMA / s)
    "last_latency_rel",  # log1p(last client-reported latency / s)
    "since_result_rel",  # log1p(time since the last client report / s)
    "error_ewma", "error_rate", "cpu",
    "load",              # log1p(qps × s): the share of a second the node's reported traffic takes at s
    "scale_source",      # where s came from: 0 scale_ms (slow EWMA of reported p50s), 1 Peak-EWMA, 2 last latency, 3 none (1 ms)
    "age_s", "since_result_s",  # the two ages in seconds too: heartbeats do not scale with the service
)
SCALE_FLOOR_MS = 0.05
_I = {name: i for i, name in enumerate(FEATURES)}


def relative_matrix(x: np.ndarray, scale_ms) -> tuple[np.ndarray, np.ndarray]:
    """(rows of :data:`RELATIVE_FEATURES`, log s per row) from rows of :data:`FEATURES` and the
    nodes' ``scale_ms`` (NaN when unknown)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1, len(FEATURES))
    col = lambda name: x[:, _I[name]]  # noqa: E731
    p50, peak, last = np.expm1(col("svc_p50_ms")), np.expm1(col("peak_ewma_ms")), np.expm1(col("last_latency_ms"))
    scale = np.nan_to_num(np.asarray(scale_ms, dtype=np.float64).reshape(-1), nan=0.0)
    use_scale = scale > 0.0
    source = np.where(use_scale, 0.0, np.where(peak > 0.0, 1.0, np.where(last > 0.0, 2.0, 3.0)))
    s = np.where(source == 0.0, scale, np.where(source == 1.0, peak, np.where(source == 2.0, last, 1.0)))
    s = np.maximum(s, SCALE_FLOOR_MS)
    rel = lambda ms: np.log1p(ms / s)  # noqa: E731
    out = np.stack([
        rel(col("age_s") * 1000.0), col("has_report"),
        col("rif_reported"), col("dispatched_since"), col("completed_since"), col("rif_est"), col("share"),
        col("rif_scaled"), col("outstanding"),
        rel(p50), rel(np.expm1(col("svc_busy_ms"))), col("drain"), rel(peak), rel(last),
        rel(col("since_result_s") * 1000.0), col("error_ewma"), col("error_rate"), col("cpu"),
        np.log1p(np.expm1(col("qps")) * s / 1000.0), source, col("age_s"), col("since_result_s"),
    ], axis=1)
    return out, np.log(s)


def relative_row(row: list[float], scale_ms) -> tuple[list[float], float]:
    """:func:`relative_matrix` on one :func:`node_row`, in pure Python for the request path."""
    log1p, expm1 = math.log1p, math.expm1
    (age, has_report, rif_rep, disp, comp, rif_est, share, rif_scaled, out_, p50, busy, drain, peak, last,
     since, error_ewma, error_rate, cpu, qps) = row
    p50, peak, last = expm1(p50), expm1(peak), expm1(last)
    if scale_ms is not None and scale_ms > 0.0:
        source, s = 0.0, scale_ms
    elif peak > 0.0:
        source, s = 1.0, peak
    elif last > 0.0:
        source, s = 2.0, last
    else:
        source, s = 3.0, 1.0
    if s < SCALE_FLOOR_MS:
        s = SCALE_FLOOR_MS
    return [
        log1p(age * 1000.0 / s), has_report, rif_rep, disp, comp, rif_est, share, rif_scaled, out_,
        log1p(p50 / s), log1p(expm1(busy) / s), drain, log1p(peak / s), log1p(last / s),
        log1p(since * 1000.0 / s), error_ewma, error_rate, cpu, log1p(expm1(qps) * s / 1000.0), source, age, since,
    ], math.log(s)


def lagged_matrix(x: np.ndarray, now: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of :data:`LAGGED_FEATURES`: each row of ``x`` (:data:`FEATURES`) next to
    the row of the same ``group`` (a node in one run) picked by :func:`lag_index`.
    Returns (matrix, has_lag); rows without a lagged row are zero on the right."""
    n = len(now)
    out = np.zeros((n, 2 * x.shape[1]))
    out[:, : x.shape[1]] = x
    has = np.zeros(n, dtype=bool)
    if n == 0:
        return out, has
    order = np.lexsort((now, group))
    g, t = group[order], now[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(g)) + 1, [n]])
    for a, b in zip(starts[:-1], starts[1:]):  # one vectorised lookup per node and run
        j = lag_index(t[a:b], t[a:b])
        found = j >= 0
        rows = order[a:b]
        out[rows[found], x.shape[1]:] = x[order[a + j[found]]]
        has[rows[found]] = True
    return out, has


__all__ = ["FEATURES", "RAW", "FEATURE_VERSION", "LAG_S", "LAGGED_FEATURES", "RELATIVE_FEATURES", "raw_row",
           "feature_matrix", "node_features", "node_row", "relative_matrix", "relative_row", "lag_index",
           "lagged_matrix"]
