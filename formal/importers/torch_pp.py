"""Import the action lists of ``torch.distributed.pipelining`` and lower them
to a syncproof schedule (format v2).  This module does not import torch.

Input: for every pipeline rank, the list of actions in torch's own string
form (``2F0``, ``3SEND_B1``, ``1UNSHARD``, ``(0F7;7B3)OVERLAP_F_B``; an
empty cell or ``null`` is a bubble), from a CSV file as torch's
``_dump_csv`` writes it (one row per rank) or from JSON (a list of rows, an
object ``{"0": [...], ...}``, or an object with an ``"actions"`` field).

The main input is the *lowered* list, the one ``_PipelineScheduleRuntime``
executes (``pipeline_order_with_comms``).  A compute-only order
(``pipeline_order``) has no communication in it; :mod:`.torch_bridge` lowers
it with torch's own passes when torch is installed.

How the runtime is encoded (the full argument is in ``docs/torch-pp.md``):

* each rank runs its list in order on the host; compute (``F``, ``B``,
  ``I``, ``W``, ``REDUCE_GRAD``, ``RESHARD``) goes to the ``compute`` stream;
* ``SEND_*``/``RECV_*`` go through torch's ``_batch_p2p``, which issues an
  action's ops (all sends or all recvs, to one peer) as plain
  ``isend``/``irecv`` calls, not as a ``batch_isend_irecv`` group: torch 2.13
  coalesces only mixed batches.  ProcessGroupNCCL runs a single p2p op on the
  two-rank communicator of its pair and that communicator's stream, so each
  op is a send/recv on the stream ``comm<peer>`` with the default
  per-pair communicator (``p2p:lo-hi``); with ``comm="single"`` (a process
  group bound to a device at init, whose p2p reuses the group's
  communicator) every op is on one ``comm`` stream and communicator ``pp``.
  No tags, no channels: one FIFO per communicator and direction, across
  forward and backward.  Before each op its stream waits for the work
  already enqueued on ``compute`` (ProcessGroupNCCL's stream sync),
  modelled as record/wait;
* a recv declares the value the program *expects* there (the activation or
  gradient of the stage and microbatch its action names); the core checks
  it against what its FIFO partner actually sent (``dataflow``);
* a compute action waits (record after the recv, wait before the compute)
  for the recv torch pops for it: ``RECV_F`` of its stage and microbatch for
  ``F``, ``RECV_B`` for ``B``/``I``; stages on one rank pass data locally;
* the step ends by waiting for every send; ``UNSHARD`` runs on an ``fsdp``
  stream and the first compute on its stage waits for it.

Values: ``act(s,m)`` is stage ``s``'s forward output for microbatch ``m``,
``grad(s,m)`` the gradient of stage ``s``'s input, ``wgrad(s)`` a weight
gradient contribution and ``full(s)``/``sharded(s)`` a stage's parameters.
Every read says which value it needs, so dataflow checks that each ``F``
reads its own microbatch's activation.

Malformed input (a file that is not a regular file, not UTF-8, bad JSON or
CSV, a cell that is not an action, a stage or microbatch number out of
range, non-ASCII digits) is a :class:`~syncproof.errors.ScheduleError`
naming the file, the rank and step (row and column) and the cell.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import apiguard
from ..errors import ScheduleError, UsageError
from ..gcpause import gc_paused
from ..inputs import ascii_int, parse_json, read_text
from ..ir import Access, Buffer, InitValue, Interval, Kind, Op, Region, Schedule
from ..ir.validate import validate

COMPUTE_KINDS = ("F", "B", "I", "W")
COMM_KINDS = ("SEND_F", "RECV_F", "SEND_B", "RECV_B")
FSDP_KINDS = ("UNSHARD", "RESHARD")
NO_MB_KINDS = ("UNSHARD", "RESHARD", "REDUCE_GRAD")
BACKWARD_KINDS = ("B", "I", "W", "SEND_B", "RECV_B", "REDUCE_GRAD")
OVERLAP = "OVERLAP_F_B"
KINDS = COMPUTE_KINDS + COMM_KINDS + NO_MB_KINDS

PLACEMENTS = ("auto", "loop", "v")
COMM_MODES = ("per-peer", "single")
P2P_MODES = ("any", "rendezvous", "eager")
PROGRESS_MODES = ("any", "concurrent")
SINGLE_COMM = "pp"  # the communicator of comm="single"

#: Bounds of the numbers in an action (far above any real pipeline; they keep
#: a typo such as 99999999999F0 from building a 10^11-stage placement).
MAX_STAGES = 10_000
MAX_MICROBATCHES = 1_000_000
#: How much of a bad cell an error message quotes.
CELL_LIMIT = 60

# Longest names first, so that e.g. "SEND_F" is never read as "S" + ...
# ASCII digits only: \d would also match "٣" (and int() read it as 3).
_ACTION = re.compile(r"([0-9]+)(" + "|".join(sorted(KINDS, key=len, reverse=True)) + r")([0-9]*)", re.ASCII)


def _cell(text: object) -> str:
    """A cell as an error message quotes it (cut short)."""
    return apiguard.short_repr(text, CELL_LIMIT)


def _number(digits: str, what: str, limit: int, text: str, where: str) -> int:
    if len(digits) > len(str(limit)) or int(digits) >= limit:
        raise ScheduleError(f"{_cell(text)}: {what} {digits[:12]}{'...' if len(digits) > 12 else ''} is out of"
                            f" range (at most {limit - 1})", where)
    return int(digits)


# --------------------------------------------------------------- actions
@dataclass(frozen=True)
class Action:
    """One entry of a torch action list.

    ``stage`` is the stage index, ``kind`` one of :data:`KINDS` (or
    ``OVERLAP_F_B`` for a container, whose ``stage`` is -1 and whose
    ``subs`` are run in order), ``mb`` the microbatch (``None`` for
    ``UNSHARD``, ``RESHARD``, ``REDUCE_GRAD``)."""

    stage: int
    kind: str
    mb: int | None = None
    subs: tuple[Action, ...] = ()

    def __str__(self) -> str:
        if self.kind == OVERLAP:
            return "(" + ";".join(str(a) for a in self.subs) + ")" + OVERLAP
        return f"{self.stage}{self.kind}{'' if self.mb is None else self.mb}"

    @property
    def leaves(self) -> tuple[Action, ...]:
        return self.subs if self.kind == OVERLAP else (self,)


def parse_action(text: str, where: str = "") -> Action | None:
    """Parse one action string; ``None`` for an empty cell (a bubble).

    Stricter than torch's own parser, which accepts any text that merely
    *starts* with an action (``2F0x`` reads as ``2F0``)."""
    if not isinstance(text, str):
        raise ScheduleError(f"an action must be a string, got {_cell(text)}", where)
    t = text.strip()
    if t == "" or t.lower() in ("none", "null"):
        return None
    if t.startswith("("):
        close = t.find(")")
        if close < 0 or t[close + 1 :] != OVERLAP:
            raise ScheduleError(f"cannot read action {_cell(text)}", where,
                                "a composite action is written like (0F3;3B1)OVERLAP_F_B")
        subs: list[Action] = []
        for part in t[1:close].split(";"):
            sub = parse_action(part, where)
            if sub is None:
                continue
            if sub.kind not in COMPUTE_KINDS:
                raise ScheduleError(f"{_cell(text)}: {sub} cannot be part of {OVERLAP}", where,
                                    "only F, B, I and W actions overlap")
            subs.append(sub)
        if not subs:
            raise ScheduleError(f"{_cell(text)} overlaps no actions", where)
        return Action(-1, OVERLAP, None, tuple(subs))
    m = _ACTION.fullmatch(t)
    if m is None:
        raise ScheduleError(f"cannot read action {_cell(text)}", where,
                            "actions look like 2F0, 1B3, 0I1, 0W1, 3SEND_F1, 2RECV_B0, 1UNSHARD,"
                            " 1RESHARD, 0REDUCE_GRAD or (0F3;3B1)OVERLAP_F_B")
    kind, mb = m.group(2), m.group(3)
    stage = _number(m.group(1), "stage", MAX_STAGES, text, where)
    if kind in NO_MB_KINDS:
        if mb:
            raise ScheduleError(f"{_cell(text)}: {kind} takes no microbatch", where, f"write {stage}{kind}")
        return Action(stage, kind, None)
    if not mb:
        raise ScheduleError(f"{_cell(text)}: {kind} needs a microbatch number", where, f"e.g. {stage}{kind}0")
    return Action(stage, kind, _number(mb, "microbatch", MAX_MICROBATCHES, text, where))


Order = dict[int, list[Action | None]]


# --------------------------------------------------------------- reading
def parse_rows(rows: Sequence[Sequence[Any]] | Mapping[Any, Sequence[Any]], source: str) -> Order:
    """Action lists from rows of strings (or ``None``): a list (index is the
    rank) or a mapping from rank to list."""
    items: list[tuple[int, Sequence[Any]]] = []
    if isinstance(rows, Mapping):
        for key, row in rows.items():
            k = str(key)
            if k.startswith("-") or not k.isascii() or not k.isdigit():
                raise ScheduleError(f"rank key {_cell(key)} must be a non-negative integer (ASCII digits)", source)
            items.append((ascii_int(k, source, "a rank"), row))
    elif isinstance(rows, str | bytes) or not isinstance(rows, Sequence):
        raise ScheduleError(f"expected a list of per-rank action lists (or an object of them), got {_cell(rows)}",
                            source)
    else:
        items = list(enumerate(rows))
    out: Order = {}
    for rank, row in sorted(items, key=lambda kv: kv[0]):
        if rank in out:
            raise ScheduleError(f"rank {rank} is given twice", source)
        if isinstance(row, str | bytes) or not isinstance(row, Sequence):
            raise ScheduleError(f"rank {rank}: expected a list of action strings, got {_cell(row)}", source)
        acts: list[Action | None] = []
        for step, cell in enumerate(row):
            where = f"{source}: rank {rank}, step {step} (row {rank + 1}, column {step + 1})"
            if cell is None:
                acts.append(None)
            elif isinstance(cell, str):
                acts.append(parse_action(cell, where))
            else:
                raise ScheduleError(f"an action must be a string or null, got {_cell(cell)}", where)
        out[rank] = acts
    if not out:
        raise ScheduleError("no ranks: the file holds no action lists", source)
    expected = list(range(len(out)))
    if sorted(out) != expected:
        missing = sorted(set(expected) - set(out))
        raise ScheduleError(f"ranks must be 0..{len(out) - 1}; missing rank {missing[0] if missing else '?'}",
                            source)
    return out


@dataclass(frozen=True)
class OrderFile:
    """What a file holds: the action lists and any settings stored with them."""

    order: Order
    placement: str | None = None
    name: str | None = None
    n_microbatches: int | None = None
    info: dict[str, Any] = field(default_factory=dict)


def read_csv_text(text: str, source: str) -> Order:
    """One row per rank, as ``_dump_csv`` writes it (empty cells are bubbles)."""
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:  # a field over csv's size limit, a NUL byte in older Pythons
        raise ScheduleError(f"not valid CSV: {exc}", source) from None
    while rows and not any(c.strip() for c in rows[-1]):
        rows.pop()  # trailing blank lines
    return parse_rows(rows, source)


def read_json_obj(doc: Any, source: str) -> OrderFile:
    if isinstance(doc, list):
        return OrderFile(parse_rows(doc, source))
    if not isinstance(doc, dict):
        raise ScheduleError("expected a JSON list of per-rank action lists, or an object", source)
    if "actions" not in doc:
        return OrderFile(parse_rows(doc, source))
    known = ("actions", "placement", "name", "n_microbatches", "format", "info")
    for key in doc:
        if key not in known:
            raise ScheduleError(f"unknown field {_cell(key)}", source, f"fields: {', '.join(known)}")
    placement = doc.get("placement")
    if placement is not None and placement not in ("loop", "v"):
        raise ScheduleError(f"placement must be 'loop' or 'v', got {_cell(placement)}", source)
    nmb = doc.get("n_microbatches")
    if nmb is not None and (not isinstance(nmb, int) or isinstance(nmb, bool) or not 1 <= nmb <= MAX_MICROBATCHES):
        raise ScheduleError(f"n_microbatches must be a positive integer, at most {MAX_MICROBATCHES}, got"
                            f" {_cell(nmb)}", source)
    name = doc.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        raise ScheduleError(f"name must be a non-empty string, got {_cell(name)}", source)
    info = doc.get("info", {})
    if not isinstance(info, dict):
        raise ScheduleError(f"info must be an object, got {_cell(info)}", source)
    return OrderFile(parse_rows(doc["actions"], source), placement, name, nmb, info)


def read_order_text(text: str, source: str) -> OrderFile:
    """CSV or JSON, told apart by the first non-blank character."""
    text = apiguard.text(text, "read_order_text", "text")
    source = apiguard.text(source, "read_order_text", "source")
    head = text.lstrip()[:1]
    if head in ("[", "{"):
        # syncproof.inputs: depth limit, NaN and over-long integers refused,
        # syntax errors with line and column; a key given twice is an error
        # (JSON would keep only the last rank's list).
        doc = parse_json(text, source, object_pairs_hook=lambda pairs: _no_duplicates(pairs, source))
        return read_json_obj(doc, source)
    return OrderFile(read_csv_text(text, source))


def _no_duplicates(pairs: list[tuple[str, Any]], source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ScheduleError(f"key {_cell(key)} appears twice in one object (JSON would keep only the last)",
                                source)
        out[key] = value
    return out


def read_order(path: str | Path) -> OrderFile:
    """The action lists of a CSV or JSON file, read through
    :mod:`syncproof.inputs` (a regular, UTF-8 file; a BOM is skipped)."""
    p = apiguard.path(path, "read_order")
    text = read_text(p, "torch pipelining action lists (CSV or JSON)")
    if "\x00" in text:
        raise ScheduleError(f"not a text file: a NUL character at offset {text.index(chr(0))} (expected CSV or JSON)",
                            str(p))
    return read_order_text(text, str(p))


def format_order(order: Order) -> str:
    """The CSV text torch's ``_dump_csv`` would write for ``order``."""
    buf = io.StringIO()
    w = csv.writer(buf)
    for rank in sorted(order):
        w.writerow(["" if a is None else str(a) for a in order[rank]])
    return buf.getvalue()


