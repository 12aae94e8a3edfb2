"""Instances, services, leases and change notifications."""

from .instance import Instance, node_id_for
from .calls import CallGraph
from .registry import DEREGISTERED, EXPIRED, REGISTERED, UPDATED, Change, Pool, Registry, Service
from .versions import highest, version_key

__all__ = [
    "Instance", "node_id_for", "CallGraph", "Registry", "Service", "Pool", "Change",
    "REGISTERED", "UPDATED", "DEREGISTERED", "EXPIRED", "highest", "version_key",
]
