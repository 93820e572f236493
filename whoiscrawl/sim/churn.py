"""A world that changes by day: networks added, removed, re-assigned, split, merged, transferred
between holders and registries, holders renamed, abuse contacts changed (the model alone: the
servers and the published files read whichever day's world they are given).

Day N's world is day N-1's with one day of changes applied, each drawn from a generator seeded by
(seed, N), so a world is the same every time it is made. Changes touch only findable networks of
the scenario's ranges (a change no crawl of the scenario can see would count for nothing), at
least one of each kind a day.
"""

from __future__ import annotations

import datetime
import random
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from whoiscrawl import rirs
from whoiscrawl.ipv4 import cidr_blocks, ip_str
from whoiscrawl.sim.model import (
    ASSIGNMENT_TYPES,
    STYLES,
    T,
    World,
    _rng,
    findable,
)
from whoiscrawl.sim.render import org_name

FIRST_DAY = datetime.date(2018, 10, 13)  # day 0: the date of the real 2018 statistics
KINDS = ("added", "removed", "reassigned", "split", "merged", "transferred", "moved", "renamed", "abuse")


CHURN_VERSION = 2  # bump when a day's changes change: invalidates the cached files of later days


@dataclass(frozen=True)
class Churn:
    """Changes a day, each a share of the scenario's findable networks, or (`transferred`, `moved`)
    of its delegations; at least one of each kind. The defaults change about 1.3% of the networks
    a day."""

    added: float = 0.003  # a new assignment in free space of an allocation
    removed: float = 0.002  # an assignment returned (its parent answers its space again)
    reassigned: float = 0.002  # an assignment returned and made again to another holder
    split: float = 0.0015  # a network cut in two halves
    merged: float = 0.0015  # two neighbouring networks of one parent joined
    transferred: float = 0.002  # of delegations: one (and what its holder holds under it) to another holder
    moved: float = 0.0005  # of delegations: one transferred to another registry (inter-RIR transfer)
    renamed: float = 0.001  # a holder renamed (its handle stays)
    abuse: float = 0.001  # a holder's abuse contact replaced (a new role, a new mailbox)

    @classmethod
    def parse(cls, text: str) -> Churn:
        """`0.02` (every kind scaled so the total is 2%) or `added=0.01,removed=0.005` (those kinds)."""
        text = text.strip()
        try:
            if "=" not in text:
                total = float(text)
                scale = total / sum(asdict(cls()).values())
                return cls(**{k: v * scale for k, v in asdict(cls()).items()})
            pairs = dict(part.split("=", 1) for part in text.split(",") if part.strip())
            return cls(**{k.strip(): float(v) for k, v in pairs.items()})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"--churn {text!r}: give a share (0.02) or KIND=SHARE pairs, kinds "
                             f"{', '.join(KINDS)}") from exc


@dataclass(frozen=True)
class Change:
    """One change of a day, as the simulator made it (what a test compares a change feed with)."""

    day: int
    kind: str  # one of KINDS
    registry: str  # the registry now holding it (a moved delegation: its new registry)
    first: int
    last: int
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"day": self.day, "kind": self.kind, "registry": self.registry,
                "start_address": ip_str(self.first), "end_address": ip_str(self.last), "detail": self.detail}


def date_of(day: int) -> int:
    """Day N's date as the world writes dates (YYYYMMDD)."""
    d = FIRST_DAY + datetime.timedelta(days=day)
    return d.year * 10000 + d.month * 100 + d.day


def copy_world(w: World) -> World:
    """A copy whose arrays and overrides can change without touching w."""
    out = World(w.seed)
    for name in ("start", "end", "parent", "reg", "typ", "cc", "date", "depth", "org", "seg_start",
                 "seg_obj", "nchildren"):
        setattr(out, name, array(getattr(w, name).typecode, getattr(w, name)))
    out.ccs, out._ccidx = list(w.ccs), dict(w._ccidx)
    out.names, out.abuse, out.touched = dict(w.names), dict(w.abuse), dict(w.touched)
    return out


