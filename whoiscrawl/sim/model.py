"""The simulated registry databases: real delegations, generated sub-objects, a most-specific index."""

from __future__ import annotations

import bisect
import hashlib
import ipaddress
import pickle
import random
import time
import zlib
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from whoiscrawl import rirs
from whoiscrawl.ipv4 import cidr_blocks, ip_str, less
from whoiscrawl.rirs import REGISTRIES
from whoiscrawl.sim import data
from whoiscrawl.sim.data import REG_INDEX

MODEL_VERSION = 7  # bump when generation changes: invalidates cached worlds

# Status words ("type" in RDAP, "status:" / "NetType:" in WHOIS), per registry.
UNALLOCATED = "UNALLOCATED"
TYPES: tuple[str, ...] = (
    UNALLOCATED,
    # ARIN
    "DIRECT ALLOCATION", "DIRECT ASSIGNMENT", "REALLOCATION", "REASSIGNMENT",
    # RIPE NCC (and AFRINIC shares some)
    "ALLOCATED PA", "SUB-ALLOCATED PA", "LIR-PARTITIONED PA", "ASSIGNED PA", "ASSIGNED PI", "LEGACY",
    # APNIC
    "ALLOCATED PORTABLE", "ALLOCATED NON-PORTABLE", "ASSIGNED PORTABLE", "ASSIGNED NON-PORTABLE",
    # LACNIC
    "ALLOCATED", "ASSIGNED",
    # RIPE NCC: an LIR's aggregate of same-sized assignments (appended: earlier indices stay)
    "AGGREGATED-BY-LIR",
)
T: dict[str, int] = {t: i for i, t in enumerate(TYPES)}
ASSIGNMENT_TYPES = frozenset(
    T[t] for t in TYPES if t.startswith("ASSIGNED") or t in ("DIRECT ASSIGNMENT", "REASSIGNMENT")
)


def is_assignment(type_word: str | None) -> bool:
    """The crawler's rule: assignment types are leaves at /24 resolution."""
    if not type_word:
        return False
    return type_word.startswith("ASSIGNED") or type_word in ("DIRECT ASSIGNMENT", "REASSIGNMENT")


@dataclass(frozen=True)
class RegStyle:
    """How one registry names its statuses and how densely its database is populated."""

    top_alloc: str
    top_assign: str
    sub_alloc: tuple[str, ...]  # allocation-like child types
    child_assign: str  # assignment made inside an allocation
    sub_assign: str  # assignment made inside an assignment (always < /24)
    coverage: tuple[float, float]  # fraction of an allocation handed out further
    weights: dict[int, float]  # child prefix length -> weight, for allocation children
    sub_alloc_p: float  # chance a (>= /24) child of an allocation is itself an allocation
    assign_split_p: float  # chance an assignment >= /24 is partly sub-assigned
    noncidr_p: float  # chance a child spans 3..5 aligned blocks (not a single CIDR)
    empty_alloc_p: float  # chance an allocation has no registered children at all
    # Where the registry refuses children under an assignment (`rirs.Rir.childless`), an assignment
    # that would be partly sub-assigned is registered as one of these parents instead.
    aggregates: tuple[str, ...] = ()
    # Share of sub-delegations naming contacts of their own; the rest name the contacts of the
    # holder that registered them (`World.contact_holder`).
    own_contacts: float = 1.0


