"""Version 2 of the compact form: the op documents of version 1 split into
typed columns, so that loading builds each region, access list, metadata and
op shape once from integers, and never parses region text.

An op is a *shape* (every field but its id, rank and index) and the shape's
number in the op column.  A shape's row is 13 int64 columns: its kind, the
string numbers of its stream, name, channel, group, event and dtype, its
peer, root and size, and the numbers of its reads and writes (access lists)
and of its metadata.  Access lists point into a region table; a region row
is its buffer's number and a ``lo, hi`` pair per axis of the buffer, in the
buffer's declared order.  Strings live once, in the header's string table.
Absent integers are :data:`NONE` (-2^63, outside every integer a schedule may
hold).  An op this layout does not cover (the kinds and fields of the host,
the allocator, one-sided and grouped communication, choices) is a shape of
kind :data:`EXT` whose JSON document is stored as in version 1 and read by
the JSON form's own code.  ``docs/format.md`` ("Compact form") has the
byte layout.

Everything read from a file is checked before use: table sizes against the
file's length, every number against the table it points into, every
interval, value and metadata field as the JSON form checks it.  A fault of
a table row is reported at the first op that uses it (file, rank, op and
field); the checks ``validate`` makes on whole ops run as for the JSON form.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..errors import ScheduleError
from .ops import HOST_STREAM, P2P_MODES_OP, Access, Kind, Meta, Op
from .rankcopy import EventColumns, LaterRecords, add_records, copy_rank
from .region import FULL_HI, FULL_LO, Interval, Region, shared_interval

if TYPE_CHECKING:
    import numpy as np

    from .schedule import Buffer, Schedule
    from .validate import PreChecked

#: An absent integer field.
NONE = -(2**63)
_LIMIT = FULL_HI  # the JSON form's INT_LIMIT: integers lie strictly inside (-2^62, 2^62)
#: The kinds a shape row covers, by their code; every other op is an EXT shape.
ROW_KINDS = (Kind.COMPUTE, Kind.SEND, Kind.RECV, Kind.RECORD, Kind.WAIT, Kind.ALL_REDUCE, Kind.ALL_GATHER,
             Kind.REDUCE_SCATTER, Kind.ALL_TO_ALL, Kind.BROADCAST, Kind.BARRIER)
_CODE = {k: i for i, k in enumerate(ROW_KINDS)}
#: The kind code of a shape stored as its JSON document (its second column: the document's number).
EXT = 255
SHAPE_COLUMNS = ("kind", "stream", "name", "channel", "group", "event", "dtype", "p2p", "peer", "root", "size",
                 "reads", "writes", "meta")
META_COLUMNS = ("phase", "step", "layer", "mb", "tokens_lo", "tokens_hi", "sp_index", "sp_count", "sample",
                "seqs_lo", "seqs_hi")
#: The sections after the header, in file order, each starting at a multiple of 8 bytes.
SECTIONS = (("reg_buf", "<u4"), ("reg_bounds", "<i8"), ("acc_off", "<u8"), ("acc_reg", "<u4"), ("acc_val", "<i8"),
            ("meta", "<i8"), ("seqs", "<i8"), ("shape", "<i8"), ("doc_off", "<u8"), ("docs", "u1"),
            ("column", "<u4"))
_ROW_ONLY_NONE = ("comm", "batch", "signal", "counts", "recv_counts", "completion", "target", "of", "buffer",
                  "reuses", "choice")
_COLLECTIVE_CODES = frozenset(_CODE[k] for k in ROW_KINDS if k.is_collective)


def _int_ok(v: Any) -> bool:
    return type(v) is int and -_LIMIT < v < _LIMIT


# ---------------------------------------------------------------- writing
class Encoder:
    """Builds the tables of one schedule's compact form (version 2)."""

    def __init__(self, s: Schedule) -> None:
        self.buffers = {b.name: (i, b) for i, b in enumerate(s.buffers)}
        self.strings: list[str] = []
        self._sid: dict[str, int] = {}
        self.reg_buf: list[int] = []
        self.reg_bounds: list[int] = []
        self._region: dict[Region, int] = {}
        self.acc_off: list[int] = [0]
        self.acc_reg: list[int] = []
        self.acc_val: list[int] = []
        self._acc: dict[tuple[tuple[int, int], ...], int] = {}
        self._acc_by_id: dict[int, int | None] = {}
        self.meta: list[int] = []
        self.seqs: list[int] = []
        self._meta: dict[Meta, int] = {}
        self._meta_by_id: dict[int, int | None] = {}
        self.shape: list[int] = []
        self.docs: list[bytes] = []
        self._shape: dict[tuple[Any, ...], int] = {}
        self.column: list[int] = []
        self.n_shapes = 0

    def sid(self, v: str | None) -> int:
        if v is None:
            return -1
        got = self._sid.get(v)
        if got is None:
            got = self._sid[v] = len(self.strings)
            self.strings.append(v)
        return got

    def region(self, r: Region) -> int | None:
        got = self._region.get(r)
        if got is not None:
            return got
        entry = self.buffers.get(r.buffer)
        if entry is None or tuple(a for a, _ in r.box) != tuple(a for a, _ in entry[1].axes):
            return None  # not in the normal form the loader builds: the op goes as its JSON document
        bounds: list[int] = []
        for _, iv in r.box:
            if not (iv.lo == FULL_LO and iv.hi == FULL_HI) and not (FULL_LO < iv.lo < iv.hi < FULL_HI):
                return None
            bounds += (iv.lo, iv.hi)
        got = self._region[r] = len(self.reg_buf)
        self.reg_buf.append(entry[0])
        self.reg_bounds += bounds
        return got

    def accesses(self, accs: tuple[Access, ...]) -> int | None:
        if id(accs) in self._acc_by_id:
            return self._acc_by_id[id(accs)]
        items: list[tuple[int, int]] = []
        got: int | None = None
        for a in accs:
            r = self.region(a.region)
            if r is None or not (a.value is None or type(a.value) is str):
                break
            items.append((r, self.sid(a.value)))
        else:
            key = tuple(items)
            got = self._acc.get(key)
            if got is None:
                got = self._acc[key] = len(self.acc_off) - 1
                for r, v in items:
                    self.acc_reg.append(r)
                    self.acc_val.append(v)
                self.acc_off.append(len(self.acc_reg))
        self._acc_by_id[id(accs)] = got
        return got

    def metadata(self, m: Meta) -> int | None:
        if id(m) in self._meta_by_id:
            return self._meta_by_id[id(m)]
        got = self._meta.get(m)
        if got is None:
            ints = [v for v in (m.step, m.layer, m.mb) if v is not None] + list(m.seqs) + list(m.sp or ()) \
                + ([m.tokens.lo, m.tokens.hi] if m.tokens is not None else [])
            if not all(_int_ok(v) for v in ints) or not (m.phase is None or type(m.phase) is str) \
                    or type(m.sample) is not bool:
                self._meta_by_id[id(m)] = None
                return None
            got = self._meta[m] = len(self.meta) // len(META_COLUMNS)
            lo = len(self.seqs)
            self.seqs += m.seqs
            opt = [NONE if v is None else v for v in (m.step, m.layer, m.mb)]
            tok = [m.tokens.lo, m.tokens.hi] if m.tokens is not None else [NONE, NONE]
            sp = list(m.sp) if m.sp is not None else [NONE, NONE]
            self.meta += [self.sid(m.phase), *opt, *tok, *sp, int(m.sample), lo, len(self.seqs)]
        self._meta_by_id[id(m)] = got
        return got

    def op(self, op: Op) -> None:
        from .fileformat import op_shape_key

        key = op_shape_key(op)
        got = self._shape.get(key)
        if got is None:
            got = self._shape[key] = self.n_shapes
            self.n_shapes += 1
            self.shape += self._row(op)
        self.column.append(got)

    def _row(self, op: Op) -> list[int]:
        from .fileformat import op_to_dict

        code = _CODE.get(op.kind)
        reads = self.accesses(op.reads) if code is not None else None
        writes = self.accesses(op.writes) if reads is not None else None
        meta = self.metadata(op.meta) if writes is not None else None
        strs = (op.stream, op.name, op.channel, op.group, op.event, op.dtype, op.p2p)
        if meta is None or code is None or any(getattr(op, k) is not None for k in _ROW_ONLY_NONE) \
                or (op.p2p is not None and not op.kind.is_p2p) \
                or not all(v is None or type(v) is str for v in strs) \
                or not all(v is None or _int_ok(v) for v in (op.peer, op.root, op.size)):
            self.docs.append(json.dumps(op_to_dict(op)).encode("utf-8"))
            return [EXT, len(self.docs) - 1] + [0] * (len(SHAPE_COLUMNS) - 2)
        assert reads is not None and writes is not None
        return [code, *(self.sid(v) for v in strs),
                *(NONE if v is None else v for v in (op.peer, op.root, op.size)), reads, writes, meta]

    def sections(self) -> dict[str, Any]:
        """Each section's content, as numpy arrays of its dtype."""
        import numpy as np

        doc_off = [0]
        for d in self.docs:
            doc_off.append(doc_off[-1] + len(d))
        content: dict[str, Any] = {
            "reg_buf": self.reg_buf, "reg_bounds": self.reg_bounds, "acc_off": self.acc_off,
            "acc_reg": self.acc_reg, "acc_val": self.acc_val, "meta": self.meta, "seqs": self.seqs,
            "shape": self.shape, "doc_off": doc_off, "column": self.column,
        }
        out = {name: np.asarray(content[name], dtype=dtype) for name, dtype in SECTIONS if name != "docs"}
        out["docs"] = np.frombuffer(b"".join(self.docs), dtype="u1")
        return out