@dataclass
class _Day:
    """One day's changes being made on a copy of the world."""

    w: World
    day: int
    rng: random.Random
    intervals: list[tuple[int, int]]
    gone: set[int] = field(default_factory=set)
    used: set[int] = field(default_factory=set)  # objects changed today: one change each
    log: list[Change] = field(default_factory=list)

    @property
    def today(self) -> int:
        return date_of(self.day)

    def note(self, kind: str, i: int, detail: str = "") -> None:
        w = self.w
        self.log.append(Change(self.day, kind, w.registry(i), w.start[i], w.end[i], detail))

    def pick(self, pool: list[int], test: Callable[[int], bool], tries: int = 200) -> int:
        """A random object of pool passing test and not changed today, or -1."""
        for _ in range(tries if pool else 0):
            i = self.rng.choice(pool)
            if i not in self.used and test(i):
                self.used.add(i)
                return i
        return -1

    def leaf(self, i: int) -> bool:
        w = self.w
        return w.depth[i] >= 1 and w.nchildren[i] == 0 and i not in self.gone

    def new_org(self) -> int:
        return self.rng.getrandbits(30)

    # the kinds ------------------------------------------------------------------------
    def added(self, pool: list[int]) -> None:
        w = self.w
        i = self.pick(pool, lambda j: w.typ[j] not in ASSIGNMENT_TYPES and w.depth[j] < 4)
        if i < 0:
            return
        gaps = [(a, b) for lo, hi in self.intervals for a, b, o in w.segments(max(lo, w.start[i]),
                                                                                 min(hi, w.end[i])) if o == i]
        block = _aligned(gaps, self.rng)
        if block is None:
            return
        reg = w.registry(i)
        child = w.add(block[0], block[1], i, w.reg[i], T[STYLES[reg].child_assign], w.cc[i], self.today,
                      w.depth[i] + 1, self.new_org())
        self.used.add(child)
        self.note("added", child)

    def removed(self, pool: list[int]) -> None:
        i = self.pick(pool, self.leaf)
        if i >= 0:
            self.note("removed", i)
            self.gone.add(i)

    def reassigned(self, pool: list[int]) -> None:
        i = self.pick(pool, self.leaf)
        if i >= 0:
            self.w.org[i], self.w.date[i] = self.new_org(), self.today
            self.note("reassigned", i)

    def split(self, pool: list[int]) -> None:
        w = self.w
        i = self.pick(pool, lambda j: self.leaf(j) and len(cidr_blocks(w.start[j], w.end[j])) == 1
                      and w.end[j] - w.start[j] >= 15)
        if i < 0:
            return
        half = (w.end[i] - w.start[i] + 1) // 2
        self.note("split", i, f"into two /{33 - half.bit_length()}")  # the span it had: both halves
        end, w.end[i], w.date[i] = w.end[i], w.start[i] + half - 1, self.today
        twin = w.add(w.start[i] + half, end, w.parent[i], w.reg[i], w.typ[i], w.cc[i], self.today, w.depth[i],
                     self.new_org())
        self.used.add(twin)

    def merged(self, pool: list[int], after: dict[int, int]) -> None:
        w = self.w

        def joinable(j: int) -> bool:
            k = after.get(j, -1)
            union = cidr_blocks(w.start[j], w.end[k]) if k >= 0 else []
            return (self.leaf(j) and k >= 0 and k not in self.used and self.leaf(k) and w.reg[k] == w.reg[j]
                    and (len(union) == 1 or w.registry(j) != "lacnic"))

        i = self.pick(pool, joinable)
        if i >= 0:
            k = after[i]
            self.used.add(k)
            w.end[i], w.date[i] = w.end[k], self.today
            self.gone.add(k)
            self.note("merged", i)

    def transferred(self, pool: list[int]) -> None:
        """A delegation to another holder: it and what its holder held under it, dated today (the
        statistics' row changes)."""
        w = self.w
        i = self.pick(pool, lambda j: w.depth[j] == 0)
        if i < 0:
            return
        old, new = w.org[i], self.new_org()
        for j in self._subtree(i):
            if w.org[j] == old:
                w.org[j] = new
        w.date[i] = self.today
        self.note("transferred", i)

    def moved(self, pool: list[int]) -> None:
        """A delegation to another registry (whose status words it now carries), with its leaves."""
        w = self.w
        i = self.pick(pool, lambda j: w.depth[j] == 0 and w.nchildren[j] <= 64
                      and all(w.depth[k] <= 1 for k in self._subtree(j)))
        if i < 0:
            return
        was = w.registry(i)
        to = self.rng.choice([r for r in rirs.REGISTRIES if r != was])
        style, assignment = STYLES[to], w.typ[i] in ASSIGNMENT_TYPES
        for j in self._subtree(i):
            w.reg[j] = rirs.REGISTRIES.index(to)
            w.typ[j] = T[style.child_assign]
        holds = len(self._subtree(i)) > 1  # an assignment the new registry lets hold none: an allocation
        keep = assignment and not (holds and rirs.is_childless(to, style.top_assign))
        w.typ[i] = T[style.top_assign if keep else style.top_alloc]
        w.date[i] = self.today
        self.note("moved", i, f"from {was}")

    def renamed(self, pool: list[int]) -> None:
        w = self.w
        i = self.pick(pool, lambda j: True)
        if i >= 0:
            org = w.org[i]
            w.names[org] = org_name(self.new_org(), w.registry(i) == "lacnic")
            w.touched[org] = self.today
            self._holds(pool, org, "renamed", w.names[org])

    def abuse(self, pool: list[int]) -> None:
        """The abuse contact of a network's contact holder replaced (`World.contact_holder`: at
        LACNIC perhaps the ISP that registered it), noted at every network naming it."""
        w = self.w
        i = self.pick(pool, lambda j: True)
        if i >= 0:
            org = w.org[w.contact_holder(i)]
            w.abuse[org] = w.abuse.get(org, 0) + 1
            w.touched[org] = self.today
            self._holds(pool, org, "abuse", of=lambda j: w.org[w.contact_holder(j)])

    def _holds(self, pool: list[int], org: int, kind: str, detail: str = "",
               of: Callable[[int], int] | None = None) -> None:
        """A change of a holder noted at each network it holds (a holder may hold several), or
        with `of` at each whose `of(network)` it is."""
        of = of or self.w.org.__getitem__
        for j in pool:
            if of(j) == org and j not in self.gone:
                self.note(kind, j, detail)

    def _subtree(self, i: int) -> list[int]:
        """i and every object nested in it (objects are sorted parents first, by start)."""
        w, out, j = self.w, [i], i + 1
        while j < len(w.start) and w.start[j] <= w.end[i]:
            if j not in self.gone:
                out.append(j)
            j += 1
        return out