# ------------------------------------------------------------- placement
def loop_placement(n_ranks: int, n_stages: int) -> dict[int, int]:
    return {s: s % n_ranks for s in range(n_stages)}


def v_placement(n_ranks: int, n_stages: int) -> dict[int, int]:
    """Stages go down the ranks and back up: with 2 stages per rank, rank r
    holds stages r and 2P-1-r."""
    out: dict[int, int] = {}
    for s in range(n_stages):
        lap, pos = divmod(s, n_ranks)
        out[s] = pos if lap % 2 == 0 else n_ranks - 1 - pos
    return out


@dataclass(frozen=True)
class Placement:
    style: str  # "loop", "v" or "custom" (inferred, neither)
    stage_to_rank: dict[int, int]

    def rank(self, stage: int) -> int:
        return self.stage_to_rank[stage]


def _leaves(order: Order) -> Iterable[tuple[int, int, Action, Action]]:
    """(rank, step, leaf action, the list entry it belongs to)."""
    for rank, acts in order.items():
        for step, a in enumerate(acts):
            if a is not None:
                for leaf in a.leaves:
                    yield rank, step, leaf, a


def order_sizes(order: Order, source: str = "") -> tuple[int, int]:
    """(number of stages, number of microbatches) the actions mention."""
    stages = [leaf.stage for _, _, leaf, _ in _leaves(order)]
    mbs = [leaf.mb for _, _, leaf, _ in _leaves(order) if leaf.mb is not None]
    if not stages:
        raise ScheduleError("the action lists are empty (every cell is a bubble)", source)
    return max(stages) + 1, (max(mbs) + 1 if mbs else 0)


