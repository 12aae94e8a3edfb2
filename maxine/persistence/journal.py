"""An append-only journal of length-prefixed, checksummed records.

Record layout: ``<u32 length><u32 crc32(payload)><payload>`` (little endian),
payload = one orjson document. A crash can leave at most a torn last record;
the reader stops at the first record whose header or checksum does not hold,
keeps a copy of the unreadable tail next to the file and truncates it, so
later appends never land behind garbage.

Writes use ``os.write`` on an unbuffered descriptor: once :meth:`append`
returns, the record is in the kernel (survives ``kill -9``); with
``fsync="always"`` it is also on disk before :meth:`append` returns.
"""

from __future__ import annotations

import logging
import os
import struct
import time
import zlib

import orjson

log = logging.getLogger("maxine.persistence")

HEADER = struct.Struct("<II")
MAX_RECORD = 64 << 20


def encode(doc) -> bytes:
    payload = orjson.dumps(doc)
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def read_records(path: str, repair: bool = True) -> tuple[list, int]:
    """All intact records of ``path`` and the byte offset where they end.

    A torn or corrupt tail is reported, saved aside and (with ``repair``) cut off."""
    with open(path, "rb") as f:
        data = f.read()
    records = []
    pos = 0
    end = len(data)
    while pos < end:
        if end - pos < HEADER.size:
            break
        length, crc = HEADER.unpack_from(data, pos)
        start = pos + HEADER.size
        if length > MAX_RECORD or start + length > end:
            break
        payload = data[start:start + length]
        if zlib.crc32(payload) != crc:
            break
        try:
            records.append(orjson.loads(payload))
        except orjson.JSONDecodeError:
            break
        pos = start + length
    if pos < end:
        log.warning("journal %s: skipping %d unreadable bytes at offset %d (torn or corrupt last record)",
                    path, end - pos, pos)
        if repair:
            with open(f"{path}.corrupt-{int(time.time() * 1000)}", "wb") as aside:
                aside.write(data[pos:])
            with open(path, "r+b") as f:
                f.truncate(pos)
                f.flush()
                os.fsync(f.fileno())
    return records, pos


class JournalWriter:
    def __init__(self, path: str, fsync: str = "always"):
        self.path = path
        self.fsync_mode = fsync
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.dirty = False
        self.records = 0
        self.bytes = os.fstat(self.fd).st_size
        fsync_dir(os.path.dirname(path) or ".")

    def append(self, doc, sync: bool = True) -> None:
        self.append_bytes(encode(doc), sync)

    def append_bytes(self, blob: bytes, sync: bool = True) -> None:
        """Append a record; with ``fsync=always`` and ``sync``, on disk before returning
        (``sync=False``: the caller commits a group of records with :meth:`sync`)."""
        view = memoryview(blob)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.records += 1
        self.bytes += len(blob)
        if sync and self.fsync_mode == "always":
            os.fsync(self.fd)
        else:
            self.dirty = True

    def sync(self) -> None:
        if self.dirty:
            self.dirty = False
            os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            try:
                if self.fsync_mode != "never":
                    os.fsync(self.fd)
            finally:
                os.close(self.fd)
                self.fd = -1


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, blob: bytes) -> None:
    """Write ``blob`` to ``path`` so a crash leaves either the old or the new file."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")
