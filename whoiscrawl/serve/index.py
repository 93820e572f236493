"""The map's interval index: most specific network of an address, its parents, the networks in a prefix.

Networks are kept in hierarchy order (first address, then the larger first), with a parent pointer
each. Nested networks are flattened into non-overlapping segments, each pointing at the most
specific network holding it (or at none: a gap), so a lookup is one `numpy.searchsorted` over the
segments' first addresses, vectorised for a batch. The fields a lookup answers are stored as codes
into string tables (a holder or a country is kept once however many networks share it). The whole
index is saved beside its results as one .npz, stamped with the results' size and modification time,
so the next command loads it instead of reading the results again.
"""

from __future__ import annotations

import bisect
import os
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from whoiscrawl.ipv4 import ip_str
from whoiscrawl.results.source import ColumnReader

FORMAT = 2  # bump when the saved layout changes: an index of another format is rebuilt
# The record fields a lookup answers, each stored as a code into its own string table. Lists are
# joined with "\n" (no e-mail, status word or handle holds one).
FIELDS = (
    "registry", "handle", "name", "holder", "registrant", "country", "country_source", "type", "status",
    "parent_handle", "abuse_emails", "registration_date", "last_changed", "source", "fetched_at", "crawl",
)
LISTS = frozenset({"status", "abuse_emails"})
NONE = 0  # code 0 of every table stands for a missing value
LOOKUP_CHUNK = 1 << 18  # addresses looked up at once
READ = tuple(name for name in FIELDS if name != "holder")  # the record fields the index reads
NESTING_ROUNDS = 8  # clipping passes `flatten` tries in numpy before it walks the stack
FLATTEN_CHUNK = 1 << 19  # networks `flatten` takes at once, at the least (its temporaries: ~100 bytes each)


class MapIndexError(ValueError):
    """An index that cannot be built or read; the text says which file and why."""


def index_path(results: Path) -> Path:
    """Where a results file's index lives: beside it."""
    return results.with_name(results.name + ".index.npz")


def stamp_of(results: Path) -> np.ndarray:
    """What an index remembers of its results: the layout's format, the file's size and mtime."""
    st = results.stat()
    return np.array([FORMAT, st.st_size, st.st_mtime_ns], np.int64)