def infer_placement(order: Order, style: str = "auto", source: str = "<torch-pp>") -> Placement:
    """The stage-to-rank map: from ``style`` (checked against the actions)
    or, for ``auto``, read off the actions (every action is on its stage's rank)."""
    if not isinstance(style, str) or style not in PLACEMENTS:
        raise UsageError(f"unknown placement {_cell(style)}; choose from {', '.join(PLACEMENTS)}")
    n_ranks = len(order)
    n_stages, _ = order_sizes(order, source)
    seen: dict[int, tuple[int, int, Action]] = {}
    for rank, step, leaf, entry in _leaves(order):
        prev = seen.get(leaf.stage)
        if prev is None:
            seen[leaf.stage] = (rank, step, entry)
        elif prev[0] != rank and style == "auto":
            raise ScheduleError(
                f"stage {leaf.stage} appears on rank {prev[0]} (step {prev[1]}, {prev[2]}) and on rank"
                f" {rank} (step {step}, {entry}); a stage lives on one rank",
                f"{source}: rank {rank}, step {step}")
    missing = [s for s in range(n_stages) if s not in seen]
    if missing:
        raise ScheduleError(f"stage {missing[0]} has no action on any rank (stages 0..{n_stages - 1} are"
                            " mentioned)", source)
    if style == "auto":
        mapping = {s: seen[s][0] for s in range(n_stages)}
        if n_stages % n_ranks == 0 and mapping == loop_placement(n_ranks, n_stages):
            return Placement("loop", mapping)
        if n_stages % n_ranks == 0 and mapping == v_placement(n_ranks, n_stages):
            return Placement("v", mapping)
        return Placement("custom", mapping)
    if n_stages % n_ranks != 0:
        raise ScheduleError(f"{n_stages} stages cannot be placed {style!r} on {n_ranks} ranks"
                            " (not a multiple)", source)
    mapping = loop_placement(n_ranks, n_stages) if style == "loop" else v_placement(n_ranks, n_stages)
    for rank, step, leaf, entry in _leaves(order):
        if mapping[leaf.stage] != rank:
            raise ScheduleError(
                f"{entry} names stage {leaf.stage}, which placement {style!r} puts on rank"
                f" {mapping[leaf.stage]}", f"{source}: rank {rank}, step {step}",
                "pick the other --placement, or leave it out to read the placement off the actions")
    return Placement(style, mapping)


