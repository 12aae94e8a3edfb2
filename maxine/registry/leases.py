"""Lease deadlines in a heap: a sweep touches only the leases that are due.

Heartbeats move an instance's deadline without touching the heap; when a
stale entry surfaces, it is re-filed at the instance's current deadline.
So each tick costs O(k log n) for the k entries due, never a full scan.
"""

from __future__ import annotations

import heapq


class LeaseHeap:
    def __init__(self):
        self._heap: list[tuple[float, int, object]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, instance) -> None:
        """File the instance at its deadline unless an earlier entry already covers it."""
        if instance.scheduled_deadline is not None and instance.scheduled_deadline <= instance.deadline:
            return
        instance.scheduled_deadline = instance.deadline
        self._seq += 1
        heapq.heappush(self._heap, (instance.deadline, self._seq, instance))

    def pop_due(self, now: float, is_current, limit: int):
        """Yield instances whose lease has passed, at most ``limit`` of them.

        ``is_current(instance)`` says whether the instance is still registered."""
        heap = self._heap
        produced = 0
        while heap and heap[0][0] <= now and produced < limit:
            deadline, _, inst = heapq.heappop(heap)
            if inst.scheduled_deadline != deadline or not is_current(inst):
                continue  # superseded entry, or the instance is already gone
            inst.scheduled_deadline = None
            if inst.deadline <= now:
                produced += 1
                yield inst
            else:
                self.schedule(inst)  # heartbeats moved it on

    def next_deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None
