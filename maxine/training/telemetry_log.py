"""The on-disk telemetry log: what learned models are trained on.

Format: a directory of columnar segments ``telemetry-<unix ms>-<seq>.npz``
(``numpy.savez_compressed``; one float64/int array per column, plus a
``__meta__`` JSON string). numpy reads a segment in milliseconds and pandas
takes it as ``pd.DataFrame(dict(np.load(path)))``. The writer rotates to a new
segment every ``segment_rows`` rows and deletes the oldest segments beyond
``max_segments`` (bounded size).

One row = one node as seen at one discovery decision:
- the raw NodeState columns of :data:`maxine.models.features.RAW` (so any
  feature version can be rebuilt from the log by ``feature_matrix``);
- ``decision`` (decision counter), ``node`` (node index within the pool),
  ``chosen`` (1 for the node the strategy picked);
- targets: ``true_delay_ms`` — the simulator's ground truth, the expected
  latency of a request sent to that node at that moment (queue + 1) × service
  time / workers (NaN outside the simulator); ``latency_ms``/``success`` — the
  realised outcome when known (the server's client reports; NaN otherwise).

Optional columns (:func:`read_log` fills defaults when absent):
``kind`` — 0 discovery decision, 1 client latency/outcome report, 2 heartbeat
load report, 3 call edge (absent in simulator logs; the latency trainer learns
from kind 0 rows only); ``true_speed`` and ``true_fail_rate`` — the
simulator's ground truth of the node's current speed (1 = nominal) and
fast-failure probability (NaN outside the simulator; the anomaly model is
evaluated against them); ``scale_ms`` (logs written before it was one of RAW lack it: NaN, and the
scale-free rows fall back to Peak-EWMA); and the string columns ``service``, ``node_id`` (for a call edge: caller and called
service) and ``strategy`` (the strategy that made the decision).

``maxine bench lb --record DIR`` writes this format from simulator runs
(:func:`record_runs`), and the server writes it with ``--telemetry-log``
(:mod:`maxine.telemetry_recorder`), so training can start without a
production system.
"""

from __future__ import annotations

import glob
import json
import os
import time
import zipfile

import numpy as np

from ..models.features import RAW, raw_row
from ..progress import Progress

LOG_VERSION = 1
EXTRA = ("decision", "node", "chosen", "true_delay_ms", "latency_ms", "success", "seed")
COLUMNS: tuple[str, ...] = RAW + EXTRA
PATTERN = "telemetry-*.npz"
KIND_DISCOVERY, KIND_RESULT, KIND_LOAD, KIND_CALL = 0, 1, 2, 3
# numeric, default; scale_ms is one of RAW, written since the scale-free advanced-ml (v18) and absent from older logs
OPTIONAL = {"kind": float(KIND_DISCOVERY), "true_speed": np.nan, "true_fail_rate": np.nan, "scale_ms": np.nan}
SIM_TRUTH = ("true_speed", "true_fail_rate")  # what simulator logs add after COLUMNS
STRINGS = ("service", "node_id", "strategy")  # optional string columns (not read by read_log)


class TelemetryLogError(Exception):
    """A log that cannot be used (missing, empty, malformed): the message says why."""


