"""The optional torch side of the torch-pp importer (``pip install syncproof[torch]``).

Everything that touches torch lives here and imports it lazily, so that the
importer proper (:mod:`.torch_pp`) and the CLI work without torch.  Torch
objects are typed ``Any``.

* :func:`import_schedule` checks a torch schedule object directly;
* :func:`lower_compute_only` lowers a compute-only ``pipeline_order`` with
  torch's own passes (the ones ``_PipelineScheduleRuntime`` runs);
* :func:`build_schedule` builds any of torch's schedule classes without a
  process group (stand-in stages that carry only the attributes the
  schedule constructors read);
* :func:`torch_checks` runs torch's own validators on an action list, for
  comparing verdicts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
from typing import Any

from .. import apiguard
from ..errors import ScheduleError, UsageError
from .torch_pp import (
    COMPUTE_KINDS,
    MAX_MICROBATCHES,
    OVERLAP,
    Action,
    Imported,
    Order,
    Placement,
    check_order,
    infer_placement,
    lower,
    order_sizes,
    parse_action,
)

# Schedule classes of torch 2.13, by the names get_schedule_class accepts.
SCHEDULE_CLASSES = ("GPipe", "1F1B", "Interleaved1F1B", "LoopedBFS", "InterleavedZeroBubble",
                    "ZBVZeroBubble", "DualPipeV")
V_SCHEDULES = ("ZBVZeroBubble", "DualPipeV")
SINGLE_STAGE = ("GPipe", "1F1B")


def _schedules_module() -> Any:
    try:
        return importlib.import_module("torch.distributed.pipelining.schedules")
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] != "torch":
            raise
        raise UsageError("this needs torch (pip install 'syncproof[torch]'); the torch-pp importer itself"
                         " reads lowered action lists without it") from None


def torch_available() -> bool:
    try:
        _schedules_module()
    except UsageError:
        return False
    return True


# ----------------------------------------------------------- conversions
def order_from_torch(actions: Any) -> Order:
    """rank -> list of torch ``_Action`` (or None) to our action lists,
    through torch's own string form."""
    out: Order = {}
    for rank in sorted(actions):
        row: list[Action | None] = []
        for step, a in enumerate(actions[rank]):
            row.append(None if a is None else parse_action(str(a), f"rank {rank}, step {step}"))
        out[int(rank)] = row
    return out


def order_to_torch(order: Order) -> dict[int, list[Any]]:
    mod = _schedules_module()
    return {rank: [None if a is None else mod._Action.from_str(str(a)) for a in acts]
            for rank, acts in order.items()}


