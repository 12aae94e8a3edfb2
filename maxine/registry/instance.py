"""One registered instance of a service."""

from __future__ import annotations

from ..telemetry import NodeState


NO_TAGS = frozenset()


def node_id_for(service_name: str, host: str, port: int) -> str:
    return f"{service_name}:{host}:{port}"


class Instance:
    __slots__ = (
        "node_id", "service_name", "host", "port", "metadata", "version", "weight", "tags",
        "ttl", "registered_at", "last_heartbeat", "deadline", "scheduled_deadline",
        "state", "_bodies",
    )

    def __init__(self, service_name: str, host: str, port: int, metadata: dict,
                 ttl: float, now: float, dispatch_ttl: float = 30.0):
        self.node_id = node_id_for(service_name, host, port)
        self.service_name = service_name
        self.host = host
        self.port = port
        self.ttl = ttl
        self.registered_at = now
        self.last_heartbeat = now
        self.deadline = now + ttl
        self.scheduled_deadline: float | None = None  # the deadline its lease-heap entry carries
        self.state = NodeState(dispatch_ttl)
        self.set_metadata(metadata)

    def set_metadata(self, metadata: dict) -> None:
        self.metadata = metadata
        version = metadata.get("version")
        self.version = None if version is None else str(version)
        self.weight = float(metadata.get("weight", 1.0))
        tags = metadata.get("tags")
        self.tags = frozenset(tags) if tags else NO_TAGS
        self._bodies: dict[str, bytes] = {}

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def alive(self, now: float) -> bool:
        return now < self.deadline

    def describe(self, now: float) -> dict:
        """The public JSON view of the instance."""
        return {
            "nodeId": self.node_id,
            "serviceName": self.service_name,
            "address": self.address,
            "host": self.host,
            "port": self.port,
            "metadata": self.metadata,
            "registeredAt": self.registered_at * 1000.0,
            "lastHeartbeat": self.last_heartbeat * 1000.0,
            "leaseExpiresAt": self.deadline * 1000.0,
            "ttl": self.ttl,
            "healthy": self.alive(now),
        }

    def to_record(self) -> dict:
        """Everything needed to rebuild the instance (persistence, backup)."""
        return {
            "serviceName": self.service_name, "host": self.host, "port": self.port,
            "metadata": self.metadata, "ttl": self.ttl, "registeredAt": self.registered_at,
            "lastHeartbeat": self.last_heartbeat, "deadline": self.deadline,
        }