def needs_comms(order: Order, placement: Placement, n_stages: int) -> bool:
    """True when some compute action hands data to a stage on another rank."""
    for _, _, leaf, _ in _leaves(order):
        if leaf.kind == "F" and leaf.stage < n_stages - 1 \
                and placement.rank(leaf.stage + 1) != placement.rank(leaf.stage):
            return True
        if leaf.kind in ("B", "I") and leaf.stage > 0 \
                and placement.rank(leaf.stage - 1) != placement.rank(leaf.stage):
            return True
    return False


def is_compute_only(order: Order, placement: Placement | None = None) -> bool:
    """A compute-only ``pipeline_order``: no communication, no FSDP actions,
    and some data has to cross ranks (so it cannot run as it is)."""
    for _, _, leaf, _ in _leaves(order):
        if leaf.kind in COMM_KINDS or leaf.kind in FSDP_KINDS:
            return False
    n_stages, _ = order_sizes(order)
    pl = placement or infer_placement(order)
    return needs_comms(order, pl, n_stages)


def forward_only(order: Order) -> Order:
    """What ``eval()`` runs: backward actions (and their sends and recvs)
    do nothing when the schedule has no backward, so they are dropped.
    An ``OVERLAP_F_B`` keeps its forward part."""
    out: Order = {}
    for rank, acts in order.items():
        row: list[Action | None] = []
        for a in acts:
            if a is None:
                row.append(None)
                continue
            keep = tuple(x for x in a.leaves if x.kind not in BACKWARD_KINDS)
            if not keep:
                row.append(None)
            elif a.kind == OVERLAP:
                row.append(Action(-1, OVERLAP, None, keep) if len(keep) > 1 else keep[0])
            else:
                row.append(a)
        out[rank] = row
    return out


