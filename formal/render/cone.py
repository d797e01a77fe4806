"""Which ops of a counterexample's run a large report stores.

A report of a schedule above ``jsonout.EMBED_MAX_OPS`` ops keeps, for each
counterexample, the times of: the ops its picture shows
(``dot.select_ops``), the ops its Perfetto trace shows by default
(``perfetto.trace_window``) and every op a replay looks at
(``executor.replay.replay_needs``).  So ``syncproof render`` draws the same
picture and trace from the report, and a replay of the stored partial run
confirms the same violation, while the report grows with the answer, not
with the schedule."""

from __future__ import annotations

from ..executor.replay import replay_needs
from ..ir import Schedule
from ..result import Counterexample
from .dot import select_ops
from .perfetto import trace_window


def stored_ops(s: Schedule, cex: Counterexample) -> set[int]:
    """The ops whose times the report keeps for ``cex``."""
    keep = set(select_ops(s, cex)) | trace_window(s, cex) | replay_needs(s, cex)
    if cex.run is not None and cex.run.known is not None:
        keep &= set(cex.run.known)  # a run read back from a report: only what it has
    return keep