class TelemetryLogWriter:
    """Appends rows, writes a segment every ``segment_rows`` rows (or on
    :meth:`flush`), and keeps at most ``max_segments`` segments and, when
    ``max_bytes`` is set, at most that many bytes (oldest segments go first).
    With ``extra`` (names of numeric columns after :data:`COLUMNS`) and
    ``strings`` (names of string columns), :meth:`append` takes those values too."""

    def __init__(self, directory: str, segment_rows: int = 200_000, max_segments: int = 200, meta: dict | None = None,
                 max_bytes: int | None = None, extra: tuple[str, ...] = (), strings: tuple[str, ...] = ()):
        self.directory = directory
        self.segment_rows = segment_rows
        self.max_segments = max_segments
        self.max_bytes = max_bytes
        self.meta = dict(meta or {})
        self.extra = tuple(extra)
        self.strings = tuple(strings)
        os.makedirs(directory, exist_ok=True)
        self._rows: list[list[float]] = []
        self._str_rows: list[tuple] = []
        self._seq = 0
        self.rows_written = 0
        self.segments_written = 0

    def append(self, row: list[float], strings: tuple | None = None) -> None:
        """One row of :data:`COLUMNS` (+ ``extra``) values, in order; ``strings``
        in the order of ``strings`` when the writer has string columns."""
        self._rows.append(row)
        if self.strings:
            self._str_rows.append(strings or ("",) * len(self.strings))
        if len(self._rows) >= self.segment_rows:
            self.flush()

    def flush(self) -> str | None:
        if not self._rows:
            return None
        arr = np.asarray(self._rows, dtype=np.float64)
        strs = self._str_rows
        self._rows = []
        self._str_rows = []
        name = f"telemetry-{int(time.time() * 1000)}-{os.getpid()}-{self._seq:05d}.npz"
        self._seq += 1
        path = os.path.join(self.directory, name)
        tmp = path + ".tmp.npz"
        names = COLUMNS + self.extra
        meta = json.dumps({"log_version": LOG_VERSION, "columns": list(names), "strings": list(self.strings),
                           **self.meta})
        cols = {c: arr[:, k] for k, c in enumerate(names)}
        for k, c in enumerate(self.strings):
            cols[c] = np.array([r[k] for r in strs], dtype=str)
        np.savez_compressed(tmp, __meta__=np.array(meta), **cols)
        os.replace(tmp, path)
        self.rows_written += len(arr)
        self.segments_written += 1
        self._prune()
        return path

    def _prune(self) -> None:
        segments = sorted(glob.glob(os.path.join(self.directory, PATTERN)), key=os.path.getmtime)
        segments = [p for p in segments if not p.endswith(".tmp.npz")]
        drop = max(0, len(segments) - self.max_segments)
        if self.max_bytes is not None:
            sizes = []
            for p in segments:
                try:
                    sizes.append(os.path.getsize(p))
                except OSError:
                    sizes.append(0)
            total = sum(sizes)
            k = 0
            while total > self.max_bytes and k < len(segments) - 1:  # keep the newest segment
                total -= sizes[k]
                k += 1
            drop = max(drop, k)
        for old in segments[:drop]:
            try:
                os.remove(old)
            except OSError:
                pass

    def close(self) -> None:
        self.flush()


def segments(directory: str) -> list[str]:
    if not os.path.isdir(directory):
        raise TelemetryLogError(f"telemetry log directory {directory!r} does not exist")
    return sorted(p for p in glob.glob(os.path.join(directory, PATTERN)) if not p.endswith(".tmp.npz"))


def read_log(directory: str, progress=None) -> dict[str, np.ndarray]:
    """All segments of a log as one dict of columns; :class:`TelemetryLogError`
    with a clear reason for a missing directory, no segments, or a malformed one."""
    paths = segments(directory)
    if not paths:
        raise TelemetryLogError(f"telemetry log {directory!r} is empty (no {PATTERN} segments); "
                                "record one with `maxine bench lb --record DIR` or the server's telemetry log")
    parts: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS + tuple(OPTIONAL)}
    for k, path in enumerate(paths):
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["__meta__"])) if "__meta__" in z.files else {}
                if meta.get("log_version") != LOG_VERSION:
                    raise TelemetryLogError(f"{path}: unsupported log version {meta.get('log_version')!r}")
                missing = [c for c in COLUMNS if c not in z.files and c not in OPTIONAL]
                if missing:
                    raise TelemetryLogError(f"{path}: malformed segment, missing columns {missing[:5]}")
                cols = {c: np.asarray(z[c], dtype=np.float64) for c in COLUMNS if c not in OPTIONAL}
                for c, default in OPTIONAL.items():
                    cols[c] = (np.asarray(z[c], dtype=np.float64) if c in z.files
                               else np.full(len(cols["now"]), default))
        except TelemetryLogError:
            raise
        except (OSError, ValueError, zipfile.BadZipFile, KeyError, EOFError) as exc:
            raise TelemetryLogError(f"{path}: malformed segment ({type(exc).__name__}: {exc})") from None
        n = {len(v) for v in cols.values()}
        if len(n) != 1:
            raise TelemetryLogError(f"{path}: malformed segment, columns of different lengths")
        for c in parts:
            parts[c].append(cols[c])
        if progress:
            progress(k + 1, len(paths))
    out = {c: np.concatenate(v) for c, v in parts.items()}
    if len(out["now"]) == 0:
        raise TelemetryLogError(f"telemetry log {directory!r} has no rows")
    return out


