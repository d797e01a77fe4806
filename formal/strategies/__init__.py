"""Hypothesis strategies for syncproof schedules, and a helper that checks a
schedule against the independent executor: fuzz your own schedule generator
(or a pass that rewrites schedules) against syncproof.  Guide and example:
docs/strategies.md.

Strategies (each returns a ``hypothesis`` ``SearchStrategy``):

* :func:`schedules` - small random valid plain schedules using every
  construct of the runtime model (``features=`` restricts them);
* :func:`choice_schedules` - small random schedules with choices, every
  assignment of which selects a valid plain schedule;
* :func:`model_schedules` / :func:`buggy_schedules` / :func:`model_cases` -
  the bundled models at small sizes, without / with one named fault (a
  :class:`ModelCase` with a fault names the property it breaks);
* building blocks: :func:`regions`, :func:`accesses`, :func:`op_meta`.

Checking: :func:`assert_agrees_with_executor` (and :func:`check_agreement`,
which returns an :class:`Agreement` instead of raising).

hypothesis is a test dependency of syncproof, not a core one: this package
needs it (``pip install 'syncproof[test]'``); nothing else in syncproof
imports it.
"""

from __future__ import annotations

try:
    import hypothesis  # noqa: F401  (only to say clearly what is missing)
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError("syncproof.strategies needs hypothesis, a test dependency of syncproof:"
                      " pip install 'syncproof[test]'") from exc

from .agreement import Agreement, assert_agrees_with_executor, check_agreement
from .choices import choice_schedules
from .model_schedules import ModelCase, buggy_schedules, model_cases, model_names, model_schedules
from .plain import (
    ALL_COLLECTIVE_KINDS,
    COLLECTIVE_KINDS,
    FEATURES,
    P2P_MODES,
    PROGRESS_MODES,
    ROOTED,
    VALUES,
    accesses,
    op_meta,
    regions,
    schedules,
)

__all__ = [
    "ALL_COLLECTIVE_KINDS", "COLLECTIVE_KINDS", "FEATURES", "P2P_MODES", "PROGRESS_MODES", "ROOTED", "VALUES",
    "Agreement", "ModelCase", "accesses", "assert_agrees_with_executor", "buggy_schedules", "check_agreement",
    "choice_schedules", "model_cases", "model_names", "model_schedules", "op_meta", "regions", "schedules",
]