# --------------------------------------------------------------- lowering
@dataclass(frozen=True)
class Imported:
    """A lowered torch schedule: the syncproof schedule and what it came from.
    ``notes`` say, in torch's terms, where torch's runtime itself would stop
    on the list (a compute with no recv posted, a recv posted twice, an unused
    unshard).  A recv that gets another send's tensor is not a note: the
    core finds it (``dataflow``)."""

    schedule: Schedule
    order: Order
    placement: Placement
    n_stages: int
    n_microbatches: int
    comm: str
    notes: tuple[str, ...]

    @property
    def n_ranks(self) -> int:
        return len(self.order)

    @property
    def n_actions(self) -> int:
        return sum(1 for acts in self.order.values() for a in acts if a is not None)


@dataclass
class _Op:
    """An op under construction (ids are given once every rank is done)."""

    stream: str
    kind: Kind
    name: str
    peer: int | None = None
    event: str | None = None
    reads: tuple[Access, ...] = ()
    writes: tuple[Access, ...] = ()
    comm: str | None = None


def _at(entry: Action, rank: int, step: int) -> str:
    """How notes name an action: ``0SEND_F3 (rank 0, step 9)``."""
    return f"{entry} (rank {rank}, step {step})"


class _RankLowerer:
    """Builds one rank's ops in issue order."""

    def __init__(self, low: _Lowerer, rank: int) -> None:
        self.low, self.rank = low, rank
        self.ops: list[_Op] = []
        self.pending_recv: dict[tuple[int, str, int], list[str]] = defaultdict(list)
        self.pending_unshard: dict[int, str] = {}
        self.compute_version = 0  # ops enqueued on compute so far
        self.synced: dict[str, int] = {}  # stream -> compute_version it last waited for
        self.record_version = -1
        self.record_name = ""
        self.n_records = 0
        self.send_streams: list[str] = []

    # -- helpers
    def _add(self, op: _Op) -> _Op:
        self.ops.append(op)
        if op.stream == "compute" and op.kind in (Kind.COMPUTE, Kind.WAIT):
            self.compute_version += 1
        return op

    def _sync_from_compute(self, stream: str, name: str) -> None:
        """ProcessGroupNCCL (and FSDP) make their stream wait for the work
        already enqueued on the current stream before they enqueue an op."""
        if self.synced.get(stream, 0) == self.compute_version:
            return
        if self.record_version != self.compute_version:
            self.record_name = f"c{self.n_records}"
            self.n_records += 1
            self.ops.append(_Op("compute", Kind.RECORD, name, event=self.record_name))
            self.record_version = self.compute_version
        self.ops.append(_Op(stream, Kind.WAIT, name, event=self.record_name))
        self.synced[stream] = self.compute_version

    def comm_stream(self, peer: int) -> str:
        return "comm" if self.low.comm == "single" else f"comm{peer}"

    def comm_name(self) -> str | None:
        """The communicator: None (the default, one per rank pair, as
        ProcessGroupNCCL creates for a single isend/irecv) or the group's
        one communicator with ``comm="single"``."""
        return SINGLE_COMM if self.low.comm == "single" else None

    # -- actions
    def action(self, leaf: Action, entry: Action, step: int) -> None:
        low = self.low
        name = f"{leaf} step {step} in {entry}" if entry.kind == OVERLAP else f"{entry} step {step}"
        s, m, k = leaf.stage, leaf.mb, leaf.kind
        if k in COMPUTE_KINDS:
            assert m is not None
            self._compute(leaf, m, name, step)
        elif k in COMM_KINDS:
            assert m is not None
            self._comm(leaf, entry, s, m, name, step)
        elif k == "UNSHARD":
            self._sync_from_compute("fsdp", name)
            self._add(_Op("fsdp", Kind.COMPUTE, name, writes=(Access(low.region("param", s), f"full({s})"),)))
            event = f"{leaf}@{step}"
            self._add(_Op("fsdp", Kind.RECORD, name, event=event))
            self.pending_unshard[s] = event
        elif k == "RESHARD":
            self._add(_Op("compute", Kind.COMPUTE, name,
                          writes=(Access(low.region("param", s), f"sharded({s})"),)))
        elif k == "REDUCE_GRAD":
            self._add(_Op("compute", Kind.COMPUTE, name,
                          reads=(Access(low.region("wgrad", s, None), f"wgrad({s})"),)))
        else:  # pragma: no cover - the parser admits nothing else
            raise ScheduleError(f"unsupported action {entry}", self.where(step))

    def where(self, step: int) -> str:
        return f"{self.low.source}: rank {self.rank}, step {step}"

    def _comm(self, leaf: Action, entry: Action, s: int, m: int, name: str, step: int) -> None:
        low, k = self.low, leaf.kind
        nb = s + 1 if k in ("SEND_F", "RECV_B") else s - 1  # the neighbour stage
        if nb < 0 or nb >= low.n_stages:
            raise ScheduleError(f"{entry}: stage {s} has no {'next' if nb > s else 'previous'} stage"
                                f" to {'send to' if k.startswith('SEND') else 'receive from'}", self.where(step))
        if k == "SEND_F":
            region, what = low.region("act", s, m), f"act({s},{m})"
        elif k == "SEND_B":
            region, what = low.region("grad", s, m), f"grad({s},{m})"
        elif k == "RECV_F":
            region, what = low.region("act", nb, m), f"act({nb},{m})"
        else:
            region, what = low.region("grad", nb, m), f"grad({nb},{m})"
        peer = low.placement.rank(nb)
        if peer == self.rank:
            raise ScheduleError(
                f"{entry}: stages {min(s, nb)} and {max(s, nb)} are both on rank {self.rank}; torch passes"
                " data between them locally and posts no send or recv", self.where(step), "drop this action")
        stream = self.comm_stream(peer)
        self._sync_from_compute(stream, name)
        comm = self.comm_name()
        if k.startswith("SEND"):
            self._add(_Op(stream, Kind.SEND, name, peer=peer, reads=(Access(region, what),), comm=comm))
            if stream not in self.send_streams:
                self.send_streams.append(stream)
            return
        # The recv declares what the consuming action expects; the core checks
        # it against the value its FIFO partner carries.
        self._add(_Op(stream, Kind.RECV, name, peer=peer, writes=(Access(region, what),), comm=comm))
        event = f"{leaf}@{step}"
        self._add(_Op(stream, Kind.RECORD, name, event=event))
        key = (s, "F" if k == "RECV_F" else "B", m)
        if self.pending_recv[key]:
            low.note(f"{_at(entry, self.rank, step)} posts a second recv for stage {s}, microbatch {m}"
                     " before the first is consumed (torch's runtime stops here with 'Recv twice')")
        self.pending_recv[key].append(event)

    def _compute(self, leaf: Action, m: int, name: str, step: int) -> None:
        low = self.low
        pl, last, s, k = low.placement, low.n_stages - 1, leaf.stage, leaf.kind
        reads: list[Access] = []
        writes: list[Access] = []
        if k == "F":
            if s > 0:
                reads.append(Access(low.region("act", s - 1, m), f"act({s - 1},{m})"))
                if pl.rank(s - 1) != self.rank:
                    self._wait_recv((s, "F", m), name, leaf, step, "RECV_F", "Computing ... before receiving input")
            writes.append(Access(low.region("act", s, m), f"act({s},{m})"))
        elif k in ("B", "I"):
            reads.append(Access(low.region("act", s, m), f"act({s},{m})"))
            if s < last:
                reads.append(Access(low.region("grad", s + 1, m), f"grad({s + 1},{m})"))
                if pl.rank(s + 1) != self.rank:
                    self._wait_recv((s, "B", m), name, leaf, step, "RECV_B",
                                    "Attempted to run compute ... before receiving input")
            writes.append(Access(low.region("grad", s, m), f"grad({s},{m})"))
            if k == "B":
                writes.append(Access(low.region("wgrad", s, m), f"wgrad({s})"))
        else:  # W
            reads.append(Access(low.region("grad", s, m), f"grad({s},{m})"))
            writes.append(Access(low.region("wgrad", s, m), f"wgrad({s})"))
        if s in low.fsdp_stages:
            reads.append(Access(low.region("param", s), f"full({s})"))
            ev = self.pending_unshard.pop(s, None)
            if ev is not None:
                self._add(_Op("compute", Kind.WAIT, name, event=ev))
        self._add(_Op("compute", Kind.COMPUTE, name, reads=tuple(reads), writes=tuple(writes)))

    def _wait_recv(self, key: tuple[int, str, int], name: str, leaf: Action, step: int, recv: str,
                   torch_msg: str) -> None:
        events = self.pending_recv.pop(key, [])
        if not events:
            self.low.note(f"{_at(leaf, self.rank, step)} has no {recv} posted before it (torch's runtime"
                          f" stops here with '{torch_msg}')")
        for ev in events:
            self._add(_Op("compute", Kind.WAIT, name, event=ev))

    def finish(self) -> None:
        """The step waits for every send before it returns."""
        for stream in self.send_streams:
            ev = f"end-{stream}"
            self.ops.append(_Op(stream, Kind.RECORD, "end of step", event=ev))
            self.ops.append(_Op("compute", Kind.WAIT, "end of step", event=ev))
        for (s, kind, m), evs in sorted(self.pending_recv.items()):
            if evs:
                self.low.note(f"rank {self.rank}: the RECV_{kind} for stage {s}, microbatch {m} is never"
                              f" consumed by {'an F' if kind == 'F' else 'a B or I'} of stage {s}")
        for s in sorted(self.pending_unshard):
            self.low.note(f"rank {self.rank}: UNSHARD of stage {s} is never waited for by a compute on that"
                          " stage (torch's runtime stops with 'Unused unshard operations')")