@dataclass
class MapIndex:
    """Networks in hierarchy order, their parents, the flat segments, and the answer fields."""

    first: np.ndarray  # uint32, hierarchy order
    last: np.ndarray  # uint32
    parent: np.ndarray  # int32, -1 for a top-level network
    seg_start: np.ndarray  # uint32, sorted, seg_start[0] == 0
    seg_net: np.ndarray  # int32: the most specific network of each segment, -1 for none
    codes: dict[str, np.ndarray]  # field -> each network's code (uint8, uint16 or uint32)
    blobs: dict[str, tuple[np.ndarray, np.ndarray]]  # field -> (UTF-8 blob, offsets)
    built_at: float = 0.0  # when the index was built (Unix seconds)
    observed: str | None = None  # the newest fetched_at of the results: the map's age
    _owners: np.ndarray | None = field(default=None, repr=False)
    _buckets: tuple[np.ndarray, int, int] | None = field(default=None, repr=False)
    _views: dict[str, tuple[memoryview, np.ndarray]] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.first)

    @property
    def nbytes(self) -> int:
        arrays = [self.first, self.last, self.parent, self.seg_start, self.seg_net, *self.codes.values()]
        return sum(a.nbytes for a in arrays) + sum(b.nbytes + o.nbytes for b, o in self.blobs.values())

    def lookup(self, addresses: np.ndarray) -> np.ndarray:
        """The most specific network of each address (uint32 or int64 array), -1 where none holds it.

        A table over the addresses' top bits (`buckets`) gives the segment holding each bucket's
        first address and the next bucket's: an address whose bucket no other segment starts in is
        answered by it (two gathers), the rest by halving steps between the two, as many as the
        fullest bucket needs (a few: buckets are /24s or smaller on a large map)."""
        addrs = np.asarray(addresses, np.uint32)
        out = np.empty(len(addrs), np.int32)
        table, shift, steps = self.buckets()
        starts = self.seg_start
        for at in range(0, len(addrs), LOOKUP_CHUNK):  # temporaries of a chunk stay in cache
            part = addrs[at : at + LOOKUP_CHUNK]
            bucket = part >> np.uint32(shift)
            seg, end = table[bucket], table[bucket + 1]
            split = np.flatnonzero(seg != end)
            if len(split):
                wanted, lo, hi = part[split], seg[split], end[split]
                for _ in range(steps):  # the last segment of lo..hi starting at or before the address
                    mid = (lo + hi + 1) >> 1
                    ahead = starts[mid] <= wanted
                    lo = np.where(ahead, mid, lo)
                    hi = np.where(ahead, hi, mid - 1)
                seg[split] = lo
            out[at : at + len(part)] = self.seg_net[seg]
        return out

    def buckets(self) -> tuple[np.ndarray, int, int]:
        """For each of 2**bits buckets of the address space (and one past the end), the segment
        holding its first address; the shift to an address's bucket; the halving steps the fullest
        bucket needs. bits grows with the segments (16 buckets a segment, at most 2**24: 64 MiB,
        made on first use, never saved)."""
        if self._buckets is None:
            bits = int(min(24, max(8, np.ceil(np.log2(max(len(self.seg_start), 1))) + 4)))
            # segment i starts at or before bucket k's first address from k = ceil(start / size) on
            size = np.int64(1 << (32 - bits))
            since = (self.seg_start.astype(np.int64) + size - 1) // size
            table = (np.cumsum(np.bincount(since, minlength=(1 << bits) + 1)) - 1).astype(np.int32)
            widest = int(np.diff(table).max()) if len(table) > 1 else 0
            self._buckets = (table, 32 - bits, widest.bit_length())
        return self._buckets

    def lookup_flat(self, addresses: np.ndarray) -> np.ndarray:
        """`lookup` by one `searchsorted` over all segment starts (the benchmark's comparison)."""
        addrs = np.asarray(addresses, np.uint32)
        return self.seg_net[np.searchsorted(self.seg_start, addrs, side="right") - 1]

    def owners(self) -> np.ndarray:
        """Which networks are the most specific network of some address (own a segment)."""
        if self._owners is None:
            owners = np.zeros(len(self), bool)
            owners[self.seg_net[self.seg_net >= 0]] = True
            self._owners = owners
        return self._owners

    def parents(self, net: int) -> list[int]:
        """The chain of enclosing networks, nearest first."""
        out: list[int] = []
        p = int(self.parent[net])
        while p >= 0:
            out.append(p)
            p = int(self.parent[p])
        return out

    def lookup_one(self, address: int) -> int:
        """`lookup` of one address without building arrays (an RDAP query asks one): the bucket's
        segments are bisected in place."""
        table, shift, _ = self.buckets()
        bucket = address >> shift
        seg, end = int(table[bucket]), int(table[bucket + 1])
        if seg != end:
            seg = bisect.bisect_right(self.seg_start, address, seg, end + 1) - 1
        return int(self.seg_net[seg])

    def containing(self, first: int, last: int) -> int:
        """The most specific network holding all of first..last, or -1."""
        net = self.lookup_one(first)
        while net >= 0 and int(self.last[net]) < last:
            net = int(self.parent[net])
        return net

    def exact(self, first: int, last: int) -> int:
        """The network spanning exactly first..last, or -1."""
        net = self.containing(first, last)
        if net >= 0 and int(self.first[net]) == first and int(self.last[net]) == last:
            return net
        return -1

    def inside(self, first: int, last: int) -> np.ndarray:
        """The networks within first..last (the range's own network included), hierarchy order."""
        lo = int(np.searchsorted(self.first, first, side="left"))
        hi = int(np.searchsorted(self.first, last, side="right"))
        candidates = np.arange(lo, hi)
        return candidates[self.last[lo:hi] <= last]

    def value(self, net: int, name: str) -> str | list[str] | None:
        """One field of one network (an RDAP answer asks for a dozen: `item` and a memoryview slice
        are the cheapest reads of a numpy array and a blob from Python)."""
        code = self.codes[name].item(net)
        if code == NONE:
            return [] if name in LISTS else None
        blob, offsets = self._texts()[name]
        text = str(blob[offsets.item(code) : offsets.item(code + 1)], "utf-8")
        return text.split("\n") if name in LISTS else text

    def texts(self, net: int, names: tuple[str, ...]) -> list[str | None]:
        """Fields of one network that are strings, not lists (`value` of each, in one call: an RDAP
        answer reads a dozen)."""
        views, codes = self._texts(), self.codes
        out: list[str | None] = []
        for name in names:
            code = codes[name].item(net)
            if code == NONE:
                out.append(None)
            else:
                blob, offsets = views[name]
                out.append(str(blob[offsets.item(code) : offsets.item(code + 1)], "utf-8"))
        return out

    def _texts(self) -> dict[str, tuple[memoryview, np.ndarray]]:
        if self._views is None:
            self._views = {name: (blob.data, offsets) for name, (blob, offsets) in self.blobs.items()}
        return self._views

    def record(self, net: int) -> dict[str, Any]:
        """A network's fields, its range and its parents' handles (nearest first)."""
        doc: dict[str, Any] = {name: self.value(net, name) for name in FIELDS}
        doc["start_address"], doc["end_address"] = ip_str(self.first[net]), ip_str(self.last[net])
        doc["parents"] = [self.value(p, "handle") for p in self.parents(net)]
        if doc["parent_handle"] is None and doc["parents"]:
            doc["parent_handle"] = doc["parents"][0]
        return doc

    def save(self, path: Path, stamp: np.ndarray) -> None:
        """Write atomically (a temporary file renamed), so a reader never sees half an index."""
        arrays = {"stamp": stamp, "first": self.first, "last": self.last, "parent": self.parent,
                  "seg_start": self.seg_start, "seg_net": self.seg_net,
                  "meta": np.array([self.built_at]), "observed": np.array([self.observed or ""])}
        for name, (blob, offsets) in self.blobs.items():
            arrays[f"blob_{name}"], arrays[f"off_{name}"] = blob, offsets
            arrays[f"code_{name}"] = self.codes[name]
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)  # type: ignore[arg-type]
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> tuple[MapIndex, np.ndarray]:
        """An index and the stamp of the results it was built from; MapIndexError if unreadable."""
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["stamp"][0]) != FORMAT:
                    raise MapIndexError(f"it has layout {int(z['stamp'][0])}, this version reads "
                                        f"layout {FORMAT}")
                blobs = {n: (z[f"blob_{n}"], z[f"off_{n}"]) for n in FIELDS}
                codes = {n: z[f"code_{n}"] for n in FIELDS}
                index = cls(z["first"], z["last"], z["parent"], z["seg_start"], z["seg_net"], codes,
                            blobs, float(z["meta"][0]), str(z["observed"][0]) or None)
                stamp = z["stamp"]
            index.check()
        except MapIndexError as exc:
            raise MapIndexError(f"index {path} is unusable ({exc})") from exc
        except (OSError, ValueError, KeyError, IndexError, EOFError, zipfile.BadZipFile) as exc:
            raise MapIndexError(f"index {path} is unreadable ({type(exc).__name__}: {exc})") from exc
        return index, stamp

    def check(self) -> None:
        """Consistent shapes and pointers (a damaged file that still unzips fails here, not later)."""
        n = len(self.first)
        ok = (len(self.last) == n == len(self.parent) and len(self.seg_start) == len(self.seg_net) > 0
              and all(len(self.codes[name]) == n for name in FIELDS)
              and int(self.seg_start[0]) == 0 and (n == 0 or int(self.seg_net.max()) < n)
              and (n == 0 or int(self.parent.max()) < n))
        for name, (blob, offsets) in self.blobs.items():
            ok = ok and len(offsets) > 0 and int(offsets[-1]) == len(blob)
            ok = ok and (n == 0 or int(self.codes[name].max()) < len(offsets) - 1)
        if not ok:
            raise MapIndexError("index arrays are inconsistent (a damaged file)")


