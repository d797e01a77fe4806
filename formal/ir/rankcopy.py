"""A rank's ops copied from shapes already built, and its event bookkeeping
in bulk: the fast path both loaders take for a rank all of whose ops are
alike to ops already built.

A *shape* is what alike ops share (their fields but for id, rank and
index): the JSON loader numbers identical lines of a file once
(``SharedOps.numbered``), the compact form stores shapes as rows.  When
every op of a rank has a shape built already, the loader

* copies each op's fields from its shape (:func:`copy_rank`), and
* does with numpy over the rank's shape numbers what the op-by-op loop does
  per op beyond copying (:meth:`EventColumns.rank_facts`): the checks that
  depend on the rank (a collective's group must hold it, a peer must not be
  itself) once per shape; the first record of each event; "re-recorded";
  and the waits validate must see.

Validate checks a wait against the records of its rank (a wait on an event
its rank never records is an error of the plain loader, see validate).  A
rank whose waits all name events it records passes that check, so only the
waits of a rank that waits on some event it never records are handed to
validate; and the records of the ranks read this way are added to
validate's table only when some wait is handed on (its message names the
ranks that do record the event: see :func:`add_records`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .ops import Kind, Op

if TYPE_CHECKING:
    import numpy as np

_new = object.__new__

#: (rank, id of its first op, the numbers of the events it records, the index of each one's first record,
#: the event names those numbers stand for)
LaterRecords = list[tuple[int, int, list[int], list[int], list[str]]]


def copy_rank(ops: list[Op], fields: list[dict[str, Any]], rank: int) -> int:
    """Append the ops of ``rank``, the i-th made of ``fields[i]`` (its shape's
    fields, id, rank and index among them as placeholders, see Op); returns
    the id of the first."""
    base = len(ops)
    append = ops.append
    for index, fd in enumerate(fields):
        op = _new(Op)
        f = op.__dict__
        f.update(fd)  # into the empty instance dict: CPython copies the whole table at once
        f["id"] = base + index
        f["rank"] = rank
        f["index"] = index
        append(op)
    return base


class EventColumns:
    """Per shape number: whether its checks depend on the rank; the number of
    its event if it is a record, and if it is a wait (-1 otherwise; and for a
    shape not added yet)."""

    __slots__ = ("rank_dependent", "record_event", "wait_event", "event_names", "_numbers")

    def __init__(self, n_shapes: int) -> None:
        import numpy as np

        self.rank_dependent = np.zeros(max(1, n_shapes), dtype=bool)
        self.record_event = np.full(max(1, n_shapes), -1, dtype=np.int64)
        self.wait_event = np.full(max(1, n_shapes), -1, dtype=np.int64)
        self.event_names: list[str] = []
        self._numbers: dict[str, int] = {}

    def add(self, shapes: list[tuple[int, Kind | None, dict[str, Any] | None, bool]]) -> None:
        """Fill in shapes ``(number, kind, fields, rank_dependent)``."""
        import numpy as np

        if not shapes:
            return
        record, wait = Kind.RECORD, Kind.WAIT
        names, event_names = self._numbers, self.event_names
        at: list[int] = []
        rec: list[int] = []
        wai: list[int] = []
        dep: list[bool] = []
        for j, kind, fields, dependent in shapes:
            e = -1
            if fields is not None and (kind is record or kind is wait):
                name = fields.get("event") or ""
                e = names.get(name, -1)
                if e < 0:
                    e = names[name] = len(event_names)
                    event_names.append(name)
            at.append(j)
            rec.append(e if kind is record else -1)
            wai.append(e if kind is wait else -1)
            dep.append(dependent)
        idx = np.asarray(at, dtype=np.int64)
        grow = int(idx.max()) + 1 - len(self.record_event)
        if grow > 0:  # numbers beyond those the columns were made for
            self.rank_dependent = np.concatenate([self.rank_dependent, np.zeros(grow, dtype=bool)])
            self.record_event = np.concatenate([self.record_event, np.full(grow, -1, dtype=np.int64)])
            self.wait_event = np.concatenate([self.wait_event, np.full(grow, -1, dtype=np.int64)])
        self.record_event[idx] = rec
        self.wait_event[idx] = wai
        self.rank_dependent[idx] = dep

    def rank_facts(self, numbers: list[int], rank: int, base: int, ops: list[Op], features: set[str],
                   later: LaterRecords, waits: list[Op]) -> list[int]:
        """The bookkeeping of the rank whose ops ``ops[base:]`` have the shapes
        ``numbers``: adds "re-recorded" to ``features``, its records to
        ``later``, its waits to ``waits`` when validate must see them; returns
        the shapes whose rank-dependent checks the caller must run for it."""
        import numpy as np

        col = np.asarray(numbers, dtype=np.int64)
        dependent: list[int] = np.unique(col[self.rank_dependent[col]]).tolist()
        ev = self.record_event[col]
        at = np.flatnonzero(ev >= 0)
        names: np.ndarray = np.zeros(0, dtype=np.int64)  # the events the rank records
        if len(at):
            names, first = np.unique(ev[at], return_index=True)
            if len(names) < len(at):
                features.add("re-recorded")
            later.append((rank, base, names.tolist(), at[first].tolist(), self.event_names))
        wv = self.wait_event[col]
        at = np.flatnonzero(wv >= 0)
        if len(at) and not bool(np.isin(wv[at], names).all()):
            waits.extend([ops[base + i] for i in at.tolist()])
        return dependent


def add_records(later: LaterRecords, ops: list[Op], recorded: dict[tuple[int, str], Op]) -> None:
    """Validate's table of records, completed with the first record of each
    event of the ranks read in bulk (needed once some wait is handed on)."""
    for rank, base, numbers, first_at, event_names in later:
        for e, i in zip(numbers, first_at, strict=True):
            recorded.setdefault((rank, event_names[e]), ops[base + i])

