"""JSON bytes that are kept, not just sent."""

from __future__ import annotations

import orjson


def dumps_kept(obj) -> bytes:
    """``orjson.dumps`` for a result that stays in memory.

    orjson's bytes object keeps its whole output buffer (4 KiB, however short
    the JSON): 100,000 kept results of 40 bytes held 400 MiB. The copy holds
    only the JSON."""
    return memoryview(orjson.dumps(obj)).tobytes()