STYLES: dict[str, RegStyle] = {
    "arin": RegStyle(
        "DIRECT ALLOCATION", "DIRECT ASSIGNMENT", ("REALLOCATION",), "REASSIGNMENT",
        "REASSIGNMENT", (0.1, 0.6),
        {16: 0.5, 17: 0.5, 18: 1, 19: 2, 20: 3, 21: 4, 22: 6, 23: 6, 24: 10, 25: 3, 26: 4,
         27: 4, 28: 4, 29: 5},
        0.25, 0.15, 0.04, 0.3),
    "ripencc": RegStyle(
        "ALLOCATED PA", "ASSIGNED PI", ("SUB-ALLOCATED PA", "LIR-PARTITIONED PA"), "ASSIGNED PA",
        "ASSIGNED PA", (0.4, 0.85),
        {16: 0.2, 17: 0.3, 18: 0.5, 19: 1, 20: 2, 21: 3, 22: 5, 23: 6, 24: 14, 25: 4, 26: 5,
         27: 6, 28: 6, 29: 7},
        0.12, 0.3, 0.06, 0.08, ("AGGREGATED-BY-LIR", "SUB-ALLOCATED PA")),
    "apnic": RegStyle(
        "ALLOCATED PORTABLE", "ASSIGNED PORTABLE", ("ALLOCATED NON-PORTABLE",),
        "ASSIGNED NON-PORTABLE", "ASSIGNED NON-PORTABLE", (0.15, 0.6),
        {16: 0.5, 17: 0.5, 18: 1, 19: 2, 20: 3, 21: 4, 22: 6, 23: 6, 24: 12, 25: 2, 26: 2,
         27: 2, 28: 2, 29: 3},
        0.15, 0.15, 0.03, 0.3),
    "lacnic": RegStyle(
        "ALLOCATED", "ASSIGNED", ("ALLOCATED",), "ASSIGNED", "ASSIGNED", (0.1, 0.5),
        {16: 0.5, 17: 0.5, 18: 1, 19: 2, 20: 4, 21: 4, 22: 6, 23: 4, 24: 8, 25: 1, 26: 2,
         27: 2, 28: 2, 29: 3},
        0.2, 0.1, 0.0, 0.35,
        # An ISP registers its customers' blocks (MiLACNIC's sub-assignments) under the customer's
        # own `owner:`/`ownerid:` but mostly with its own contacts: the real 200.68.34.56/29
        # (reallocated to a customs agency, CL-AAPS3-LACNIC) names the ISP's OTE as `owner-c:`,
        # `tech-c:` and `abuse-c:`, `responsible: Operaciones ISP TIE` (tests/data/real-answers/
        # lacnic/go-whois-200.68.34.57.txt); LACNIC's own example of a customer block names a
        # contact of the customer's. How many do is not published: a quarter is assumed.
        own_contacts=0.25),
    "afrinic": RegStyle(
        "ALLOCATED PA", "ASSIGNED PI", ("SUB-ALLOCATED PA",), "ASSIGNED PA", "ASSIGNED PA",
        (0.1, 0.5),
        {16: 0.5, 17: 0.5, 18: 1, 19: 2, 20: 3, 21: 4, 22: 6, 23: 6, 24: 10, 25: 2, 26: 2,
         27: 2, 28: 2, 29: 2},
        0.15, 0.15, 0.04, 0.4, ("SUB-ALLOCATED PA",)),
}
MAX_DEPTH = 4
UNDATED = 19930101  # a delegation whose statistics row has no date: registered before the records
CCS = ("US", "GB", "DE", "FR", "NL", "BR", "CN", "JP", "AU", "IN", "ZA", "AR", "RU", "EU")


def parse_cidr(text: str) -> tuple[int, int]:
    net = ipaddress.IPv4Network(text, strict=False)
    return int(net.network_address), int(net.broadcast_address)