# -------------------------------------------------------------- lowering
def lower_compute_only(order: Order, placement: Placement | str = "auto", n_microbatches: int | None = None,
                       *, defer_recv: bool = False, source: str = "") -> Order:
    """Lower a compute-only order exactly as ``_PipelineScheduleRuntime``
    does: validate, add UNSHARD/RESHARD, add REDUCE_GRAD, add SEND/RECV
    (and, with ``defer_recv``, move recvs late as ``defer_pp_recv=True`` does).

    REDUCE_GRAD entries already in the order (the single-stage classes put
    them in their ``pipeline_order``) are dropped first: torch's lowering
    accepts compute actions only and adds them back itself.

    An order torch's passes refuse (or fail on: they assert, index and look
    up as they go) is a ScheduleError naming ``source``."""
    check_order(order, "lower_compute_only")
    apiguard.optional_integer(n_microbatches, "lower_compute_only", "n_microbatches", 1, MAX_MICROBATCHES)
    mod = _schedules_module()
    pl = placement if isinstance(placement, Placement) else infer_placement(order, placement, source or "<torch-pp>")
    n_stages, seen_mb = order_sizes(order, source)
    n_mb = n_microbatches or seen_mb
    stripped: Order = {r: [a for a in acts if a is None or a.kind != "REDUCE_GRAD"] for r, acts in order.items()}
    actions = order_to_torch(stripped)
    try:
        mod._validate_schedule(actions, len(order), n_stages, n_mb)
        lowered: dict[int, Any] = {}
        for rank in actions:
            with_fsdp = mod._add_unshard_reshard(actions[rank])
            lowered[rank] = mod._add_reduce_grad(with_fsdp, n_mb)
        stage_to_rank = pl.stage_to_rank
        lowered = mod._add_send_recv(lowered, stage_to_rank=lambda s: stage_to_rank[s], num_stages=n_stages)
        if defer_recv:
            lowered = mod._defer_recv_ops(lowered, stage_to_rank=lambda s: stage_to_rank[s])
    except (AssertionError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ScheduleError(f"torch's lowering pass rejects this compute-only order: {first[:300]}", source) from None
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        # torch's passes assume a well-formed order and fail on some others
        # with a lookup error: that is still the order being refused.
        raise ScheduleError(f"torch's lowering pass fails on this compute-only order ({type(exc).__name__}:"
                            f" {str(exc)[:200]}); torch's runtime could not run it either", source) from None
    return order_from_torch(lowered)


# ------------------------------------------------------ schedule objects
def _stub_stage_class() -> Any:
    stage_mod = importlib.import_module("torch.distributed.pipelining.stage")

    class _StubStage(stage_mod._PipelineStageBase):  # type: ignore[misc, name-defined]
        """Carries what the schedule constructors read; runs nothing."""

        def __init__(self, stage_index: int, num_stages: int, group_size: int, group_rank: int) -> None:
            # No super().__init__: that asks torch.distributed for the rank.
            self.submod = None
            self.stage_index = stage_index
            self.num_stages = num_stages
            self.group_size = group_size
            self.group_rank = group_rank
            self.group = None
            self.stage_index_to_group_rank: dict[int, int] = {}

        def _create_grad_recv_info(self, *args: Any, **kwargs: Any) -> Any:
            return None

        def _prepare_forward_infra(self, *args: Any, **kwargs: Any) -> Any:
            return None

        def _prepare_backward_infra(self, *args: Any, **kwargs: Any) -> Any:
            return None

    return _StubStage


def build_schedule(name: str, n_ranks: int, n_microbatches: int, *, stages_per_rank: int | None = None,
                   rank: int = 0, **kwargs: Any) -> Any:
    """A torch schedule object of class ``name`` (e.g. ``"Interleaved1F1B"``)
    for ``n_ranks`` pipeline ranks, built without a process group.  Every
    rank computes the whole ``pipeline_order``, so ``rank`` hardly matters."""
    mod = _schedules_module()
    cls = mod.get_schedule_class(name)
    stub = _stub_stage_class()
    if issubclass(cls, mod.PipelineScheduleSingle):
        return cls(stub(rank, n_ranks, n_ranks, rank), n_microbatches, **kwargs)
    per = stages_per_rank or 2
    n_stages = per * n_ranks
    stages = [stub(rank + i * n_ranks, n_stages, n_ranks, rank) for i in range(per)]
    return cls(stages, n_microbatches, **kwargs)


def runtime_order_1f1b(n_ranks: int, n_microbatches: int) -> Order:
    """The compute order ``Schedule1F1B._step_microbatches`` runs on each
    rank (one stage per rank): ``min(M, P - r)`` warm-up forwards, then one
    backward and one forward in turn, then the remaining backwards.

    torch 2.13's ``Schedule1F1B.pipeline_order`` agrees with it except on
    the last rank, where it starts at ``F1`` and ends with ``F<M>`` (a
    microbatch that does not exist); torch's own ``_validate_schedule``
    rejects that order."""
    out: Order = {}
    for r in range(n_ranks):
        warm = min(n_microbatches, n_ranks - r)
        row: list[Action | None] = [Action(r, "F", i) for i in range(warm)]
        f, b = warm, 0
        while b < n_microbatches:
            row.append(Action(r, "B", b))
            b += 1
            if f < n_microbatches:
                row.append(Action(r, "F", f))
                f += 1
        out[r] = row
    return out


def schedule_actions(schedule: Any) -> tuple[Order, Placement, int, tuple[str, ...]]:
    """The lowered action lists of a torch schedule object, its placement,
    microbatch count and notes.  Runtime schedules carry their lowered lists
    (``pipeline_order_with_comms``); single-stage schedules (GPipe, 1F1B)
    have only a compute-only order, lowered here with torch's own passes, as
    ``_PipelineScheduleRuntime`` would run it."""
    mod = _schedules_module()
    n_mb = int(schedule._n_microbatches)
    lowered = getattr(schedule, "pipeline_order_with_comms", None)
    if lowered:
        order = order_from_torch(lowered)
        mapping = {int(s): int(r) for s, r in schedule.stage_index_to_group_rank.items()}
        pl = infer_placement(order, "auto")
        if pl.stage_to_rank != mapping:
            raise ScheduleError("the schedule's actions disagree with its stage_index_to_group_rank")
        return order, pl, n_mb, ()
    compute = getattr(schedule, "pipeline_order", None)
    if not compute:
        raise UsageError(f"{type(schedule).__name__} has no action list (pipeline_order) to import")
    order = order_from_torch(compute)
    notes: tuple[str, ...] = ()
    if isinstance(schedule, mod.Schedule1F1B):
        try:
            mod._validate_schedule(order_to_torch({r: [a for a in acts if a is None or a.kind != "REDUCE_GRAD"]
                                                   for r, acts in order.items()}),
                                   len(order), order_sizes(order)[0], n_mb)
        except AssertionError as exc:
            first = str(exc).strip().splitlines()[0]
            order = runtime_order_1f1b(len(order), n_mb)
            notes = (f"torch's Schedule1F1B.pipeline_order is malformed ({first}); checked the order its"
                     " runtime (_step_microbatches) executes instead",)
    pl = infer_placement(order, "auto")
    return lower_compute_only(order, pl, n_mb), pl, n_mb, notes


def import_schedule(schedule: Any, **kwargs: Any) -> Imported:
    """Lower a torch schedule object to a syncproof schedule (keyword
    arguments as for :func:`syncproof.importers.torch_pp.lower`)."""
    order, pl, _, notes = schedule_actions(schedule)
    kwargs.setdefault("name", type(schedule).__name__)
    kwargs.setdefault("source", f"<{type(schedule).__name__}>")
    imp = lower(order, placement=pl, **kwargs)
    return dataclasses.replace(imp, notes=notes + imp.notes)


# ---------------------------------------------------- torch's validators
def simulator_view(order: Order) -> Order:
    """The order as torch's ``_simulate_comms_compute`` can read it: it knows
    no UNSHARD/RESHARD/REDUCE_GRAD/OVERLAP_F_B (although torch's lowering
    emits them), so those are dropped and overlaps are split into their parts."""
    out: Order = {}
    for rank, acts in order.items():
        row: list[Action | None] = []
        for a in acts:
            if a is None:
                continue
            if a.kind == OVERLAP:
                row.extend(a.subs)
            elif a.kind in COMPUTE_KINDS or a.kind.startswith(("SEND_", "RECV_")):
                row.append(a)
        out[rank] = row
    return out


def torch_checks(order: Order, placement: Placement | None = None,
                 n_microbatches: int | None = None) -> dict[str, str | None]:
    """Torch's verdicts on an action list: for ``validate``
    (``_validate_schedule``) and ``simulate`` (``_simulate_comms_compute`` on
    :func:`simulator_view`), ``None`` when it accepts, else its message."""
    mod = _schedules_module()
    pl = placement or infer_placement(order)
    n_stages, seen = order_sizes(order)
    n_mb = n_microbatches or seen
    out: dict[str, str | None] = {}
    try:
        mod._validate_schedule(order_to_torch(order), len(order), n_stages, n_mb)
        out["validate"] = None
    except (AssertionError, ValueError, RuntimeError) as exc:
        out["validate"] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    mapping = pl.stage_to_rank
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its grid on failure
            mod._simulate_comms_compute(order_to_torch(simulator_view(order)), lambda s: mapping[s], n_stages)
        out["simulate"] = None
    except (AssertionError, ValueError, RuntimeError) as exc:
        out["simulate"] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    except IndexError as exc:
        # It found a stall but failed while printing its grid (seen with torch 2.13).
        out["simulate"] = f"stalled (its report crashed: IndexError: {exc})"
    return out