class _Lowerer:
    def __init__(self, order: Order, placement: Placement, n_stages: int, n_mb: int, comm: str,
                 source: str) -> None:
        self.order, self.placement, self.n_stages, self.n_mb = order, placement, n_stages, max(n_mb, 1)
        self.comm, self.source = comm, source
        self.notes: list[str] = []
        self.fsdp_stages = {leaf.stage for _, _, leaf, _ in _leaves(order) if leaf.kind in FSDP_KINDS}
        self._regions: dict[tuple[str, int, int | None], Region] = {}
        self.buffers = (
            Buffer("act", (("stage", n_stages), ("mb", self.n_mb))),
            Buffer("grad", (("stage", n_stages), ("mb", self.n_mb))),
            Buffer("wgrad", (("stage", n_stages), ("mb", self.n_mb))),
            Buffer("param", (("stage", n_stages),)),
        )

    def region(self, buffer: str, stage: int, mb: int | None = -1) -> Region:
        """``buffer[stage=s, mb=m]``; ``mb=None`` is every microbatch, and
        ``param`` has no microbatch axis."""
        key = (buffer, stage, mb)
        reg = self._regions.get(key)
        if reg is None:
            box: list[tuple[str, Interval]] = [("stage", Interval(stage, stage + 1))]
            if buffer != "param":
                box.append(("mb", Interval(0, self.n_mb) if mb is None else Interval(mb, mb + 1)))
            reg = self._regions[key] = Region(buffer, tuple(box))
        return reg

    def note(self, text: str) -> None:
        self.notes.append(text)

    def ranks(self) -> dict[int, list[_Op]]:
        out: dict[int, list[_Op]] = {}
        for rank in sorted(self.order):
            rl = _RankLowerer(self, rank)
            for step, entry in enumerate(self.order[rank]):
                if entry is None:
                    continue
                for leaf in entry.leaves:
                    rl.action(leaf, entry, step)
            rl.finish()
            out[rank] = rl.ops
        return out

