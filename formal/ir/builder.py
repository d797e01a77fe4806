"""A Python builder for schedules, for people who write them by hand.

    b = ScheduleBuilder("tp2-decode")
    b.group("tp", [0, 1])
    b.buffer("h", "layer")
    for r in b.ranks(0, 1):
        r.compute("mlp", stream="compute", writes={"h[layer=0]": "partial"}, layer=0)
        r.all_reduce("tp", stream="compute", reads={"h[layer=0]": "partial"},
                     writes={"h[layer=0]": "sum"}, layer=0)
    schedule = b.build()

The builder writes the same document the file format reads and goes through
the same loader, so a built schedule and a loaded one cannot differ.
"""

from __future__ import annotations

from typing import Any

from .fileformat import FORMAT_VERSION, schedule_from_dict
from .schedule import Schedule

Accesses = dict[str, str | None] | None
_UNSET: Any = {}  # only compared with: an empty accesses map is the same as none


class RankBuilder:
    """Appends ops to one rank in issue order."""

    def __init__(self, rank: int, ops: list[dict[str, Any]]) -> None:
        self.rank = rank
        self._ops = ops

    def _add(self, kind: str, stream: str, fields: dict[str, Any], meta: dict[str, Any]) -> RankBuilder:
        d: dict[str, Any] = {"op": kind, "stream": stream}
        for k, v in fields.items():  # the fields left unset are None, or {} for accesses
            if v is not None and v != _UNSET:
                d[k] = v
        return self._put(d, meta)

    def _put(self, d: dict[str, Any], meta: dict[str, Any]) -> RankBuilder:
        """Append op ``d`` (its set fields) with the metadata not None."""
        for v in meta.values():
            if v is None:  # rare: drop the metadata set to None
                d.update({k: v for k, v in meta.items() if v is not None})
                break
        else:
            d.update(meta)
        self._ops.append(d)
        return self

    # The methods below are _add unrolled (the builder makes every op of the
    # benchmark's schedules): a field is set when it is not None and not {}.
    def compute(self, name: str, *, stream: str = "compute", reads: Accesses = None,
                writes: Accesses = None, **meta: Any) -> RankBuilder:
        d: dict[str, Any] = {"op": "compute", "stream": stream}
        if name is not None and name != _UNSET:
            d["name"] = name
        if reads is not None and reads != _UNSET:
            d["reads"] = reads
        if writes is not None and writes != _UNSET:
            d["writes"] = writes
        return self._put(d, meta)

    def send(self, to: int, *, stream: str = "comm", channel: str | None = None,
             reads: Accesses = None, size: int | None = None, name: str | None = None,
             **meta: Any) -> RankBuilder:
        return self._add("send", stream, {"to": to, "channel": channel, "reads": reads,
                                          "size": size, "name": name}, meta)

    def recv(self, frm: int, *, stream: str = "comm", channel: str | None = None,
             writes: Accesses = None, size: int | None = None, name: str | None = None,
             **meta: Any) -> RankBuilder:
        return self._add("recv", stream, {"from": frm, "channel": channel, "writes": writes,
                                          "size": size, "name": name}, meta)

    def collective(self, kind: str, group: str, *, stream: str = "comm", reads: Accesses = None,
                   writes: Accesses = None, size: int | None = None, root: int | None = None,
                   dtype: str | None = None, name: str | None = None, **meta: Any) -> RankBuilder:
        d: dict[str, Any] = {"op": kind, "stream": stream}
        for key, v in (("group", group), ("reads", reads), ("writes", writes), ("size", size), ("root", root),
                       ("dtype", dtype), ("name", name)):
            if v is not None and v != _UNSET:
                d[key] = v
        return self._put(d, meta)

    def all_reduce(self, group: str, **kw: Any) -> RankBuilder:
        return self.collective("all_reduce", group, **kw)

    def all_gather(self, group: str, **kw: Any) -> RankBuilder:
        return self.collective("all_gather", group, **kw)

    def reduce_scatter(self, group: str, **kw: Any) -> RankBuilder:
        return self.collective("reduce_scatter", group, **kw)

    def all_to_all(self, group: str, **kw: Any) -> RankBuilder:
        return self.collective("all_to_all", group, **kw)

    def broadcast(self, group: str, root: int, **kw: Any) -> RankBuilder:
        return self.collective("broadcast", group, root=root, **kw)

    def barrier(self, group: str, **kw: Any) -> RankBuilder:
        return self.collective("barrier", group, **kw)

    def record(self, event: str, *, stream: str, **meta: Any) -> RankBuilder:
        d: dict[str, Any] = {"op": "record", "stream": stream}
        if event is not None and event != _UNSET:
            d["event"] = event
        return self._put(d, meta)

    def wait(self, event: str, *, stream: str, **meta: Any) -> RankBuilder:
        d: dict[str, Any] = {"op": "wait", "stream": stream}
        if event is not None and event != _UNSET:
            d["event"] = event
        return self._put(d, meta)


class ScheduleBuilder:
    def __init__(self, name: str, *, p2p: str = "rendezvous", description: str = "") -> None:
        self._doc: dict[str, Any] = {
            "syncproof": FORMAT_VERSION, "name": name, "p2p": p2p, "description": description,
            "groups": {}, "buffers": {}, "init": [], "ranks": {},
        }

    def group(self, name: str, members: list[int] | range) -> ScheduleBuilder:
        self._doc["groups"][name] = list(members)
        return self

    def buffer(self, name: str, *axes: str, **extents: int | None) -> ScheduleBuilder:
        """``buffer("kv", "layer", "token")`` or ``buffer("kv", layer=4, token=1024)``."""
        if axes and extents:
            self._doc["buffers"][name] = {**{a: None for a in axes}, **extents}
        elif extents:
            self._doc["buffers"][name] = dict(extents)
        else:
            self._doc["buffers"][name] = list(axes)
        return self

    def init(self, region: str, value: str, ranks: list[int] | None = None) -> ScheduleBuilder:
        entry: dict[str, Any] = {"region": region, "value": value}
        if ranks is not None:
            entry["ranks"] = list(ranks)
        self._doc["init"].append(entry)
        return self

    def rank(self, rank: int) -> RankBuilder:
        ops = self._doc["ranks"].setdefault(str(rank), [])
        return RankBuilder(rank, ops)

    def ranks(self, *ranks: int) -> list[RankBuilder]:
        return [self.rank(r) for r in ranks]

    def to_dict(self) -> dict[str, Any]:
        return self._doc

    def build(self, source: str | None = None) -> Schedule:
        """Validate and return the schedule; raises ScheduleError naming the op."""
        return schedule_from_dict(self._doc, source or f"<builder {self._doc['name']}>")