# ---------------------------------------------------------------- reading
class ColumnOps(list[int]):
    """A rank's ops in a compact file of version 2: the shape number of each;
    ``tables`` builds the ops (:func:`syncproof.ir.fileformat._load_ops` hands them over)."""

    tables: Tables


class Tables:
    """The decoded tables of one compact file (version 2), checked for size
    and range; rows are checked and built when the buffers are known."""

    def __init__(self, where: str, strings: list[str], sec: dict[str, np.ndarray]) -> None:
        self.where = where
        self.strings = strings
        self.sec = sec

    def bad(self, what: str) -> ScheduleError:
        return ScheduleError(f"not a valid compact schedule file: {what}", self.where)

    # -- regions and access lists: a fault is a message, raised at the first op using the row
    def _regions(self, buffers: list[Buffer]) -> list[Region]:
        import numpy as np

        reg_buf, bounds_a = self.sec["reg_buf"], self.sec["reg_bounds"]
        if len(reg_buf) and int(reg_buf.max()) >= len(buffers):
            r = int(np.flatnonzero(reg_buf >= len(buffers))[0])
            raise self.bad(f"region {r} names buffer {int(reg_buf[r])}, but the schedule declares {len(buffers)}")
        naxes = np.asarray([len(b.axes) for b in buffers] or [0], dtype=np.int64)
        per = naxes[reg_buf.astype(np.int64)] * 2 if len(reg_buf) else np.zeros(0, dtype=np.int64)
        if int(per.sum()) != len(bounds_a):
            raise self.bad(f"the regions' buffers have {int(per.sum())} interval bounds, but the bounds section holds"
                           f" {len(bounds_a)}")
        lo, hi = bounds_a[0::2], bounds_a[1::2]
        fine = ((lo == FULL_LO) & (hi == FULL_HI)) | ((lo > FULL_LO) & (lo < hi) & (hi < FULL_HI))
        if not bool(fine.all()):
            pair = int(np.flatnonzero(~fine)[0])
            r = int(np.searchsorted(np.cumsum(per // 2), pair, side="right"))
            raise self.bad(f"region {r}: the interval {int(lo[pair])}:{int(hi[pair])} is empty or out of range")
        bounds = bounds_a.tolist()
        out: list[Region] = []
        new = object.__new__
        pos = 0
        for b in reg_buf.tolist():
            buf = buffers[b]
            box = []
            for a, _ in buf.axes:
                box.append((a, shared_interval(bounds[pos], bounds[pos + 1])))
                pos += 2
            region = new(Region)
            f = region.__dict__
            f["buffer"] = buf.name
            f["box"] = tuple(box)
            out.append(region)
        return out

    def _access_lists(self, regions: list[Region], region_fits: np.ndarray
                      ) -> list[tuple[tuple[Access, ...], str | None, str | None, bool, bool]]:
        """Per access list: the accesses, the fault as reads and as writes
        (None if none), and whether validate passes it as reads and as writes
        (``region_fits``: per region, whether it lies inside its buffer)."""
        import numpy as np

        from .shapescan import all_of_lists

        off_a, reg_a, val_a = self.sec["acc_off"], self.sec["acc_reg"], self.sec["acc_val"]
        n_acc = len(reg_a)
        if len(off_a) == 0 or int(off_a[0]) != 0 or int(off_a[-1]) != n_acc \
                or (len(off_a) > 1 and bool((off_a[1:] < off_a[:-1]).any())):
            raise self.bad("the access list offsets are not increasing from 0 to the number of accesses")
        if n_acc and int(reg_a.max()) >= len(regions):
            raise self.bad(f"an access names region {int(reg_a.max())}, but there are {len(regions)}")
        if n_acc and (int(val_a.min()) < -1 or int(val_a.max()) >= len(self.strings)):
            raise self.bad(f"an access names a string outside the table of {len(self.strings)}")
        # validate's region check, for every access at once (a region fits or not whatever list holds it)
        fits = all_of_lists(off_a.astype(np.int64), region_fits[reg_a.astype(np.int64)]).tolist() \
            if n_acc else [True] * (len(off_a) - 1)
        off, regs, vals, strings = off_a.tolist(), reg_a.tolist(), val_a.tolist(), self.strings
        one: dict[tuple[int, int], Access] = {}
        new = object.__new__
        out = []
        for j in range(len(off) - 1):
            accs: list[Access] = []
            for k in range(off[j], off[j + 1]):
                key = (regs[k], vals[k])
                acc = one.get(key)
                if acc is None:
                    acc = one[key] = new(Access)
                    f = acc.__dict__
                    f["region"] = regions[key[0]]
                    f["value"] = strings[key[1]] if key[1] >= 0 else None
                accs.append(acc)
            t = tuple(accs)
            as_reads, as_writes = _access_faults(t) if len(t) > 1 or (t and not t[0].value) else (None, None)
            # validate passes the list if its regions fit; as writes, also if none overlap, which
            # _access_faults reports (as_writes); the test compares this with accesses_are_fine
            fit = fits[j]
            out.append((t, as_reads, as_writes, as_reads is None and fit, as_writes is None and fit))
        return out

    def _metas(self) -> list[tuple[Meta, str | None, bool]]:
        from .validate import meta_is_fine

        rows_a, seqs_a = self.sec["meta"], self.sec["seqs"]
        width = len(META_COLUMNS)
        if len(rows_a) % width:
            raise self.bad(f"the metadata section holds {len(rows_a)} numbers, not a multiple of {width}")
        rows, seqs = rows_a.tolist(), seqs_a.tolist()
        out: list[tuple[Meta, str | None, bool]] = []
        none = Meta()
        for i in range(0, len(rows), width):
            row = rows[i:i + width]
            got = _meta_row(row, seqs, self.strings)
            if isinstance(got, str):
                out.append((none, f"metadata row {i // width}: {got}", False))
            else:
                out.append((got, None, meta_is_fine(got)))
        return out

    def build(self, ranked: list[tuple[int, Any]], buffers: dict[str, Buffer], src: str,
              groups: tuple[tuple[str, tuple[int, ...]], ...], ranks: list[int],
              version: int) -> tuple[list[Op], PreChecked | None]:
        """The ops of every rank, in order, as ``_load_ops`` gives them."""

        from .fileformat import _op, op_checker, op_template
        from .jsonread import _line_object, refuse_lone_surrogates
        from .schedule import op_features
        from .shapescan import region_fit_mask, screen_shapes

        buffer_list = list(buffers.values())
        regions = self._regions(buffer_list)
        accs = self._access_lists(regions, region_fit_mask(self.sec["reg_buf"], self.sec["reg_bounds"], buffer_list))
        metas = self._metas()
        shape_a = self.sec["shape"]
        width = len(SHAPE_COLUMNS)
        if len(shape_a) % width:
            raise self.bad(f"the shape section holds {len(shape_a)} numbers, not a multiple of {width}")
        rows = shape_a.tolist()
        group_map, rank_set = dict(groups), set(ranks)
        # the rows that surely pass _shape_fields, and validate's verdict on them, all at once
        ok_rows, fine_rows = (a.tolist() for a in screen_shapes(
            shape_a.reshape(-1, width), ROW_KINDS, self.strings, accs, metas, group_map, ranks))
        host_only = frozenset({"host"})
        no_features: frozenset[str] = frozenset()
        doc_off = self.sec["doc_off"].tolist()
        docs_blob = self.sec["docs"].tobytes()
        n_docs = len(doc_off) - 1
        if n_docs < 0 or doc_off[0] != 0 or doc_off[-1] != len(docs_blob) \
                or any(doc_off[i] > doc_off[i + 1] for i in range(n_docs)):
            raise self.bad("the document offsets are not increasing from 0 to the blob's length")
        n_str = len(self.strings)
        new = object.__new__
        # per shape: the fields of its ops, or a fault, or its JSON document
        Shape = tuple[dict[str, Any] | None, str | None, Any, bool, tuple[int, ...] | None, int | None,
                      Kind | None, frozenset[str]]
        shapes: list[Shape] = []
        for i in range(0, len(rows), width):
            row = rows[i:i + width]
            j = i // width
            if row[0] == EXT:
                k = row[1]
                d = _line_object(docs_blob[doc_off[k]:doc_off[k + 1]]) if 0 <= k < n_docs else None
                if d is None:
                    raise self.bad(f"shape {j} names document {k}, which is not one of the {n_docs} documents"
                                   " or not a JSON object (without duplicate keys)")
                refuse_lone_surrogates(docs_blob[doc_off[k]:doc_off[k + 1]], d, self.where)
                shapes.append((None, None, d, False, None, None, None, frozenset()))
                continue
            if ok_rows[j]:  # features: a row shape's ops show "host" or none (a p2p mode is never screened ok)
                fields, members, peer = shape_of_row(row, self.strings, accs, metas, group_map)
                shapes.append((fields, None, None, fine_rows[j], members, peer, fields["kind"],
                               host_only if fields["stream"] == HOST_STREAM else no_features))
                continue
            got = _shape_fields(row, self.strings, n_str, accs, metas, group_map, rank_set, version)
            if isinstance(got, str):
                shapes.append((None, f"{got}", None, False, None, None, None, frozenset()))
                continue
            fields, fine, members, peer = got
            probe = new(Op)
            probe.__dict__.update(fields, id=0, rank=0, index=0)
            shapes.append((fields, None, None, fine, members, peer, fields["kind"], op_features(probe)))
        column_len = len(shapes)
        ops: list[Op] = []
        append = ops.append
        recorded: dict[tuple[int, str], Op] = {}
        waits: list[Op] = []
        features: set[str] = set()
        record_keys: set[tuple[int, str]] = set()
        record, wait = Kind.RECORD, Kind.WAIT
        checked = True
        passes_check_op = op_checker(ranks, groups, buffers, src, recorded)

        # per shape, in parallel lists: the fields of its ops, and what the op loop must do beyond copying them
        check_rank, is_record, is_wait, slow = 1, 2, 4, 8
        fields_of: list[dict[str, Any] | None] = []
        flags: list[int] = []
        for shape in shapes:
            s_fields, s_members, s_peer, s_kind = shape[0], shape[4], shape[5], shape[6]
            fields_of.append(s_fields)
            flags.append(slow if s_fields is None else
                         (check_rank if s_members is not None or s_peer is not None else 0)
                         | (is_record if s_kind is record else is_wait if s_kind is wait else 0))
        used: set[int] = set()
        for _, lst in ranked:
            used.update(lst)
        if used and max(used) >= column_len:
            bad_rank = next(r for r, lst in ranked if lst and max(lst) >= column_len)
            raise self.bad(f"rank {bad_rank}: an op names shape {max(used)}, but there are {column_len}")
        for j in used:  # what does not depend on the rank, once per shape used
            if shapes[j][0] is not None:
                checked = checked and shapes[j][3]
                features |= shapes[j][7]
        slow_used = {j for j in used if flags[j] & slow}
        per_shape: EventColumns | None = None
        later_records: LaterRecords = []  # the records of the ranks read in bulk
        for rank, lst in ranked:
            base = len(ops)
            if slow_used and not slow_used.isdisjoint(lst):
                # a shape not yet built (a JSON document) or at fault: op by op, in issue order
                for index, j in enumerate(lst):
                    fl = flags[j]
                    if fl & slow:
                        fields, fault, d, *_ = shapes[j]
                        if fields is None:  # always, for a slow shape
                            if fault is not None:
                                raise ScheduleError(fault, f"{src}: rank {rank}, op {index}")
                            # a JSON document: built once by the JSON form's code, then copied as the JSON form does
                            op = _op(d, rank, index, base + index, buffers, src, version)
                            fine = passes_check_op(op)
                            checked = checked and fine
                            k = op.kind
                            feats = op_features(op)
                            features |= feats
                            if k is record:
                                rkey = (rank, op.event or "")
                                if rkey in record_keys:
                                    features.add("re-recorded")
                                record_keys.add(rkey)
                            elif k is wait:
                                waits.append(op)
                            tfields, members, peer = op_template(op, group_map)
                            shapes[j] = (tfields, None, None, fine, members, peer, k, feats)
                            fields_of[j] = tfields
                            flags[j] = (check_rank if members is not None or peer is not None else 0) \
                                | (is_record if k is record else is_wait if k is wait else 0)
                            append(op)
                            continue
                    op = new(Op)
                    f = op.__dict__
                    f.update(fields_of[j])
                    f["id"] = base + index
                    f["rank"] = rank
                    f["index"] = index
                    if fl:
                        if fl & check_rank:
                            members, peer = shapes[j][4], shapes[j][5]
                            if (members is not None and rank not in members) or peer == rank:
                                checked = False
                        if fl & is_record:
                            key: tuple[int, str] = (rank, op.event or "")
                            recorded.setdefault(key, op)
                            if key in record_keys:
                                features.add("re-recorded")
                            record_keys.add(key)
                        elif fl & is_wait:
                            waits.append(op)
                    append(op)
                slow_used = {j for j in slow_used if flags[j] & slow}
                per_shape = None
                continue
            # every shape of the rank is built: copy each op's fields, then do the rest in bulk (see rankcopy)
            copy_rank(ops, [fields_of[j] for j in lst], rank)  # type: ignore[misc]  # (no slow shape: all built)
            if per_shape is None:  # (again after a slow rank: it may have built shapes)
                per_shape = EventColumns(len(shapes))
                per_shape.add([(j, sh[6], sh[0], bool(fl & check_rank))
                               for j, (sh, fl) in enumerate(zip(shapes, flags, strict=True))])
            for j in per_shape.rank_facts(lst, rank, base, ops, features, later_records, waits):
                members, peer = shapes[j][4], shapes[j][5]
                if (members is not None and rank not in members) or peer == rank:
                    checked = False
        if waits:  # validate checks these against every rank's records (and names other ranks' in its hint)
            add_records(later_records, ops, recorded)
        return ops, ((recorded, waits, frozenset(features)) if checked else None)


def _access_faults(t: tuple[Access, ...]) -> tuple[str | None, str | None]:
    """What the JSON form says of an access map holding ``t``, as reads and as writes (None: nothing)."""
    reads: str | None = None
    writes: str | None = None
    for i, a in enumerate(t):
        if a.value == "":
            reads = writes = f"access {a.region}: value must be a non-empty string"
            break
        if a.value is None and writes is None:
            writes = f"writes {a.region}: a write must name the value it writes"
        for b in t[:i]:
            if b.region == a.region:
                return (f"region {a.region} is listed twice in reads",
                        f"region {a.region} is listed twice in writes")
            if b.region.overlaps(a.region):
                if writes is None:
                    writes = f"writes {b.region} and {a.region} overlap"
                if reads is None and b.value != a.value and None not in (a.value, b.value):
                    reads = f"reads {b.region} and {a.region} overlap but expect different values"
    return reads, writes


def _meta_row(row: list[int], seqs: list[int], strings: list[str]) -> Meta | str:
    """The metadata of one row, or what is wrong with it (as the JSON form would refuse it)."""
    phase_i, step, layer, mb, t_lo, t_hi, sp_i, sp_n, sample, s_lo, s_hi = row
    phase: str | None = None
    if phase_i != -1:
        if not 0 <= phase_i < len(strings) or not strings[phase_i]:
            return "phase must be a non-empty string"
        phase = strings[phase_i]
    for name, v in (("step", step), ("layer", layer), ("mb", mb)):
        if v != NONE and not -_LIMIT < v < _LIMIT:
            return f"{name} {v} is out of range"
    if layer != NONE and layer < 0:
        return f"layer {layer} is negative"
    if mb != NONE and mb < 0:
        return f"mb {mb} is negative"
    if step != NONE and phase != "decode":
        return "\"step\" is a decode step number, but the op is not in the decode phase"
    tokens: Interval | None = None
    if (t_lo == NONE) != (t_hi == NONE) or (t_lo != NONE and not -_LIMIT < t_lo < t_hi < _LIMIT):
        return f"tokens interval {t_lo}:{t_hi} is empty, reversed or out of range"
    if t_lo != NONE:
        tokens = Interval(t_lo, t_hi)
    sp: tuple[int, int] | None = None
    if (sp_i == NONE) != (sp_n == NONE) or (sp_i != NONE and not (0 <= sp_i < 10**9 and 0 <= sp_n < 10**9)):
        return "sp must be 'index/count' with non-negative numbers of at most 9 digits"
    if sp_i != NONE:
        sp = (sp_i, sp_n)
    if sample not in (0, 1):
        return f"sample must be 0 or 1, got {sample}"
    if not 0 <= s_lo <= s_hi <= len(seqs):
        return f"seqs {s_lo}:{s_hi} are not within the {len(seqs)} numbers of the seqs section"
    seq = tuple(seqs[s_lo:s_hi])
    if not all(-_LIMIT < v < _LIMIT for v in seq):
        return "a seqs entry is out of range"
    if phase is None and step == layer == mb == t_lo == sp_i == NONE and not sample and not seq:
        return Meta()
    return Meta(phase=phase, step=None if step == NONE else step, layer=None if layer == NONE else layer,
                mb=None if mb == NONE else mb, seqs=seq, tokens=tokens, sp=sp, sample=bool(sample))


def _shape_fields(row: list[int], strings: list[str], n_str: int,
                  accs: list[tuple[tuple[Access, ...], str | None, str | None, bool, bool]],
                  metas: list[tuple[Meta, str | None, bool]], group_map: dict[str, tuple[int, ...]],
                  rank_set: set[int], version: int
                  ) -> tuple[dict[str, Any], bool, tuple[int, ...] | None, int | None] | str:
    """The fields of a shape's ops; whether validate passes them on any rank
    (but for group membership and the peer, which depend on the rank: the
    members and the peer come back); or what is wrong, as the JSON form says."""
    code, stream_i, name_i, channel_i, group_i, event_i, dtype_i, p2p_i = row[:8]
    peer, root, size, reads_i, writes_i, meta_i = row[8:]
    if not 0 <= code < len(ROW_KINDS):
        return f"kind code {code} is unknown"
    kind = ROW_KINDS[code]
    for what, v in (("stream", stream_i), ("name", name_i), ("channel", channel_i), ("group", group_i),
                    ("event", event_i), ("dtype", dtype_i), ("p2p", p2p_i)):
        if not -1 <= v < n_str or (v == -1 and what in ("stream", "name", "channel")):
            return f"{what} names string {v}, outside the table of {n_str}"
    if not (0 <= reads_i < len(accs) and 0 <= writes_i < len(accs) and 0 <= meta_i < len(metas)):
        return "the op's reads, writes or metadata name a row that does not exist"
    stream, channel = strings[stream_i], strings[channel_i]
    group = strings[group_i] if group_i >= 0 else None
    event = strings[event_i] if event_i >= 0 else None
    dtype = strings[dtype_i] if dtype_i >= 0 else None
    p2p = strings[p2p_i] if p2p_i >= 0 else None
    if p2p is not None:
        if version < 2:
            return "field 'p2p' needs format version 2"
        if kind is not Kind.SEND and kind is not Kind.RECV:
            return f"a {kind} op has no p2p mode here"
        if p2p not in P2P_MODES_OP:
            return f"p2p on an op must be \"eager\" or \"rendezvous\", got {p2p!r}"
    if not stream:
        return "stream must be a non-empty string"
    is_p2p, is_coll = kind is Kind.SEND or kind is Kind.RECV, code in _COLLECTIVE_CODES
    # the fields each kind has (the JSON form's keys per kind)
    if (peer != NONE) != is_p2p:
        return f"a {kind} op {'needs' if is_p2p else 'has no'} peer"
    if not is_p2p and channel != "0":
        return f"a {kind} op has no channel"
    if is_p2p and not channel:
        return "channel must be a non-empty string"
    if (group is not None) != is_coll:
        return f"a {kind} op {'needs' if is_coll else 'has no'} group"
    if (root != NONE) != (kind is Kind.BROADCAST):
        return f"a {kind} op {'needs' if kind is Kind.BROADCAST else 'has no'} root"
    if (event is not None) != (kind is Kind.RECORD or kind is Kind.WAIT):
        return f"a {kind} op {'needs' if event is None else 'has no'} event"
    if event == "" or group == "" or dtype == "":
        return "event, group and dtype must be non-empty strings"
    if kind in (Kind.COMPUTE, Kind.RECORD, Kind.WAIT) and (size != NONE or dtype is not None):
        return f"a {kind} op has no size or dtype"
    for what, v in (("peer", peer), ("root", root), ("size", size)):
        if v != NONE and not -_LIMIT < v < _LIMIT:
            return f"{what} {v} is out of range"
    r_accs, r_fault, _, r_fine, _ = accs[reads_i]
    w_accs, _, w_fault, _, w_fine = accs[writes_i]
    if (kind is Kind.SEND and w_accs) or (kind is Kind.RECV and r_accs) \
            or (kind in (Kind.RECORD, Kind.WAIT, Kind.BARRIER) and (r_accs or w_accs)):
        return f"a {kind} op has no {'writes' if kind is Kind.SEND else 'reads' if kind is Kind.RECV else 'accesses'}"
    if r_fault is not None and r_accs:
        return r_fault
    if w_fault is not None and w_accs:
        return w_fault
    _, m_fault, m_fine = metas[meta_i]
    if m_fault is not None:
        return m_fault
    fine = r_fine and w_fine and m_fine and (size == NONE or size >= 0)
    if is_coll:
        assert group is not None
        got = group_map.get(group)
        fine = fine and got is not None and (kind is not Kind.BROADCAST or root in got)
    if is_p2p:
        fine = fine and peer in rank_set
    fields, members, peer_of = shape_of_row(row, strings, accs, metas, group_map)
    return fields, fine, members, peer_of


def shape_of_row(row: list[int], strings: list[str],
                 accs: list[tuple[tuple[Access, ...], str | None, str | None, bool, bool]],
                 metas: list[tuple[Meta, str | None, bool]], group_map: dict[str, tuple[int, ...]]
                 ) -> tuple[dict[str, Any], tuple[int, ...] | None, int | None]:
    """The fields of the ops of a checked row (one that passes ``_shape_fields``
    or the screen of :mod:`syncproof.ir.shapescan`), the group's members (a
    collective) and the peer (point to point)."""
    code, stream_i, name_i, channel_i, group_i, event_i, dtype_i, p2p_i, peer, root, size, reads_i, writes_i, \
        meta_i = row
    # only what differs from the class defaults (None, channel "0", no accesses): see Op and lean_fields
    fields: dict[str, Any] = {"id": 0, "rank": 0, "index": 0, "stream": strings[stream_i], "kind": ROW_KINDS[code],
                              "name": strings[name_i], "meta": metas[meta_i][0]}
    if peer != NONE:
        fields["peer"] = peer
    if root != NONE:
        fields["root"] = root
    if size != NONE:
        fields["size"] = size
    group = None
    if group_i >= 0:
        group = fields["group"] = strings[group_i]
    if event_i >= 0:
        fields["event"] = strings[event_i]
    if dtype_i >= 0:
        fields["dtype"] = strings[dtype_i]
    if p2p_i >= 0:
        fields["p2p"] = strings[p2p_i]
    channel = strings[channel_i]
    if channel != "0":
        fields["channel"] = channel
    reads = accs[reads_i][0]
    if reads:
        fields["reads"] = reads
    writes = accs[writes_i][0]
    if writes:
        fields["writes"] = writes
    members = (group_map.get(group or "") or ()) if code in _COLLECTIVE_CODES else None
    return fields, members, (None if peer == NONE else peer)
