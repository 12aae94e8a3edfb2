"""One progress bar for every long-running command (stderr, one line)."""

from __future__ import annotations

import sys
import time


class Progress:
    """``label [#######.......] 3/10  4.2s elapsed, ~10s left  note``; silent when not ``enabled``."""

    def __init__(self, total: int, label: str = "", enabled: bool = True, stream=None, width: int = 30):
        self.total = total
        self.label = label
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.width = width
        self.done = 0
        self.start = time.perf_counter()

    def step(self, note: str = "") -> None:
        self.update(self.done + 1, note=note)

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        self.done = done
        if total is not None:
            self.total = total
        if not self.enabled:
            return
        total = max(self.total, 1)
        filled = int(self.width * min(done, total) / total)
        elapsed = time.perf_counter() - self.start
        left = f", ~{elapsed / done * (total - done):4.0f}s left" if 0 < done < total else ""
        label = f"{self.label} " if self.label else ""
        self.stream.write(f"\r{label}[{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} "
                          f"{elapsed:5.1f}s elapsed{left}  {note[:40]:<40}")
        if done >= self.total:
            self.stream.write("\n")
        self.stream.flush()
