"""Limits of the HTTP API that the server enforces and the Python clients respect
(a module of its own so that the clients need not import the server)."""

MAX_REPORTS = 1000  # reports per POST /record-response-times
