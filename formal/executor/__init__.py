"""An independent explicit-state executor, used to cross-check the engine.

It shares no code with ``syncproof.semantics`` or ``syncproof.engine``; it
reads only the schedule IR and the result types.
"""

from .explicit import ExecResult, StateLimitExceeded, explore
from .replay import replay

__all__ = ["ExecResult", "StateLimitExceeded", "explore", "replay"]