class World:
    """Every object of one scenario, in parallel arrays, and a most-specific lookup index.

    Object i: start[i]..end[i] (inclusive), registry index reg[i], status word TYPES[typ[i]],
    parent[i] (-1 at the top), depth[i], country ccs[cc[i]], registration date date[i] (YYYYMMDD),
    placeholder objects (free space) have typ == T[UNALLOCATED].
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.start = array("I")
        self.end = array("I")
        self.parent = array("i")
        self.reg = array("B")
        self.typ = array("B")
        self.cc = array("H")
        self.date = array("I")
        self.depth = array("B")
        self.ccs: list[str] = []
        self._ccidx: dict[str, int] = {}
        self.org = array("I")  # organisation number (shared by a delegation's objects)
        # index: seg_start[k]..(seg_start[k+1]-1) answered by seg_obj[k] (-1: nothing there)
        self.seg_start = array("I")
        self.seg_obj = array("i")
        self.nchildren = array("I")
        # A changing world's holders (`churn.py`), by organisation number: a new name (the handle
        # stays), a new abuse contact (its generation), the date either was made.
        self.names: dict[int, str] = {}
        self.abuse: dict[int, int] = {}
        self.touched: dict[int, int] = {}

    # building -------------------------------------------------------------------------
    def cc_index(self, cc: str) -> int:
        i = self._ccidx.get(cc)
        if i is None:
            i = self._ccidx[cc] = len(self.ccs)
            self.ccs.append(cc)
        return i

    def add(self, start: int, end: int, parent: int, reg: int, typ: int, cc: int, date: int,
            depth: int, org: int) -> int:
        self.start.append(start)
        self.end.append(end)
        self.parent.append(parent)
        self.reg.append(reg)
        self.typ.append(typ)
        self.cc.append(cc)
        self.date.append(date)
        self.depth.append(depth)
        self.org.append(org)
        return len(self.start) - 1

    def __len__(self) -> int:
        return len(self.start)

    def build_index(self) -> None:
        """Sort objects (parents before children) and flatten the laminar family into segments."""
        n = len(self.start)
        order = sorted(range(n), key=lambda i: (self.start[i], -self.end[i], self.depth[i]))
        if order != list(range(n)):
            self._permute(order)
        self.nchildren = array("I", bytes(4 * n))
        for p in self.parent:
            if p >= 0:
                self.nchildren[p] += 1
        seg_start = array("I")
        seg_obj = array("i")
        stack: list[int] = []  # open objects, innermost last
        pos = 0  # next address not yet emitted

        def emit(upto: int) -> None:  # emit segments for [pos, upto) from the stack top
            nonlocal pos
            if upto <= pos:
                return
            obj = stack[-1] if stack else -1
            if seg_obj and seg_obj[-1] == obj:
                pos = upto
                return
            seg_start.append(pos)
            seg_obj.append(obj)
            pos = upto

        start, end = self.start, self.end
        for i in range(n):
            s = start[i]
            while stack and end[stack[-1]] < s:
                emit(end[stack[-1]] + 1)
                stack.pop()
            emit(s)
            stack.append(i)
        while stack:
            emit(end[stack[-1]] + 1)
            stack.pop()
        if pos <= 0xFFFFFFFF:
            seg_start.append(pos)
            seg_obj.append(-1)
        self.seg_start, self.seg_obj = seg_start, seg_obj

    def _permute(self, order: list[int]) -> None:
        remap = array("i", bytes(4 * len(order)))
        for new, old in enumerate(order):
            remap[old] = new
        for name in ("start", "end", "reg", "typ", "cc", "date", "depth", "org"):
            arr = getattr(self, name)
            setattr(self, name, array(arr.typecode, (arr[i] for i in order)))
        self.parent = array("i", (remap[self.parent[i]] if self.parent[i] >= 0 else -1
                                  for i in order))

    # queries --------------------------------------------------------------------------
    def lookup(self, addr: int) -> int:
        """The most specific object holding addr, or -1."""
        k = bisect.bisect_right(self.seg_start, addr) - 1
        return self.seg_obj[k] if k >= 0 else -1

    def segments(self, first: int, last: int) -> Iterator[tuple[int, int, int]]:
        """(seg_first, seg_last, obj) for the segments intersecting first..last, clipped."""
        ss, so = self.seg_start, self.seg_obj
        k = max(bisect.bisect_right(ss, first) - 1, 0)
        nseg = len(ss)
        while k < nseg and ss[k] <= last:
            a = max(ss[k], first)
            b = min(ss[k + 1] - 1 if k + 1 < nseg else 0xFFFFFFFF, last)
            yield a, b, so[k]
            k += 1

    def exact(self, first: int, last: int) -> int:
        """The object spanning exactly first..last, or -1."""
        obj = self.holding(first, last)
        return obj if obj >= 0 and self.start[obj] == first and self.end[obj] == last else -1

    def holding(self, first: int, last: int) -> int:
        """The most specific object spanning all of first..last, or -1."""
        obj = self.lookup(first)
        while obj >= 0 and (self.start[obj] > first or self.end[obj] < last):
            obj = self.parent[obj]
        return obj

    def within(self, first: int, last: int, limit: int) -> list[int]:
        """The largest objects strictly inside first..last, in address order, at most `limit`:
        RIPE WHOIS `-m` and RFC 9910 `rdap-down` for a range (one spanning an object exactly gives
        that object's children; one starting inside an object gives the siblings after it).

        Objects are sorted by start, parents first, so a subtree is skipped with one bisection."""
        out: list[int] = []
        j, n = bisect.bisect_left(self.start, first), len(self.start)
        while j < n and self.start[j] <= last and len(out) < limit:
            if self.end[j] <= last and not (self.start[j] == first and self.end[j] == last):
                out.append(j)
                j = bisect.bisect_right(self.start, self.end[j], j + 1)  # past its subtree
            else:
                j += 1
        return out

    def children(self, i: int, limit: int) -> list[int]:
        """Object i's direct children in address order, at most `limit` of them.

        Objects are sorted parents first, so i's subtree follows it directly."""
        out: list[int] = []
        j, n, last = i + 1, len(self.start), self.end[i]
        while j < n and self.start[j] <= last and len(out) < limit:
            if self.parent[j] == i:
                out.append(j)
            j += 1
        return out

    def type_word(self, i: int) -> str:
        return TYPES[self.typ[i]]

    def contact_holder(self, i: int) -> int:
        """The object whose holder's contacts object i names: its own, or for a sub-delegation
        registered without contacts of its own (`RegStyle.own_contacts`, by its holder's number)
        its parent's, up to the first that has its own (a delegation always has)."""
        while self.parent[i] >= 0:
            own = STYLES[REGISTRIES[self.reg[i]]].own_contacts
            if own >= 1.0 or _draw(self.org[i]) < own:
                break
            i = self.parent[i]
        return i

    def is_placeholder(self, i: int) -> bool:
        return self.typ[i] == 0

    def registry(self, i: int) -> str:
        return REGISTRIES[self.reg[i]]

    def handle(self, i: int) -> str:
        return object_handle(self.reg[i], self.start[i], self.end[i], self.depth[i],
                             self.typ[i] == 0)

    # persistence ---------------------------------------------------------------------
    def dumps(self) -> bytes:
        payload: dict[str, object] = {name: getattr(self, name).tobytes() for name in _ARRAYS}
        payload["ccs"] = self.ccs
        payload["seed"] = self.seed
        payload["holders"] = (self.names, self.abuse, self.touched)
        return zlib.compress(pickle.dumps(payload, protocol=5), 3)

    @classmethod
    def loads(cls, raw: bytes) -> World:
        payload = pickle.loads(zlib.decompress(raw))
        w = cls(int(payload["seed"]))
        for name in _ARRAYS:
            arr = array(getattr(w, name).typecode)
            arr.frombytes(payload[name])
            setattr(w, name, arr)
        w.ccs = list(payload["ccs"])
        w._ccidx = {c: i for i, c in enumerate(w.ccs)}
        w.names, w.abuse, w.touched = payload.get("holders", ({}, {}, {}))
        return w


_ARRAYS = ("start", "end", "parent", "reg", "typ", "cc", "date", "depth", "org", "seg_start",
           "seg_obj", "nchildren")


def object_handle(reg: int, start: int, end: int, depth: int, placeholder: bool) -> str:
    """The registry-style handle: ARIN NET-a-b-c-d-N, LACNIC CIDR, others 'first - last'."""
    if reg == 0:  # arin
        return f"NET-{ip_str(start).replace('.', '-')}-{0 if placeholder else depth + 1}"
    if reg == 3:  # lacnic: its database holds CIDR blocks; the handle is the prefix
        cidrs = cidr_blocks(start, end)
        if len(cidrs) == 1:
            return f"{ip_str(start)}/{cidrs[0][1]}"
    return f"{ip_str(start)} - {ip_str(end)}"


# generation -------------------------------------------------------------------------------

def _draw(key: int) -> float:
    """A number in [0, 1) fixed by an organisation's number (a holder's trait, not generation's)."""
    return int.from_bytes(hashlib.blake2b(key.to_bytes(4, "big"), digest_size=4).digest(), "big") / 2**32


def _rng(seed: int, *key: int) -> random.Random:
    h = hashlib.blake2b(repr((seed, *key)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(h, "big"))


def _later_date(rng: random.Random, date: int) -> int:
    y = max(date // 10000, 1985)
    y2 = rng.randint(y, 2018)
    m = rng.randint(1, 12 if y2 < 2018 else 9)
    d = rng.randint(1, 28)
    cand = y2 * 10000 + m * 100 + d
    return max(cand, date)


class _Gen:
    """Generates the finer objects under one delegation."""

    def __init__(self, world: World, seed: int) -> None:
        self.w = world
        self.seed = seed

    def subtree(self, obj: int, rng: random.Random, style: RegStyle, reg: int) -> None:
        w = self.w
        if w.depth[obj] >= MAX_DEPTH:
            return
        typ = w.typ[obj]
        s, e = w.start[obj], w.end[obj]
        size = e - s + 1
        if typ in ASSIGNMENT_TYPES:
            if size >= 256 and rng.random() < style.assign_split_p and self._may_hold(obj, style):
                self._sub_assign(obj, rng, style, reg)
            return
        if size < 16 or rng.random() < style.empty_alloc_p * (1.0 if size <= 65536 else 0.0):
            return
        self._alloc_children(obj, rng, style, reg)

    def _may_hold(self, obj: int, style: RegStyle) -> bool:
        """Can this assignment hold sub-assignments? Where its registry refuses children under
        its status (RIPE NCC, AFRINIC), a delegation (ASSIGNED PI) cannot; an assignment made
        inside an allocation becomes an aggregate parent instead (SUB-ALLOCATED PA,
        AGGREGATED-BY-LIR), chosen from its address so the rest of the subtree stays the same."""
        w = self.w
        if not rirs.is_childless(REGISTRIES[w.reg[obj]], TYPES[w.typ[obj]]):
            return True
        if w.depth[obj] == 0 or not style.aggregates:
            return False
        w.typ[obj] = T[style.aggregates[(w.start[obj] >> 8) % len(style.aggregates)]]
        return True

    def _child(self, parent: int, s: int, e: int, typ: int, rng: random.Random, reg: int,
               new_org: bool) -> int:
        w = self.w
        cc = w.cc[parent] if rng.random() < 0.95 else w.cc_index(rng.choice(CCS))
        org = rng.getrandbits(30) if new_org else w.org[parent]
        return w.add(s, e, parent, reg, typ, cc, _later_date(rng, w.date[parent]),
                     w.depth[parent] + 1, org)

    def _alloc_children(self, obj: int, rng: random.Random, style: RegStyle, reg: int) -> None:
        w = self.w
        s, e = w.start[obj], w.end[obj]
        size = e - s + 1
        plen_parent = 32 - (size.bit_length() - 1)  # prefix of the largest power of 2 <= size
        lens = [ln for ln in style.weights if ln > plen_parent]
        if not lens:
            lens = [min(plen_parent + 1, 29)] if plen_parent < 29 else []
        if not lens:
            return
        wts = [style.weights.get(ln, 1.0) for ln in lens]
        cov = rng.uniform(*style.coverage)
        p = s
        created: list[int] = []
        while p <= e:
            ln = rng.choices(lens, wts)[0]
            b = 1 << (32 - ln)
            low = p & -p if p else 1 << 32
            while b > low or b > e - p + 1:
                b >>= 1
            if b >= size:  # never a child equal to its parent
                b >>= 1
            if rng.random() < cov and b >= 8:
                span = b
                if style.noncidr_p and rng.random() < style.noncidr_p:
                    k = rng.randint(3, 5)
                    span = min(b * k, e - p + 1)
                    if span >= size:
                        span = b
                    span -= span % b
                c_end = p + span - 1
                if span >= 256 and rng.random() < style.sub_alloc_p:
                    ctype = T[rng.choice(style.sub_alloc)]
                else:
                    ctype = T[style.child_assign]
                created.append(self._child(obj, p, c_end, ctype, rng, reg, True))
                p += span
            else:
                p += b
        for c in created:
            self.subtree(c, rng, style, reg)

    def _sub_assign(self, obj: int, rng: random.Random, style: RegStyle, reg: int) -> None:
        """A few /29../25 sub-assignments inside some of the assignment's /24s."""
        w = self.w
        s, e = w.start[obj], w.end[obj]
        n24 = (e - s + 1) >> 8
        picks = sorted(rng.sample(range(n24), min(n24, rng.randint(1, 6))))
        ctype = T[style.sub_assign]
        for k in picks:
            base = s + (k << 8)
            p = base
            while p < base + 256:
                ln = rng.choice((25, 26, 27, 27, 28, 28, 29, 29, 29))
                b = 1 << (32 - ln)
                low = p & -p if p else 256
                while b > low or b > base + 256 - p:
                    b >>= 1
                if rng.random() < 0.4 and b >= 8:
                    self._child(obj, p, p + b - 1, ctype, rng, reg, True)
                p += b


def _top_type(d: data.Delegation, legacy8: bool) -> int:
    style = STYLES[d.registry]
    if d.registry == "ripencc" and legacy8 and d.date and d.date < 19930901:
        return T["LEGACY"]
    return T[style.top_alloc] if d.status == "allocated" else T[style.top_assign]


# IANA's special-purpose ranges (`rirs.SPECIAL_SPANS`) are no registry's free space.
# Real ARIN answers 192.0.2.0/24 with its own object (TEST-NET-1, NetType IANA Special Use); a
# placeholder spanning it and the free 192.0.1.0/24 beside it was a block no crawl could find (it
# asks no special-purpose address, and the statistics list 192.0.1.0/24 alone).
def _not_special(a: int, b: int) -> list[tuple[int, int]]:
    """a..b less the special-purpose ranges."""
    return less(a, b, rirs.SPECIAL_SPANS)


def _free_runs() -> list[tuple[int, int, int]]:
    """(first, last, registry index) of free space: not delegated, inside an RIR's /8s, not
    special-purpose."""
    iana = data.load_iana()
    dels = data.load_delegations()
    out: list[tuple[int, int, int]] = []
    used = [(d.start, d.end, d.registry) for d in dels if d.status in ("allocated", "assigned")]
    free_reg_by_range = sorted((d.start, d.end, d.registry) for d in dels
                               if d.status not in ("allocated", "assigned"))
    k = 0
    fk = 0
    for s8 in iana:
        if s8.registry is None:
            continue
        lo, hi = s8.octet << 24, (s8.octet << 24) | 0xFFFFFF
        p = lo
        pieces: list[tuple[int, int]] = []
        while k < len(used) and used[k][1] < lo:
            k += 1
        while k < len(used) and used[k][0] <= hi:
            if used[k][0] > p:
                pieces.append((p, used[k][0] - 1))
            p = max(p, used[k][1] + 1)
            k += 1
        if p <= hi:
            pieces.append((p, hi))
        # split each free piece by which registry lists it as available/reserved
        for a, b in (part for piece in pieces for part in _not_special(*piece)):
            q = a
            while fk < len(free_reg_by_range) and free_reg_by_range[fk][1] < a:
                fk += 1
            j = fk
            cur: list[tuple[int, int, int]] = []
            while j < len(free_reg_by_range) and free_reg_by_range[j][0] <= b:
                fs, fe, fr = free_reg_by_range[j]
                fs, fe = max(fs, a), min(fe, b)
                if fs > q:
                    cur.append((q, fs - 1, REG_INDEX[s8.registry]))
                cur.append((fs, fe, REG_INDEX[fr]))
                q = fe + 1
                j += 1
            if q <= b:
                cur.append((q, b, REG_INDEX[s8.registry]))
            for run in cur:  # merge neighbours of the same registry
                if out and out[-1][2] == run[2] and out[-1][1] + 1 == run[0]:
                    out[-1] = (out[-1][0], run[1], run[2])
                else:
                    out.append(run)
    return out


def build_world(seed: int, ranges: Iterable[tuple[int, int]] | None) -> World:
    """All top-level objects everywhere; generated sub-objects under delegations touching ranges.

    ranges=None generates under every delegation (the `full` scenario).
    """
    iana = data.load_iana()
    rl = sorted(ranges) if ranges is not None else None
    starts = [r[0] for r in rl] if rl is not None else []

    def touches_any(a: int, b: int) -> bool:
        if rl is None:
            return True
        k = bisect.bisect_right(starts, b)
        return any(rl[j][1] >= a for j in range(max(0, k - 64), k))

    w = World(seed)
    gen = _Gen(w, seed)
    for d in data.load_delegations():
        if d.status not in ("allocated", "assigned"):
            continue
        legacy8 = iana[d.start >> 24].legacy
        reg = REG_INDEX[d.registry]
        org = int(hashlib.blake2b(d.opaque.encode() or repr(d.start).encode(),
                                  digest_size=4).hexdigest(), 16)
        date = d.date or UNDATED
        obj = w.add(d.start, d.end, -1, reg, _top_type(d, legacy8), w.cc_index(d.cc), date, 0,
                    org)
        if touches_any(d.start, d.end):
            gen.subtree(obj, _rng(seed, d.start, reg), STYLES[d.registry], reg)
    for a, b, reg in _free_runs():
        if reg == REG_INDEX["lacnic"]:
            pieces = [(x, x + (1 << (32 - ln)) - 1) for x, ln in cidr_blocks(a, b)]
        else:
            pieces = [(a, b)]
        for x, y in pieces:
            w.add(x, y, -1, reg, 0, w.cc_index("ZZ"), 0, 0, 0)
    w.build_index()
    return w


@cache
def world_for(seed: int, ranges_key: tuple[tuple[int, int], ...] | None, name: str) -> World:
    """The world of a scenario, cached on disk in the cache dir (compressed arrays)."""
    key = hashlib.sha1(repr((MODEL_VERSION, seed, ranges_key)).encode()).hexdigest()[:16]
    path = data.cache_dir() / "sim-worlds" / f"{name}-{seed}-{key}.bin"
    if path.is_file():
        try:
            return World.loads(path.read_bytes())
        except Exception:  # a damaged cache file is rebuilt
            path.unlink(missing_ok=True)
    w = build_world(seed, ranges_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    data.prune_other_versions(path, f"{name}-{seed}", key)  # worlds of older model versions
    tmp = Path(f"{path}.{time.time_ns()}.tmp")
    tmp.write_bytes(w.dumps())
    tmp.replace(path)
    return w


def findable(world: World, ranges: Iterable[tuple[int, int]]) -> dict[int, int]:
    """Objects that are the most specific answer for some address of ranges -> address count, in
    the order the ranges' segments first name them. Over the index's arrays at once (the whole of
    IPv4 has millions of segments), the same sums `segments` gives one by one."""
    ss = np.frombuffer(world.seg_start, np.uint32).astype(np.int64)
    so = np.frombuffer(world.seg_obj, np.int32)
    nxt = np.append(ss[1:] - 1, 0xFFFFFFFF)  # each segment's last address
    objs, sizes = [], []
    for first, last in ranges:
        k0 = max(int(np.searchsorted(ss, first, "right")) - 1, 0)
        k1 = int(np.searchsorted(ss, last, "right"))
        objs.append(so[k0:k1])
        sizes.append(np.minimum(nxt[k0:k1], last) - np.maximum(ss[k0:k1], first) + 1)
    obj = np.concatenate(objs) if objs else np.empty(0, np.int32)
    size = np.concatenate(sizes) if sizes else np.empty(0, np.int64)
    keep = obj >= 0
    obj, size = obj[keep], size[keep]
    uniq, first_at, inverse = np.unique(obj, return_index=True, return_inverse=True)
    total = np.bincount(inverse, weights=size, minlength=len(uniq))  # float64: exact below 2**53
    order = np.argsort(first_at, kind="stable")
    return dict(zip(uniq[order].tolist(), total[order].astype(np.int64).tolist(), strict=True))