def _aligned(gaps: list[tuple[int, int]], rng: random.Random) -> tuple[int, int] | None:
    """An aligned block (a /24, else the largest power of two of at least 8 addresses that fits) in
    one of the gaps, or None."""
    rng.shuffle(gaps)
    for a, b in gaps:
        for first, plen in cidr_blocks(a, b):
            size = 1 << (32 - plen)
            if size >= 8:
                size = min(size, 256)
                return first, first + size - 1
    return None


def advance(w: World, day: int, churn: Churn, intervals: list[tuple[int, int]]) -> tuple[World, list[Change]]:
    """Day `day`'s world from the day before's (w is not changed), and the day's changes."""
    d = _Day(copy_world(w), day, _rng(w.seed, 0x5EED, day), intervals)
    truth = findable(d.w, intervals)
    pool = sorted(i for i in truth if not d.w.is_placeholder(i))
    after = _next_siblings(d.w, pool)
    delegations = sum(1 for i in pool if d.w.depth[i] == 0)
    for kind in KINDS:
        share = len(pool) if kind not in ("transferred", "moved") else delegations
        for _ in range(max(1, round(getattr(churn, kind) * share))):
            if kind == "merged":
                d.merged(pool, after)
            else:
                getattr(d, kind)(pool)
    _compact(d.w, d.gone)
    d.w.build_index()
    return d.w, d.log


def _next_siblings(w: World, pool: list[int]) -> dict[int, int]:
    """For each object, its sibling starting right after it (for merges)."""
    by_start = {(w.parent[i], w.start[i]): i for i in pool}
    return {i: k for i in pool if (k := by_start.get((w.parent[i], w.end[i] + 1), -1)) >= 0}


def _compact(w: World, gone: set[int]) -> None:
    """Drop the objects in gone (leaves: nothing points at them) and renumber the parents."""
    if not gone:
        return
    keep = [i for i in range(len(w.start)) if i not in gone]
    remap = array("i", [-1]) * len(w.start)
    for new, old in enumerate(keep):
        remap[old] = new
    for name in ("start", "end", "reg", "typ", "cc", "date", "depth", "org"):
        arr = getattr(w, name)
        setattr(w, name, array(arr.typecode, (arr[i] for i in keep)))
    w.parent = array("i", (remap[p] if (p := w.parent[i]) >= 0 else -1 for i in keep))