def flatten(first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parents and non-overlapping segments of networks in hierarchy order (parents, then segment
    starts and their most specific networks). A network overlapping its parent's end (real
    registries keep a few) is clipped to the parent. The networks are flattened FLATTEN_CHUNK or so
    at a time, cut only where no network spans the cut (`_cuts`), so the temporaries stay bounded
    however large the map; the pieces' segments are joined where they meet."""
    parents: list[np.ndarray] = []
    starts: list[np.ndarray] = []
    nets: list[np.ndarray] = []
    cuts = _cuts(first, last)
    for a, b in zip(cuts, [*cuts[1:], len(first)], strict=True):
        parent, seg_start, seg_net = _flatten(first[a:b], last[a:b])
        parent[parent >= 0] += a
        seg_net[seg_net >= 0] += a
        if a:  # a later piece's first segment is the space's first address, nobody's: the last one's
            seg_start, seg_net = seg_start[1:], seg_net[1:]
            if int(starts[-1][-1]) == int(seg_start[0]):  # the last piece's gap is empty: it ends there
                starts[-1], nets[-1] = starts[-1][:-1], nets[-1][:-1]
        parents.append(parent)
        starts.append(seg_start)
        nets.append(seg_net)
    if len(cuts) == 1:
        return parents[0], starts[0], nets[0]
    return np.concatenate(parents), np.concatenate(starts), np.concatenate(nets)


