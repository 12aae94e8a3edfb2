"""HTTP API: the fast path and the FastAPI app, built by :func:`create_app`."""

from .app import create_app
from .operations import Maxine

__all__ = ["create_app", "Maxine"]
