"""The choice-schedule strategy of the tests: a thin re-export of the public
``syncproof.strategies`` (formal/strategies/choices.py holds the one copy)."""

from __future__ import annotations

from syncproof.strategies.choices import ACTIONS, P2P_MODES, SYMBOLS, VALUES, choice_schedules, tidy_share_hint

__all__ = ["ACTIONS", "P2P_MODES", "SYMBOLS", "VALUES", "choice_schedules", "tidy_share_hint"]