def _cuts(first: np.ndarray, last: np.ndarray) -> list[int]:
    """Where the networks (hierarchy order) may be cut into pieces of FLATTEN_CHUNK or more: before a
    network no earlier one reaches (so no family is cut); [0] for one piece."""
    if len(first) <= FLATTEN_CHUNK:
        return [0]
    reach = np.maximum.accumulate(last)
    free = np.flatnonzero(reach[:-1] < first[1:]) + 1
    del reach
    cuts = [0]
    while (at := int(np.searchsorted(free, cuts[-1] + FLATTEN_CHUNK))) < len(free):
        cuts.append(int(free[at]))
    return cuts


def _flatten(first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`flatten` of one piece: in numpy (`_nesting`, `_segments`); a family whose clipping does not
    settle in NESTING_ROUNDS is walked by the stack instead."""
    nesting = _nesting(first.astype(np.int64), last.astype(np.int64))
    if nesting is None:
        return flatten_by_stack(first, last)
    parent, clipped, levels = nesting
    return parent, *_segments(first.astype(np.int64), clipped, parent, levels)


def _levels(depth: np.ndarray) -> list[np.ndarray]:
    """The networks at each depth, each level in hierarchy order."""
    order = np.argsort(depth, kind="stable")
    bounds = np.searchsorted(depth[order], np.arange(int(depth.max(initial=0)) + 2))
    return [order[bounds[d] : bounds[d + 1]] for d in range(len(bounds) - 1)]


def _nesting(first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]] | None:
    """Each network's parent (the last network before it ending at or after its first address),
    its last address clipped to its parent's, and the networks by depth; None if the clipping
    does not settle.

    A network's depth is how many networks before it end at or after its first address (one
    searchsorted); in a laminar family those are its ancestors, and its parent is the last network
    before it one level up. Clipping to the parents so found may change which end where, so it is
    repeated until the clipped ends are those it starts from: then each network lies inside its
    parent, the family is laminar, and the parents are the ones the stack walk finds."""
    n = len(first)
    index = np.arange(n)
    clipped = last
    for _ in range(NESTING_ROUNDS):
        depth = index - np.searchsorted(np.sort(clipped), first, side="left")
        levels = _levels(depth)
        parent = np.full(n, -1, np.int32)
        again = last.copy()
        for d in range(1, len(levels)):
            at, up = levels[d], levels[d - 1]
            k = np.searchsorted(up, at) - 1
            if len(at) and int(k.min()) < 0:  # no network one level up before it: not laminar yet
                return None
            parent[at] = up[k]
            again[at] = np.maximum(np.minimum(again[at], again[parent[at]]), first[at])
        if np.array_equal(again, clipped):
            inside = (parent < 0) | (clipped <= clipped[parent])
            return (parent, clipped, levels) if bool(inside.all()) else None
        clipped = again
    return None


def _segments(first: np.ndarray, clipped: np.ndarray, parent: np.ndarray,
              levels: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The maximal runs of the address space with one most specific network (-1: none), given
    laminar networks: a run starts where a network starts (the last network starting there, the
    innermost, holds it) or just past where one ends (the outermost network ending there gives way
    to its parent), a start winning over an end at the same address."""
    n = len(first)
    starts = np.flatnonzero(np.append(first[1:] != first[:-1], True)) if n else np.zeros(0, np.int64)
    depth = np.empty(n, np.int64)
    for d, at in enumerate(levels):
        depth[at] = d
    ends = np.flatnonzero(clipped < 0xFFFFFFFF)
    # one key per candidate: address, then kind (0 start, 1 end, 2 the space's first address),
    # then, among ends at one address, the outermost first
    keys = np.concatenate([
        (first[starts].astype(np.uint64) << np.uint64(26)),
        ((clipped[ends] + 1).astype(np.uint64) << np.uint64(26)) | np.uint64(1 << 24)
        | depth[ends].astype(np.uint64),
        np.array([2 << 24], np.uint64)])
    nets = np.concatenate([starts, parent[ends], [-1]]).astype(np.int32)
    order = np.argsort(keys)
    address = (keys[order] >> np.uint64(26)).astype(np.int64)
    nets = nets[order]
    keep = np.append(True, address[1:] != address[:-1])  # the first candidate at each address
    address, nets = address[keep], nets[keep]
    keep = np.append(True, nets[1:] != nets[:-1])  # runs: a network that goes on is one run
    return address[keep].astype(np.uint32), nets[keep]


