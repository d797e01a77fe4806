"""The schedule strategies of the tests: a thin re-export of the public
``syncproof.strategies`` (formal/strategies/plain.py holds the one copy)."""

from __future__ import annotations

from syncproof.strategies.plain import (
    ACTIONS,
    ALL_COLLECTIVE_KINDS,
    COLLECTIVE_KINDS,
    FEATURES,
    FOCUS,
    P2P_MODES,
    PROGRESS_MODES,
    ROOTED,
    VALUES,
    accesses,
    op_meta,
    regions,
    schedules,
)

__all__ = ["ACTIONS", "ALL_COLLECTIVE_KINDS", "COLLECTIVE_KINDS", "FEATURES", "FOCUS", "P2P_MODES", "PROGRESS_MODES",
           "ROOTED", "VALUES", "accesses", "op_meta", "regions", "schedules"]
