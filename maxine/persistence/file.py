"""File persistence: journal + periodic atomic snapshots in the data directory.

Layout of ``data_dir``::

    snapshot.json                 state document at index S (atomic rename)
    journal-<start index>.log     records after a snapshot was started

Every change is appended to the current journal *inside* the registry
listener, i.e. before the HTTP handler returns, so a write is acknowledged
only once its record is in the kernel (``fsync=never|interval``) or on disk
(``fsync=always``). Lease renewals (heartbeats) do not fsync per call: the
instances whose deadline moved are flushed as one ``dl`` record every
``flush_interval`` seconds; a restart's grace window covers that gap.

A snapshot captures the state at index S, switches appends to a new journal
file, writes the snapshot with tmp+fsync+rename, then deletes older journal
files. Loading replays every journal file in order and skips records whose
index is <= S, so a crash at any step leaves a readable, complete state.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import time

import orjson

from ..registry import DEREGISTERED, EXPIRED, Change, Registry
from . import state
from .journal import JournalWriter, atomic_write, read_records
from .sweeper import expire_locally

log = logging.getLogger("maxine.persistence")

SNAPSHOT = "snapshot.json"


class FileStore:
    kind = "file"

    def __init__(self, registry: Registry, directory: str, fsync: str = "always",
                 fsync_interval: float = 1.0, snapshot_interval: float = 300.0,
                 snapshot_records: int = 100_000, flush_interval: float = 1.0):
        self.registry = registry
        self.directory = directory
        self.fsync_mode = fsync
        self.fsync_interval = fsync_interval
        self.snapshot_interval = snapshot_interval
        self.snapshot_records = snapshot_records
        self.flush_interval = flush_interval
        self.writer: JournalWriter | None = None
        self.renewed: dict[str, object] = {}
        self.snapshots = 0
        self.last_snapshot_at: float | None = None
        self.loaded_instances = 0
        self.skipped_bytes = 0
        self.healthy = True
        self._snapshotting = False
        os.makedirs(directory, exist_ok=True)

    # --- startup ------------------------------------------------------------
    def load(self) -> dict:
        """Rebuild the persisted state document (snapshot + journal replay)."""
        snap_path = os.path.join(self.directory, SNAPSHOT)
        doc = {"format": state.FORMAT, "version": state.VERSION, "index": 0, "services": {}, "instances": []}
        if os.path.exists(snap_path):
            with open(snap_path, "rb") as f:
                doc = orjson.loads(f.read())
        base = doc.get("index", 0)
        records = {f"{r['serviceName']}:{r['host']}:{r['port']}": r for r in doc["instances"]}
        services = dict(doc.get("services") or {})
        index = base
        for path in self.journal_files():
            entries, _ = read_records(path)
            for entry in entries:
                kind = entry.get("t")
                i = entry.get("i", 0)
                if kind == "dl":
                    for node_id, deadline, last in entry["d"]:
                        rec = records.get(node_id)
                        if rec is not None and deadline > rec["deadline"]:
                            rec["deadline"] = deadline
                            rec["lastHeartbeat"] = last
                    continue
                if i <= base:
                    continue
                index = max(index, i)
                if kind == "put":
                    rec = entry["r"]
                    records[f"{rec['serviceName']}:{rec['host']}:{rec['port']}"] = rec
                    services[rec["serviceName"]] = i
                elif kind == "del":
                    records.pop(entry["n"], None)
                    services[entry["s"]] = i
                elif kind == "idx":
                    pass
        doc = {"format": state.FORMAT, "version": state.VERSION, "index": index,
               "services": services, "instances": list(records.values())}
        self.loaded_instances = len(records)
        return doc

    def journal_files(self) -> list[str]:
        return sorted(glob.glob(os.path.join(self.directory, "journal-*.log")))

    def open(self) -> None:
        """Start appending (after :meth:`load`): a fresh journal file per process run."""
        path = os.path.join(self.directory, f"journal-{self.registry.index + 1:020d}.log")
        self.writer = JournalWriter(path, self.fsync_mode)
        self.registry.listeners.append(self.on_change)
        self.registry.on_renew = self.on_renew

    # --- writes -------------------------------------------------------------
    def on_change(self, change: Change) -> None:
        if change.kind in (DEREGISTERED, EXPIRED):
            doc = {"t": "del", "i": change.index, "n": change.node_id, "s": change.service_name, "k": change.kind}
        else:
            doc = {"t": "put", "i": change.index, "r": change.instance.to_record()}
            self.renewed.pop(change.node_id, None)
        # Expiries are committed per sweep batch (:meth:`expire`): nobody waits
        # for them, and one lost to a power cut is decided again at load (its lease passed).
        self.writer.append(doc, sync=change.kind != EXPIRED)

    async def expire(self, insts: list) -> int:
        """The sweeper's expiry step: expire the batch, then one fsync for all its records."""
        expired = await expire_locally(self.registry, insts)
        if self.fsync_mode == "always":
            self.writer.sync()
        return expired

    def on_renew(self, inst) -> None:
        self.renewed[inst.node_id] = inst

    def flush_renewals(self) -> int:
        if not self.renewed:
            return 0
        batch = [[n, i.deadline, i.last_heartbeat] for n, i in self.renewed.items()
                 if self.registry.nodes.get(n) is i]
        self.renewed = {}
        if batch:
            self.writer.append({"t": "dl", "d": batch})
        return len(batch)

    def note_index(self) -> None:
        """Persist the current index (events that are not instance changes)."""
        self.writer.append({"t": "idx", "i": self.registry.index})

    # --- snapshots ------------------------------------------------------------
    async def snapshot(self) -> None:
        if self._snapshotting:
            return
        self._snapshotting = True
        try:
            self.flush_renewals()
            doc = state.dump(self.registry, time.time())
            old = self.writer
            self.writer = JournalWriter(os.path.join(self.directory, f"journal-{doc['index'] + 1:020d}.log"),
                                        self.fsync_mode)
            keep = self.writer.path
            blob = orjson.dumps(doc)
            await asyncio.to_thread(atomic_write, os.path.join(self.directory, SNAPSHOT), blob)
            old.close()
            for path in self.journal_files():
                if path != keep and path < keep:
                    os.unlink(path)
            self.snapshots += 1
            self.last_snapshot_at = time.time()
        except Exception:
            self.healthy = False
            log.exception("snapshot failed; the journal still holds every change")
        finally:
            self._snapshotting = False

    async def run(self, maxine) -> None:
        """Background: renewal flushes, interval fsyncs, periodic snapshots."""
        last_sync = last_snap = time.monotonic()
        records_at_snap = 0
        tick = min(self.flush_interval, self.fsync_interval if self.fsync_mode == "interval" else self.flush_interval)
        while True:
            await asyncio.sleep(tick)
            try:
                self.flush_renewals()
                now = time.monotonic()
                if self.fsync_mode == "interval" and now - last_sync >= self.fsync_interval:
                    await asyncio.to_thread(self.writer.sync)
                    last_sync = now
                written = self.writer.records
                if now - last_snap >= self.snapshot_interval or written - records_at_snap >= self.snapshot_records:
                    await self.snapshot()
                    last_snap = time.monotonic()
                    records_at_snap = self.writer.records
                self.healthy = True
            except Exception:
                self.healthy = False
                log.exception("persistence background step failed")

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.flush_renewals()
            finally:
                self.writer.close()

    def status(self) -> dict:
        return {"type": "file", "healthy": self.healthy, "fsync": self.fsync_mode, "directory": self.directory,
                "journalRecords": self.writer.records if self.writer else 0,
                "snapshots": self.snapshots, "loadedInstances": self.loaded_instances}