def flatten_by_stack(first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`flatten` by a walk with a stack of open networks, a network at a time (the reference)."""
    parent = np.full(len(first), -1, np.int32)
    starts: list[int] = []
    nets: list[int] = []
    stack: list[tuple[int, int]] = []  # (last address, network), innermost on top
    cursor = 0  # the first address no segment covers yet

    def close_until(address: int) -> None:
        nonlocal cursor
        while stack and stack[-1][0] < address:
            top_last, top = stack.pop()
            if cursor <= top_last:
                starts.append(cursor)
                nets.append(top)
                cursor = top_last + 1

    for i, (f, t) in enumerate(zip(first.tolist(), last.tolist(), strict=True)):
        close_until(f)
        if cursor < f:
            starts.append(cursor)
            nets.append(stack[-1][1] if stack else -1)
        if stack:
            parent[i] = stack[-1][1]
            t = min(t, stack[-1][0])
        cursor = f
        stack.append((t, i))
    close_until(1 << 32)
    if cursor <= 0xFFFFFFFF:
        starts.append(cursor)
        nets.append(-1)
    return parent, np.array(starts, np.uint32), np.array(nets, np.int32)


def _narrow(n: int) -> type[np.unsignedinteger[Any]]:
    """The narrowest unsigned type holding codes 0..n-1."""
    return np.uint8 if n <= 1 << 8 else np.uint16 if n <= 1 << 16 else np.uint32


class StringTable:
    """One answer field's string table built as the runs of records are read: the distinct values
    seen so far, kept in chunks (each chunk's values new to the chunks before it: a value's code is
    its place in them, from 1; 0 is no value), and each record's code.

    A run's column is dictionary-encoded on its own; its dictionary waits with the others
    (`pending`) until they hold more values than a quarter of the table (and MERGE_AT). Then they are
    deduplicated together, looked up in each chunk (`index_in`), and the values no chunk holds
    become a new chunk; the waiting runs' codes are turned into the table's. So a value shared by
    many runs is kept once, what waits is at most a quarter more than the table, and a merge copies
    only the new values (the table is hashed again a chunk at a time, about ten times at 5M
    networks, never copied)."""

    MERGE_AT = 1 << 18  # waiting values that start a merge, at the least

    def __init__(self) -> None:
        self.chunks: list[pa.Array] = []
        self.size = 0  # values in the chunks
        self.pending: list[tuple[pa.Array, np.ndarray]] = []  # (a run's dictionary, its records' local codes)
        self.waiting = 0
        self.codes: list[np.ndarray] = []  # each merged run's records' codes into the table (0: none)

    def add(self, column: pa.ChunkedArray) -> None:
        """A run's values (a list of strings: its items joined by "\n"), in record order."""
        if pa.types.is_list(column.type):
            column = pc.binary_join(column, "\n")
        coded = pc.dictionary_encode(column.combine_chunks())
        local = pc.fill_null(pc.add(coded.indices, 1), 0).to_numpy(zero_copy_only=False)
        self.pending.append((coded.dictionary, local.astype(_narrow(len(coded.dictionary) + 1))))
        self.waiting += len(coded.dictionary)
        if self.waiting > max(self.size >> 2, self.MERGE_AT):
            self.merge()

    def merge(self) -> None:
        """The waiting dictionaries merged into the table, their runs' codes turned into its codes."""
        if not self.pending:
            return
        coded = pc.dictionary_encode(pa.concat_arrays([d for d, _ in self.pending]))
        unique, at = coded.dictionary, coded.indices.to_numpy(zero_copy_only=False)
        del coded
        code = np.full(len(unique), -1, np.int64)  # each waiting value's code in the table, from 0
        base = 0
        for chunk in self.chunks:
            found = pc.fill_null(pc.index_in(unique, value_set=chunk), -1).to_numpy(zero_copy_only=False)
            code = np.where(found >= 0, found + base, code)
            base += len(chunk)
        new = code < 0
        if new.any():
            self.chunks.append(unique.filter(pa.array(new)))  # a copy of the new values alone
            code[new] = self.size + np.arange(int(new.sum()))
            self.size += len(self.chunks[-1])
        del unique
        wide, base = _narrow(self.size + 1), 0
        for dictionary, local in self.pending:
            table = np.zeros(len(dictionary) + 1, wide)
            table[1:] = code[at[base : base + len(dictionary)]] + 1
            self.codes.append(table[local])
            base += len(dictionary)
        self.pending, self.waiting = [], 0

    def pack(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The table of the values `rows` (records, in the order wanted) hold: the distinct values
        as one UTF-8 blob and offsets (offsets[c]..offsets[c+1] is code c, code 0 the missing value:
        null, "" or []), and the rows coded into it in the narrowest unsigned type. Values only
        other records held are dropped. The table is emptied as it is packed."""
        self.merge()
        every = np.concatenate(self.codes) if self.codes else np.zeros(0, np.uint8)
        self.codes = []
        codes = every[rows]
        del every
        used = np.zeros(self.size + 1, bool)
        used[codes] = True
        empty = self._code_of("")
        if empty:  # "" and [] are missing values
            used[empty] = False
        used[NONE] = True
        recode = np.cumsum(used) - 1
        recode[empty] = NONE
        blob, offsets = self._kept(used[1:])
        return blob, offsets, recode[codes].astype(_narrow(len(offsets) - 1))

    def _code_of(self, text: str) -> int:
        """A value's code (0: not in the table)."""
        base = 0
        for chunk in self.chunks:
            if (at := pc.index(chunk, text).as_py()) >= 0:
                return base + at + 1
            base += len(chunk)
        return NONE

    def _kept(self, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The values `keep` marks, in code order, as a blob and offsets (a leading 0 for code 0),
        copied a chunk at a time into arrays made once (each chunk let go as it is copied)."""
        total, base = 0, 0
        for chunk in self.chunks:
            at, _ = _buffers(chunk)
            total += int(np.diff(at)[keep[base : base + len(chunk)]].sum())
            base += len(chunk)
        blob = np.empty(total, np.uint8)
        offsets = np.zeros(int(keep.sum()) + 2, np.uint32 if total < 1 << 32 else np.int64)
        base, n, pos = 0, 1, 0
        while self.chunks:
            chunk = self.chunks.pop(0)
            kept = chunk.filter(pa.array(keep[base : base + len(chunk)]))
            base += len(chunk)
            del chunk
            at, data = _buffers(kept)
            blob[pos : pos + at[-1] - at[0]] = data[at[0] : at[-1]]
            offsets[n : n + len(kept) + 1] = at - at[0] + pos
            n, pos = n + len(kept), pos + int(at[-1] - at[0])
        self.size = 0
        return blob, offsets


def _buffers(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string array's offsets (one past each value) and its data, as numpy views."""
    if not len(strings):
        return np.zeros(1, np.int64), np.zeros(0, np.uint8)
    wide = np.int64 if pa.types.is_large_string(strings.type) else np.int32
    at = np.frombuffer(strings.buffers()[1], wide)[strings.offset : strings.offset + len(strings) + 1]
    data = strings.buffers()[2]
    return at, np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)


def _holder(table: pa.Table) -> pa.ChunkedArray:
    """The holder as `summary` names holders: the registrant, else the name, else the handle."""
    absent = pa.scalar(None, pa.string())
    registrant, name = (pc.if_else(pc.equal(table[f], ""), absent, table[f]) for f in ("registrant", "name"))
    return pc.coalesce(registrant, name, table["handle"])


def build(reader: ColumnReader) -> MapIndex:
    """The index of a result set's latest records, read as columns a run at a time
    (`results.source.ColumnReader` with READ): each run's fields added to their string tables and
    dropped, then the spans flattened and each table packed with the latest records' values."""
    tables = {name: StringTable() for name in FIELDS}
    for run in reader.runs():
        for name in FIELDS:
            tables[name].add(_holder(run) if name == "holder" else run[name])
        del run
        pa.default_memory_pool().release_unused()  # the run's columns: hand their pages back now
    rows, first, last = reader.latest()
    parent, seg_start, seg_net = flatten(first, last)
    codes, blobs = {}, {}
    for name in FIELDS:
        blob, offsets, codes[name] = tables.pop(name).pack(rows)
        blobs[name] = (blob, offsets)
    return MapIndex(first, last, parent, seg_start, seg_net, codes, blobs, time.time(), reader.newest)


def build_file(path: Path) -> MapIndex:
    """The index of a results file, read once, as columns."""
    return released(build(ColumnReader(path, READ)))


def released(index: MapIndex) -> MapIndex:
    """`index`, once arrow's allocator has handed back the pages the results' columns held (call it
    when they are garbage). mimalloc keeps freed pages for reuse, and a server or a lookup asks for
    none again: 1M networks, 642 MB resident after the build, 297 MB after this (2026-12-07)."""
    pa.default_memory_pool().release_unused()
    return index


def load_or_build(path: Path, save: bool = True) -> tuple[MapIndex, str]:
    """The index of a results file: the saved one if its stamp matches the file, else built (and
    saved beside it). Returns the index and how it was had: loaded, built, or rebuilt (with why)."""
    saved = index_path(path)
    if not path.is_file():
        raise MapIndexError(f"{path} is not a results file")
    stamp = stamp_of(path)
    how = "built"
    if saved.is_file():
        try:
            index, old = MapIndex.load(saved)
            if np.array_equal(old, stamp):
                return index, "loaded"
            how = "rebuilt: the results changed"
        except MapIndexError as exc:
            how = f"rebuilt: {exc}"
            print(f"note: {exc}; rebuilding it", file=sys.stderr)
    index = build_file(path)
    if save:
        try:
            index.save(saved, stamp)
        except OSError as exc:  # a read-only folder: answer anyway, from memory
            print(f"note: could not save the index beside the results ({exc})", file=sys.stderr)
    return index, how