def lower(order: Order, *, placement: str | Placement = "auto", name: str = "torch-pp",
          comm: str = "per-peer", p2p: str = "any", progress: str = "any", eval_mode: bool = False,
          source: str = "<torch-pp>", description: str = "") -> Imported:
    """Lower a torch action list (the lowered IR) to a validated syncproof schedule.

    ``eval_mode`` checks what ``eval()`` runs (backward actions are no-ops
    there).  A compute-only order is refused with a hint: lower it first
    (:func:`syncproof.importers.torch_bridge.lower_compute_only`)."""
    check_order(order, "lower")
    if not isinstance(comm, str) or comm not in COMM_MODES:
        raise UsageError(f"unknown comm stream mode {_cell(comm)}; choose from {', '.join(COMM_MODES)}")
    if not isinstance(p2p, str) or p2p not in P2P_MODES:
        raise UsageError(f"unknown p2p mode {_cell(p2p)}; choose from {', '.join(P2P_MODES)}")
    if not isinstance(progress, str) or progress not in PROGRESS_MODES:
        raise UsageError(f"unknown progress mode {_cell(progress)}; choose from {', '.join(PROGRESS_MODES)}")
    apiguard.text(name, "lower", "name", empty=False)
    apiguard.text(source, "lower", "source")
    apiguard.text(description, "lower", "description")
    apiguard.flag(eval_mode, "lower", "eval_mode")
    pl = placement if isinstance(placement, Placement) else infer_placement(order, placement, source)
    n_stages, n_mb = order_sizes(order, source)
    unplaced = sorted({leaf.stage for _, _, leaf, _ in _leaves(order)} - set(pl.stage_to_rank))
    if unplaced or any(r not in order for r in pl.stage_to_rank.values()):
        raise UsageError(f"lower(): the placement does not map every stage to a rank of the order"
                         f" (stage {unplaced[0] if unplaced else '?'})")
    if is_compute_only(order, pl):
        raise ScheduleError(
            "this is a compute-only order (no SEND/RECV actions, but data crosses ranks): torch lowers it"
            " before running it", source,
            "install syncproof[torch] to lower it with torch's own pass, or dump the lowered list with"
            " schedule._dump_csv(path, 'compute_comms')")
    work = forward_only(order) if eval_mode else order
    low = _Lowerer(work, pl, n_stages, n_mb, comm, source)
    # Hundreds of thousands of small objects and no cycles among them: the
    # cyclic collector would only rescan them (it more than doubles the time).
    with gc_paused():
        per_rank = low.ranks()
        ops: list[Op] = []
        for rank, items in per_rank.items():
            for index, o in enumerate(items):
                ops.append(Op(id=len(ops), rank=rank, index=index, stream=o.stream, kind=o.kind, name=o.name,
                              peer=o.peer, event=o.event, reads=o.reads, writes=o.writes, comm=o.comm))
        mode = "eval (forward only)" if eval_mode else "as listed"
        sched = Schedule(
            name=name,
            ranks=tuple(sorted(order)),
            groups=(),
            buffers=low.buffers,
            ops=tuple(ops),
            init=(InitValue(Region("param", (("stage", Interval(0, n_stages)),)), "sharded"),),
            p2p=p2p,
            progress=progress,
            description=description or (
                f"torch.distributed.pipelining actions from {source}, {mode}: {len(order)} ranks, {n_stages}"
                f" stages ({pl.style} placement), {n_mb} microbatches; p2p on "
                f"{'one communicator and stream' if comm == 'single' else 'one communicator and stream per peer'},"
                f" p2p {p2p}" + ("" if progress == "any" else f", progress {progress}")),
            source=source,
        )
        validate(sched)
    return Imported(sched, order, pl, n_stages, n_mb, comm, tuple(low.notes))


