"""The capture's own error: something in the user's program it cannot
classify (an op, a call, an argument).  Never an op dropped silently."""

from __future__ import annotations

from ..errors import UserError


class CaptureError(UserError):
    """The capture met something it cannot record faithfully; the message
    names it (the aten op, the torch call) and, where there is one, the way
    around it."""
