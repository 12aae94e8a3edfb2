"""The service call graph reported through ``/record-call``."""

from __future__ import annotations


class CallGraph:
    """Counts of caller → called edges; bounded so a flood of names cannot grow memory."""

    def __init__(self, max_edges: int = 100_000):
        self.max_edges = max_edges
        self.edges: dict[tuple[str, str], int] = {}
        self.last_seen: dict[tuple[str, str], float] = {}
        self.dropped = 0

    def record(self, caller: str, called: str, now: float) -> bool:
        edge = (caller, called)
        if edge not in self.edges and len(self.edges) >= self.max_edges:
            self.dropped += 1
            return False
        self.edges[edge] = self.edges.get(edge, 0) + 1
        self.last_seen[edge] = now
        return True

    def dependencies(self, service: str) -> list[str]:
        return sorted(called for caller, called in self.edges if caller == service)

    def dependents(self, service: str) -> list[str]:
        return sorted(caller for caller, called in self.edges if called == service)

    def to_json(self) -> dict:
        nodes = sorted({name for edge in self.edges for name in edge})
        return {
            "nodes": nodes,
            "edges": [{"caller": a, "called": b, "calls": n, "lastSeen": self.last_seen[(a, b)] * 1000.0}
                      for (a, b), n in sorted(self.edges.items())],
        }