# --- recording simulator runs --------------------------------------------------------


class _Recorder:
    """A strategy that delegates to ``inner`` and logs every node's raw state
    plus the simulator's ground truth at each decision."""

    def __init__(self, inner, sim, writer: TelemetryLogWriter, seed: int, every: int = 1):
        self.inner = inner
        self.name = inner.name
        self.sim = sim
        self.writer = writer
        self.seed = seed
        self.every = max(1, int(every))
        self.decisions = 0
        mean_ms = float(sim.sc["service_time"]["mean_ms"])
        self.mean_ms = mean_ms
        if hasattr(inner, "learn_one"):
            self.learn_one = inner.learn_one
        if hasattr(inner, "refresh_pending"):  # the background re-scoring job's entry point
            self.refresh_pending = inner.refresh_pending

    def pick(self, pool, ctx):
        node = self.inner.pick(pool, ctx)
        self.decisions += 1
        if self.decisions % self.every == 0:
            sim, now, append = self.sim, ctx.now, self.writer.append
            chosen = node.metadata["sim_index"]
            for other in pool.nodes:
                i = other.metadata["sim_index"]
                w = sim.workers[i]
                svc = self.mean_ms / sim.speed[i]
                true_delay = max(0.0, sim.pending[i] + 1.0 - w) / w * svc + svc
                append(raw_row(other.state, now) + [float(self.decisions), float(i), float(i == chosen),
                                                    true_delay, np.nan, np.nan, float(self.seed),
                                                    float(sim.speed[i]), float(sim.fail_rate[i])])
        return node


def record_run(sc: dict, behaviour: str, seed: int, writer: TelemetryLogWriter, every: int = 1) -> dict:
    """Simulate ``behaviour`` on ``sc`` with ``seed`` and log its decisions."""
    from .simulator import Simulation

    sim = Simulation(sc, behaviour, seed, wrap=lambda strategy: _Recorder(strategy, sim, writer, seed, every))
    result = sim.run()
    result["strategy"] = behaviour
    return result


def record_runs(scs: list[dict], behaviours: list[str], seeds: list[int] | None, directory: str, every: int = 1,
                progress: bool = True, results: list | None = None) -> int:
    """Record every scenario × behaviour × seed (None: each scenario's own
    seeds) into ``directory``; returns rows written and appends each run's
    summary to ``results`` when given."""
    writer = TelemetryLogWriter(directory, meta={"source": "simulator"}, extra=SIM_TRUTH)
    bar = Progress(sum(len(behaviours) * len(seeds or sc["seeds"]) for sc in scs), "record", enabled=progress)
    for sc in scs:
        for behaviour in behaviours:
            for seed in (seeds or sc["seeds"]):
                result = record_run(sc, behaviour, seed, writer, every)
                if results is not None:
                    results.append(result)
                bar.step(f"{sc['name'][:24]} {behaviour[:15]}")
    writer.close()
    return writer.rows_written
