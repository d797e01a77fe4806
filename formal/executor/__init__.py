"""An independent, operational executor, used to cross-check the engine.

It simulates the runtime mechanism of DESIGN.md §2b (host issue order,
streams, group calls, communicator queues, progress, message capacity,
rooted collectives, one-sided puts, events) and shares no code with
``syncproof.semantics`` or ``syncproof.engine``; it reads only the schedule
IR and the result types.

A caller that replays several counterexamples of one schedule can build the
model once, ``model = build_model(schedule, light=True)``, and pass it to
every ``replay(schedule, cex, model=model)``.
"""

from .explicit import ExecResult, Model, StateLimitExceeded, build_model, explore
from .replay import replay

__all__ = ["ExecResult", "Model", "StateLimitExceeded", "build_model", "explore", "replay"]
