"""Maxine: a service registry whose discovery endpoint learns to route."""

__version__ = "0.1.0"