def check_order(order: object, func: str) -> None:
    """An :data:`Order` given to the Python API: a mapping from rank (int) to
    a list of :class:`Action` or None; anything else is a UsageError."""
    if not isinstance(order, Mapping):
        raise apiguard.fail(func, "order", "a mapping of rank to a list of Action (or None)", order)
    for rank, acts in order.items():
        if isinstance(rank, bool) or not isinstance(rank, int) or not isinstance(acts, list) \
                or not all(a is None or isinstance(a, Action) for a in acts):
            raise apiguard.fail(func, "order", "a mapping of rank (int) to a list of Action (or None)",
                                {rank: acts})


def import_file(path: str | Path, *, placement: str = "auto", lower_with_torch: bool = True,
                **kw: Any) -> Imported:
    """Read a CSV or JSON action list and lower it (see :func:`lower`).

    A compute-only order is lowered with torch's own passes when torch is
    installed and ``lower_with_torch`` is true."""
    path = apiguard.path(path, "import_file")
    apiguard.choice(placement, PLACEMENTS, "import_file", "placement")
    apiguard.flag(lower_with_torch, "import_file", "lower_with_torch")
    f = read_order(path)
    style = placement if placement != "auto" else (f.placement or "auto")
    pl = infer_placement(f.order, style, str(path))
    order = f.order
    kw.setdefault("name", f.name or Path(path).stem)
    kw.setdefault("source", str(path))
    notes: tuple[str, ...] = ()
    if is_compute_only(order, pl) and lower_with_torch:
        from .torch_bridge import lower_compute_only

        order = lower_compute_only(order, pl, f.n_microbatches, source=str(path))
        notes = ("a compute-only order: lowered with torch's own passes (as _PipelineScheduleRuntime does)",)
    imp = lower(order, placement=pl, **kw)
    return replace(imp, notes=notes + imp.notes)
