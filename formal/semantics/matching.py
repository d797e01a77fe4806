"""Structural matching: p2p FIFO pairs, collective instances, event links.

The n-th send from a to b on a communicator (in a's issue order) matches the
n-th recv at b from a on that communicator (NCCL's FIFO per communicator and
peer; a channel is its own communicator, not a tag).  The k-th collective a rank issues on a
group matches the k-th of every other member.  A wait links to the record
of its event on its rank.  Whatever does not match is a ``matching``
problem, with the rank that caused it named, not the rank that noticed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from ..ir import Kind, Op, Schedule
from .memo import shared


@dataclass(frozen=True)
class Instance:
    """One collective instance: the k-th collective on ``group``."""

    group: str
    k: int
    ops: tuple[int, ...]  # one op id per member, in member order


@dataclass(frozen=True)
class Problem:
    """A matching failure: the run hangs at ``stuck`` (ops that never finish)."""

    sentence: str
    culprits: tuple[int, ...]  # ranks at fault
    stuck: tuple[int, ...]  # op ids that can never complete
    culprit_ops: tuple[int, ...]  # the ops to show in red
    candidates: tuple[int, ...] = ()  # ranks that might be at fault when undecidable


@dataclass(frozen=True)
class Matching:
    pairs: tuple[tuple[int, int], ...]  # (send, recv)
    instances: tuple[Instance, ...]
    events: tuple[tuple[int, int], ...]  # (record, wait), record issued before wait
    noop_waits: tuple[int, ...]  # waits issued before their record: no-ops in CUDA
    problems: tuple[Problem, ...]
    signals: tuple[tuple[int, int], ...] = ()  # (put, wait_signal)


def _sig(op: Op) -> tuple[object, ...]:
    # ``_value_`` is the member's plain attribute: ``.value`` is a descriptor call in Python 3.11
    if op.counts is None:
        return (op.kind._value_, op.size, op.root, op.dtype)
    if op.kind is Kind.ALL_TO_ALL:  # send sizes differ per member; their agreement is checked apart
        return (op.kind._value_, op.size, op.root, op.dtype)
    return (op.kind._value_, op.size, op.root, op.dtype, op.counts)


def _sig_text(op: Op) -> str:
    extra = []
    if op.size is not None:
        extra.append(f"size {op.size}")
    if op.dtype is not None:
        extra.append(op.dtype)
    if op.root is not None:
        extra.append(f"root {op.root}")
    if op.counts is not None and op.kind is not Kind.ALL_TO_ALL:
        extra.append(f"counts {list(op.counts)}")
    return op.kind.value + (f" ({', '.join(extra)})" if extra else "")


def _all_to_all_problems(s: Schedule, inst: Instance, members: tuple[int, ...]) -> list[Problem]:
    """all_to_allv: what member i sends to j (its ``counts[j]``) must be what
    j expects from i (its ``recv_counts[i]``), where both are given."""
    ops = [s.ops[o] for o in inst.ops]
    out: list[Problem] = []
    for i, a in enumerate(ops):
        for j, b in enumerate(ops):
            if a.counts is None or b.recv_counts is None or a.counts[j] == b.recv_counts[i]:
                continue
            out.append(Problem(
                f"{s.label(a)} sends {a.counts[j]} elements to rank {members[j]}, but {s.label(b)} expects"
                f" {b.recv_counts[i]} from rank {members[i]}: the split sizes of all_to_all#{inst.k}"
                f"({inst.group}) disagree, so the run hangs or corrupts there",
                (), tuple(inst.ops), (a.id, b.id), candidates=(members[i], members[j])))
            return out
    return out


def _describe(s: Schedule, rank: int, seq: list[Op], ref: list[Op]) -> tuple[str, int | None]:
    """How ``seq`` (rank's collectives on a group) departs from the reference
    program ``ref``; returns a phrase and the culprit op id (if any)."""
    sig = [_sig(o) for o in seq]
    rsig = [_sig(o) for o in ref]
    d = 0
    while d < min(len(sig), len(rsig)) and sig[d] == rsig[d]:
        d += 1
    if d == len(sig) and d == len(rsig):
        return "matches", None
    if sig[d:] == rsig[d + 1 :]:
        return f"skips {_sig_text(ref[d])} #{d} that the other members issue", None
    if sig[d + 1 :] == rsig[d:]:
        return f"issues an extra {_sig_text(seq[d])} as #{d}", seq[d].id
    if d + 1 < min(len(sig), len(rsig)) and sig[d] == rsig[d + 1] and sig[d + 1] == rsig[d]:
        return (f"issues {_sig_text(seq[d])} and {_sig_text(seq[d + 1])} in the opposite order"
                f" to the other members"), seq[d].id
    if d < len(sig) and d < len(rsig):
        return f"issues {_sig_text(seq[d])} as #{d} where the others issue {_sig_text(ref[d])}", seq[d].id
    return f"issues {len(sig)} collectives where the others issue {len(rsig)}", None


def _collective_problems(s: Schedule, seqs: dict[str, dict[int, list[Op]]],
                         clean: frozenset[str] = frozenset()) -> list[Problem]:
    """Mismatched collectives, per group; the groups in ``clean`` are known
    to match (every member issues the same sequence)."""
    problems = []
    for g, members in s.groups:
        if g in clean:
            continue
        per = {m: seqs[g].get(m, []) for m in members}
        lens = {m: len(v) for m, v in per.items()}
        kmax = max(lens.values(), default=0)
        first_bad = None
        for k in range(kmax):
            present = [m for m in members if lens[m] > k]
            if len(present) != len(members) or len({_sig(per[m][k]) for m in members}) > 1:
                first_bad = k
                break
        if first_bad is None:
            continue
        k = first_bad
        # The reference program: the sequence most members issue.
        progs = Counter(tuple(_sig(o) for o in per[m]) for m in members)
        (best, nbest), *rest = progs.most_common()
        unique_majority = nbest > len(members) / 2 or (nbest >= 2 and (not rest or rest[0][1] < nbest))
        stuck = tuple(per[m][k].id for m in members if lens[m] > k)
        if unique_majority:
            ref_rank = next(m for m in members if tuple(_sig(o) for o in per[m]) == best)
            ref = per[ref_rank]
            culprits = [m for m in members if tuple(_sig(o) for o in per[m]) != best]
            phrases = []
            cops: list[int] = []
            for m in culprits:
                phrase, cop = _describe(s, m, per[m], ref)
                phrases.append(f"rank {m} {phrase}")
                if cop is not None:
                    cops.append(cop)
            waiting = [m for m in members if m not in culprits and lens[m] > k]
            where = (f"{per[waiting[0]][k].kind}#{k}({g})" if waiting else f"collective #{k} on {g}")
            if waiting:
                who = (f"rank{'s' if len(waiting) != 1 else ''} {', '.join(map(str, waiting))}"
                       f" wait{'s' if len(waiting) == 1 else ''} for rank"
                       f"{'s' if len(culprits) != 1 else ''} {', '.join(map(str, culprits))}")
            else:  # only the culprits reach #k: they wait for members that never issue it
                late = [m for m in culprits if lens[m] > k] or culprits
                others = [m for m in members if m not in late]
                who = (f"rank{'s' if len(late) != 1 else ''} {', '.join(map(str, late))}"
                       f" wait{'s' if len(late) == 1 else ''} for rank{'s' if len(others) != 1 else ''}"
                       f" {', '.join(map(str, others))}, which never issue{'s' if len(others) == 1 else ''} it")
            sentence = f"{'; '.join(phrases)}: the run hangs at {where}, where {who}"
            problems.append(Problem(sentence, tuple(culprits), stuck, tuple(cops) or stuck))
            continue
        # No majority (e.g. two members): a rank that issues fewer is the one missing.
        short = [m for m in members if lens[m] <= k]
        if short:
            long_ = [m for m in members if lens[m] > k]
            sentence = (f"rank{'s' if len(short) > 1 else ''} {', '.join(map(str, short))} never"
                        f" issue{'s' if len(short) == 1 else ''} collective #{k} on group {g!r}"
                        f" ({', '.join(s.label(per[m][k]) for m in long_)} waits): the run hangs there")
            problems.append(Problem(sentence, tuple(short), stuck, stuck))
        else:
            descr = ", ".join(f"rank {m} issues {_sig_text(per[m][k])}" for m in members)
            sentence = (f"collective #{k} on group {g!r} does not match ({descr}); the data cannot"
                        f" tell which rank is wrong: the run hangs or corrupts there")
            problems.append(Problem(sentence, (), stuck, stuck, candidates=tuple(members)))
    return problems


# Enum members looked up once: ``Kind.SEND`` costs a descriptor call per use
# in Python 3.11, which a million-op loop notices.
_SEND, _RECV, _RECORD, _WAIT = Kind.SEND, Kind.RECV, Kind.RECORD, Kind.WAIT
_PUT, _WAIT_SIGNAL, _SYNC, _COMPUTE = Kind.PUT, Kind.WAIT_SIGNAL, Kind.SYNC, Kind.COMPUTE
_COLLECTIVES = frozenset(k for k in Kind if k.is_collective)


@shared
def match(s: Schedule) -> Matching:
    """FIFO per (communicator, src, dst); collectives per group in issue order;
    a wait_signal binds to the n-th put with its signal from its source."""
    sends: dict[tuple[int, int, str], list[Op]] = defaultdict(list)
    recvs: dict[tuple[int, int, str], list[Op]] = defaultdict(list)
    colls: dict[str, dict[int, list[Op]]] = defaultdict(lambda: defaultdict(list))
    puts: dict[tuple[int, int, str | None], list[Op]] = defaultdict(list)
    wsigs: dict[tuple[int, int, str | None], list[Op]] = defaultdict(list)
    events: list[tuple[int, int]] = []
    noop: list[int] = []
    compute, collectives, wait, sync, record = _COMPUTE, _COLLECTIVES, _WAIT, _SYNC, _RECORD
    in_order = True  # are the ranks' ops, rank after rank, the schedule's ops in id order?
    next_id = 0
    for r in s.ranks:  # rank by rank, each in issue order
        ops = s.by_rank[r]
        if ops and (ops[0].id != next_id or ops[-1].id != next_id + len(ops) - 1):
            in_order = False
        next_id += len(ops)
        latest: dict[str, Op] = {}  # event -> its latest record so far on this rank
        mine: dict[str, list[Op]] = {}  # group -> this rank's collectives on it
        for op in ops:
            kind = op.kind
            if kind is compute:
                continue
            if kind is wait or (kind is sync and op.event is not None):  # event.synchronize(): the same binding
                # CUDA: a wait uses the event's state at the time of the call: the latest record before it
                rec = latest.get(op.event or "")
                if rec is not None:
                    events.append((rec.id, op.id))
                else:  # no record issued before it: CUDA does nothing
                    noop.append(op.id)
            elif kind is record:
                assert op.event is not None
                latest[op.event] = op
            elif kind in collectives:
                assert op.group is not None
                got = mine.get(op.group)
                if got is None:
                    mine[op.group] = [op]
                else:
                    got.append(op)
            elif kind is _SEND:
                assert op.peer is not None
                sends[(r, op.peer, op.communicator or "")].append(op)
            elif kind is _RECV:
                assert op.peer is not None
                recvs[(op.peer, r, op.communicator or "")].append(op)
            elif kind is _PUT:
                assert op.peer is not None
                puts[(r, op.peer, op.signal)].append(op)
            elif kind is _WAIT_SIGNAL:
                assert op.peer is not None
                wsigs[(op.peer, r, op.signal)].append(op)
        for g, lst in mine.items():
            colls[g][r] = lst
    if not in_order:  # the links in the order of the waits, as a pass over the ops in id order gives them
        events.sort(key=lambda e: e[1])
        noop.sort()

    pairs: list[tuple[int, int]] = []
    problems: list[Problem] = []
    for key in sorted(set(sends) | set(recvs)):
        src, dst, comm = key
        ss, rr = sends.get(key, []), recvs.get(key, [])
        for a, b in zip(ss, rr, strict=False):
            pairs.append((a.id, b.id))
        first = (ss or rr)[0]
        chan = (f" on communicator {comm!r}" if first.comm is not None
                else f" on channel {first.channel!r}" if first.channel != "0" else "")
        for n, (a, b) in enumerate(zip(ss, rr, strict=False)):
            if a.size is not None and b.size is not None and a.size != b.size:
                problems.append(Problem(
                    f"send #{n} from rank {src} to rank {dst}{chan} has size {a.size} but the"
                    f" matching recv expects {b.size}", (), (a.id, b.id), (a.id, b.id),
                    candidates=(src, dst)))
        if len(ss) > len(rr):
            extra = ss[len(rr)]
            problems.append(Problem(
                f"rank {dst} never posts recv #{len(rr)} from rank {src}{chan}: "
                f"{s.label(extra)} has no partner and the run hangs there",
                (dst,), tuple(o.id for o in ss[len(rr):]), (extra.id,)))
        elif len(rr) > len(ss):
            extra = rr[len(ss)]
            problems.append(Problem(
                f"rank {src} never posts send #{len(ss)} to rank {dst}{chan}: "
                f"{s.label(extra)} has no partner and the run hangs there",
                (src,), tuple(o.id for o in rr[len(ss):]), (extra.id,)))

    instances: list[Instance] = []
    clean: set[str] = set()
    new_instance = object.__new__
    for g, members in s.groups:
        per = colls[g]
        seqs = [per[m] for m in members]
        depth = min(map(len, seqs))  # every member issued its k-th collective on g, for k below this
        # the k-th collective of each member, k by k: their signatures must agree
        sigs = [list(map(_sig, seq[:depth])) for seq in seqs]
        k = 0
        for k_sigs, k_ops in zip(zip(*sigs, strict=True), zip(*seqs, strict=False), strict=False):
            first = k_sigs[0]
            if any(x != first for x in k_sigs):
                break
            inst = new_instance(Instance)  # Instance(g, k, ids), without the frozen __setattr__ per field
            f = inst.__dict__
            f["group"], f["k"], f["ops"] = g, k, tuple([o.id for o in k_ops])
            if k_ops[0].kind is Kind.ALL_TO_ALL:
                bad = _all_to_all_problems(s, inst, members)
                if bad:  # the instance never completes: it and what follows on the group stay unmatched
                    problems.extend(bad)
                    clean.add(g)  # reported here, not again by the sequence comparison below
                    k = -1
                    break
            instances.append(inst)
            k += 1
        if k < 0:
            continue
        if all(len(per[m]) == k for m in members):
            clean.add(g)
    problems.extend(_collective_problems(s, colls, frozenset(clean)))

    signals: list[tuple[int, int]] = []
    for skey in sorted(wsigs, key=str):
        src, dst, sig = skey
        pp, ww = puts.get(skey, []), wsigs[skey]
        signals.extend((a.id, b.id) for a, b in zip(pp, ww, strict=False))
        if len(ww) > len(pp):
            extra = ww[len(pp)]
            problems.append(Problem(
                f"{s.label(extra)} waits for put #{len(pp)} from rank {src} with signal {sig!r}, but rank {src}"
                f" issues only {len(pp)} such put{'s' if len(pp) != 1 else ''}: the run hangs there",
                (src,), tuple(o.id for o in ww[len(pp):]), (extra.id,)))

    return Matching(tuple(pairs), tuple(instances), tuple(events), tuple(noop), tuple(problems), tuple(signals))
