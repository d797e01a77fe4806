"""One exception hierarchy for the whole project.

``UserError`` and its subclasses mean the input (a schedule file, a command
line) is wrong: the CLI prints the message and exits with code 2, never a
traceback.  ``InternalError`` means syncproof itself is wrong: it is a bug
and is reported as such.
"""

from __future__ import annotations


class SyncproofError(Exception):
    """Base class of every error syncproof raises on purpose."""


class UserError(SyncproofError):
    """Bad input or usage: the user can fix it."""


class ScheduleError(UserError):
    """A schedule is malformed.

    ``where`` names the place (file, rank, op index, field) and ``hint`` an
    obvious fix when there is one.
    """

    def __init__(self, message: str, where: object = "", hint: str = "") -> None:
        self.message = message
        self.where = where = str(where)
        self.hint = hint
        text = f"{where}: {message}" if where else message
        if hint:
            text += f" (hint: {hint})"
        super().__init__(text)


class UsageError(UserError):
    """The command line or an API call was used wrongly."""


class InternalError(SyncproofError):
    """A bug in syncproof: an invariant of its own was broken."""
