"""Semantic ordering of version strings: 1.10 > 1.9, 2.0.0-rc1 < 2.0.0."""

from __future__ import annotations

import re

_PART = re.compile(r"\d+|[A-Za-z]+")


def version_key(version: str) -> tuple:
    """Sort key: numeric parts compare as numbers; a pre-release suffix
    (``-rc1``, ``-beta``) sorts before the plain release."""
    core, _, pre = version.lstrip("vV").partition("-")
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in _PART.findall(core))
    return parts, (1,) if not pre else (0, pre)


def highest(versions) -> str | None:
    versions = [v for v in versions if v is not None]
    return max(versions, key=version_key) if versions else None
