"""syncproof: prove that a multi-device inference schedule is correctly
synchronized, or get a concrete run in which it is not.

The public names are re-exported here; the solver is imported only when a
check actually runs (``syncproof.engine``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import InternalError, ScheduleError, SyncproofError, UsageError, UserError
from .ir import (
    Access,
    Interval,
    Kind,
    Meta,
    Op,
    Region,
    Schedule,
    ScheduleBuilder,
    dumps,
    load,
    loads,
    save,
)
from .result import PROPERTIES, Counterexample, PropertyResult, Report, Run, Verdict

__version__ = "0.5.4"

if TYPE_CHECKING:
    from .engine import check_schedule as check_schedule


def __getattr__(name: str) -> Any:
    if name == "check_schedule":
        from .engine import check_schedule

        return check_schedule
    raise AttributeError(name)


__all__ = [
    "PROPERTIES", "Access", "Counterexample", "InternalError", "Interval", "Kind", "Meta", "Op",
    "PropertyResult", "Region", "Report", "Run", "Schedule", "ScheduleBuilder", "ScheduleError",
    "SyncproofError", "UsageError", "UserError", "Verdict", "__version__", "check_schedule", "dumps",
    "load", "loads", "save",
]
