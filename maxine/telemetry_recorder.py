"""The server's telemetry log (opt-in: ``--telemetry-log`` / ``MAXINE_TELEMETRY_LOG``).

Records what learned models are trained on — discoveries (the chosen node's
raw state at decision time and the strategy), client latency/outcome
reports, heartbeat load reports and call edges — to a rotating, size-bounded
log under ``<data dir>/telemetry/`` in the format of
:mod:`maxine.training.telemetry_log` (``maxine train advanced-ml --data DIR``
reads it as it reads a simulator recording).

Hot path: each event is one tuple appended to an in-memory list (the chosen
node's NodeState fields are copied into a tuple, ~1 µs); when the list holds
``max_buffer`` events, further events are dropped and counted, never queued
without bound. A background job swaps the list out every ``flush_s`` seconds
and hands it to a worker thread (never the event loop), which converts the
events to rows, joins each discovery with the next outcome report of the same
node (FIFO: the realised latency is the training target), holds rows for
``hold_s`` so late reports still find their discovery, and writes one
``telemetry-*.npz`` segment; the oldest segments are deleted beyond
``max_mb``. Shutdown writes whatever is left.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections import deque

from .models.features import RAW
from .training.telemetry_log import (KIND_CALL, KIND_DISCOVERY, KIND_LOAD, KIND_RESULT, STRINGS,
                                     TelemetryLogWriter)

log = logging.getLogger("maxine.telemetry_log")
NAN = math.nan


def snapshot(state, now: float) -> tuple:
    """The :data:`maxine.models.features.RAW` fields of a NodeState, unconverted
    (None stays None): the cheapest copy for the hot path."""
    s = state
    return (now, s.report_time, s.reported_in_flight, s.dispatched_since_report, s.completed_since_report,
            s.outstanding.count(now), s.reported_latency_ms, s.cpu, s.qps, s.error_rate, s.ewma_ms, s.ewma_time,
            s.error_ewma, s.last_latency_ms, s.last_result_time, s.prev_dispatched, s.prev_interval_s, s.scale_ms)


def _floats(snap: tuple) -> list[float]:
    return [NAN if v is None else float(v) for v in snap]


class TelemetryRecorder:
    def __init__(self, directory: str, max_mb: float = 256.0, flush_s: float = 10.0, hold_s: float = 5.0,
                 max_buffer: int = 200_000, segment_rows: int = 200_000):
        self.directory = directory
        self.flush_s = flush_s
        self.hold_s = hold_s
        self.max_buffer = max_buffer
        self.buf: list[tuple] = []
        self.events = 0
        self.dropped = 0
        self.writer = TelemetryLogWriter(directory, segment_rows=segment_rows, max_segments=1_000_000,
                                         max_bytes=int(max_mb * 2 ** 20), meta={"source": "server"},
                                         extra=("kind",), strings=STRINGS)
        self._lock = threading.Lock()  # one conversion/write at a time
        self._held: deque = deque()  # [now, row, strings] awaiting the hold watermark
        self._waiting: dict[str, deque] = {}  # node id -> held discovery rows without an outcome
        self._node_index: dict[str, int] = {}
        self._decisions = 0
        self.last_error: str | None = None

    # --- hot path (event loop): one append each ---------------------------------------
    def discovery(self, now: float, node, strategy: str) -> None:
        buf = self.buf
        if len(buf) < self.max_buffer:
            buf.append((KIND_DISCOVERY, now, node.service_name, node.node_id, strategy, snapshot(node.state, now)))
        else:
            self.dropped += 1

    def result(self, now: float, node, latency_ms: float, success: bool) -> None:
        buf = self.buf
        if len(buf) < self.max_buffer:
            buf.append((KIND_RESULT, now, node.service_name, node.node_id, (latency_ms, success),
                        snapshot(node.state, now)))
        else:
            self.dropped += 1

    def load_report(self, now: float, node) -> None:
        buf = self.buf
        if len(buf) < self.max_buffer:
            buf.append((KIND_LOAD, now, node.service_name, node.node_id, None, snapshot(node.state, now)))
        else:
            self.dropped += 1

    def call(self, now: float, caller: str, called: str) -> None:
        buf = self.buf
        if len(buf) < self.max_buffer:
            buf.append((KIND_CALL, now, caller, called, None, None))
        else:
            self.dropped += 1

    def take(self) -> list[tuple]:
        """Swap the buffer out (on the event loop: one reference swap)."""
        buf, self.buf = self.buf, []
        return buf

    # --- worker thread -------------------------------------------------------------------
    def write(self, events: list[tuple], final: bool = False) -> int:
        """Convert ``events``, join outcomes, write rows older than the hold
        watermark (all with ``final``) as one segment; returns rows written."""
        with self._lock:
            self.events += len(events)
            held, waiting, index = self._held, self._waiting, self._node_index
            latest = None
            for kind, now, service, node_id, payload, snap in events:
                latest = now
                if kind == KIND_CALL:
                    row = [now] + [NAN] * (len(RAW) - 1) + [NAN, NAN, 0.0, NAN, NAN, NAN, NAN, float(KIND_CALL)]
                    held.append([now, row, (service, node_id, "")])
                    continue
                node = index.get(node_id)
                if node is None:
                    node = index[node_id] = len(index)
                raw = _floats(snap)
                if kind == KIND_DISCOVERY:
                    self._decisions += 1
                    row = raw + [float(self._decisions), float(node), 1.0, NAN, NAN, NAN, NAN, float(KIND_DISCOVERY)]
                    entry = [now, row, (service, node_id, payload)]
                    held.append(entry)
                    waiting.setdefault(node_id, deque()).append(row)
                elif kind == KIND_RESULT:
                    latency_ms, success = payload
                    q = waiting.get(node_id)
                    if q:
                        first = q.popleft()
                        first[-4] = float(latency_ms)  # latency_ms
                        first[-3] = 1.0 if success else 0.0  # success
                        if not q:
                            del waiting[node_id]
                    row = raw + [NAN, float(node), 0.0, NAN, float(latency_ms), 1.0 if success else 0.0, NAN,
                                 float(KIND_RESULT)]
                    held.append([now, row, (service, node_id, "")])
                else:
                    row = raw + [NAN, float(node), 0.0, NAN, NAN, NAN, NAN, float(KIND_LOAD)]
                    held.append([now, row, (service, node_id, "")])
            if final:
                watermark = math.inf
            elif latest is not None:
                watermark = latest - self.hold_s
            else:
                watermark = time.time() - self.hold_s
            out = []
            while held and held[0][0] <= watermark:
                out.append(held.popleft())
            if out:
                # a discovery leaving the hold can no longer get its outcome
                for _, row, strings in out:
                    if row[-1] == KIND_DISCOVERY:
                        q = waiting.get(strings[1])
                        if q and q[0] is row:
                            q.popleft()
                            if not q:
                                del waiting[strings[1]]
                out.sort(key=lambda e: e[0])
                for _, row, strings in out:
                    self.writer.append(row, strings)
                self.writer.flush()
            if len(index) > 100_000:  # node ids come and go; the index only needs to be stable per segment
                index.clear()
            return len(out)

    def status(self) -> dict:
        return {"directory": self.directory, "events": self.events, "dropped": self.dropped,
                "buffered": len(self.buf), "held": len(self._held), "rowsWritten": self.writer.rows_written,
                "segmentsWritten": self.writer.segments_written, "lastError": self.last_error}


async def flush_telemetry(maxine) -> None:
    """Background job: every ``flush_s`` hand the buffered events to a worker thread."""
    rec = maxine.recorder
    while True:
        await asyncio.sleep(rec.flush_s)
        events = rec.take()
        try:
            await asyncio.to_thread(rec.write, events)
            rec.last_error = None
        except Exception as exc:  # a full disk must not take the server down
            rec.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("telemetry log write failed; %d events lost", len(events))


def install(maxine) -> TelemetryRecorder | None:
    """Attach a recorder to ``maxine`` when ``settings.telemetry_log`` is on."""
    settings = maxine.settings
    if not getattr(settings, "telemetry_log", False):
        return None
    directory = os.path.join(settings.data_dir, "telemetry")
    rec = TelemetryRecorder(directory, max_mb=settings.telemetry_log_max_mb,
                            flush_s=settings.telemetry_log_flush_s)
    maxine.recorder = rec
    maxine.background.append(flush_telemetry)

    def close():
        try:
            rec.write(rec.take(), final=True)
        except Exception:
            log.exception("telemetry log: final write failed")

    maxine.shutdown_hooks = getattr(maxine, "shutdown_hooks", [])
    maxine.shutdown_hooks.append(close)
    log.info("telemetry log on: %s (at most %.0f MB)", directory, settings.telemetry_log_max_mb)
    return rec
