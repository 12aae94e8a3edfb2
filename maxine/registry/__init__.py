"""Instances, services, leases and change notifications."""

from .instance import Instance, node_id_for
from .registry import DEREGISTERED, EXPIRED, REGISTERED, UPDATED, Change, Pool, Registry, Service
from .versions import highest, version_key

__all__ = [
    "Instance", "node_id_for", "Registry", "Service", "Pool", "Change",
    "REGISTERED", "UPDATED", "DEREGISTERED", "EXPIRED", "highest", "version_key",
]
