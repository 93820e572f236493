"""Sweep and sample: given what is known, the next address a shard's walk probes (pure logic)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from whoiscrawl import rirs
from whoiscrawl.records import NetworkRecord, Shard


class KnownIndex(Protocol):
    def terminal_end(self, address: int) -> int | None:
        """The last address of a known leaf block holding `address`, or None."""
        ...

    def leaf(self, address: int) -> tuple[int, int] | None:
        """The outermost known leaf block holding `address` as (first, last), or None."""
        ...


@dataclass(frozen=True)
class Answer:
    """What a lookup taught the walk: the most specific network holding the probed address."""

    first: int
    last: int
    terminal: bool  # a leaf at this resolution: nothing worth probing inside it

    @classmethod
    def of(cls, record: NetworkRecord, resolution: int) -> Answer:
        first, last = record.first, record.last
        return cls(first, last, is_terminal(first, last, record.type, record.status, resolution))


def is_terminal(first: int, last: int, net_type: str | None, status: Sequence[str], resolution: int) -> bool:
    """Does a returned network end the search inside it?

    Assignments (RIPE/APNIC/AFRINIC/LACNIC "ASSIGNED ...", ARIN "DIRECT ASSIGNMENT"/"REASSIGNMENT",
    or "Reassigned" in ARIN's WHOIS) hold end users, and a placeholder for unallocated space
    (status "reserved", type "UNALLOCATED") holds nothing: both are leaves. An allocation may hold
    children in any part of it, so its space must still be probed; so must a network we cannot
    classify. Anything no larger than one grid cell is a leaf at this resolution."""
    if last - first + 1 <= 1 << (32 - resolution):
        return True
    return rirs.is_free(net_type, status) or rirs.is_assignment(net_type)


def worth_listing(record: NetworkRecord, resolution: int) -> bool:
    """Is a network worth asking its registry for its children (one request, RFC 9910 rdap-down)?

    Every allocation, whatever its size: a small one is still handed out further. An assignment
    only from one grid cell up: end users sub-assign inside those, rarely inside smaller ones;
    never one whose registry refuses children under its status (RIPE NCC's ASSIGNED PA: the
    listing would answer 404). Never a placeholder for free space."""
    if rirs.is_free(record.type, record.status) or rirs.is_childless(record.registry, record.type):
        return False
    return not rirs.is_assignment(record.type) or record.last - record.first + 1 >= 1 << (32 - resolution)


@dataclass
class SweepWalk:
    """Walk a shard in address order, one lookup per block.

    After a leaf, jump past its end and probe the very next address, where a neighbour often
    starts; and if the space just before the leaf was skipped, probe backwards from its start too.
    After a parent, do NOT jump past its end: children may follow any gap. Probe the parent's
    unknown space on the resolution grid instead, so every block at least one grid cell large is
    found. The walk's whole state (forward cursor, resolved space, pending backward probes) is
    its checkpoint: a walk resumed from it probes what the interrupted one would have."""

    shard: Shard
    cursor: int = -1  # the next address of the forward walk
    _resolved_upto: int = -1  # every address up to here has its most specific block known or probed
    # Backward probes: (address just before a leaf, the end of the resolved space it may go down to).
    # The last one stays on the stack while it is out, so a checkpoint taken then still holds it.
    _backward: list[tuple[int, int]] = field(default_factory=list)
    _chain_floor: int | None = None  # set while a backward probe is out

    def __post_init__(self) -> None:
        if self.cursor < 0:
            self.cursor = self.shard.first
        if self._resolved_upto < 0:
            self._resolved_upto = self.cursor - 1

    @property
    def cell(self) -> int:
        return 1 << (32 - self.shard.resolution)

    def checkpoint(self) -> str:
        """The walk's state as text: `cursor/resolved/address:floor,...`."""
        backward = ",".join(f"{a}:{f}" for a, f in self._backward)
        return f"{self.cursor}/{self._resolved_upto}/{backward}"

    @classmethod
    def resumed(cls, shard: Shard, checkpoint: str) -> SweepWalk:
        """The walk a checkpoint saved (a bare number is a cursor alone, as older versions saved)."""
        cursor, _, rest = checkpoint.partition("/")
        resolved, _, backward = rest.partition("/")
        walk = cls(shard, int(cursor), _resolved_upto=int(resolved) if resolved else -1)
        pending = (p.partition(":") for p in backward.split(",") if p)
        walk._backward = [(int(a), int(f)) for a, _, f in pending]
        return walk

    def next_address(self, known: KnownIndex) -> int | None:
        while True:
            while self._backward:
                address, floor = self._backward[-1]
                leaf = known.leaf(address)
                if leaf is None:
                    self._chain_floor = floor
                    return address
                self._backward.pop()  # found meanwhile (by any walk): go on below it, as after our own probe
                self._push_backward(leaf[0], floor)
            self._chain_floor = None
            if self.cursor > self.shard.last:
                return None
            leaf = known.leaf(self.cursor)
            if leaf is None:
                return self.cursor
            # Found by another walk (a lister, or this shard's last owner): skipped as if we had
            # probed it, backward probes into the unprobed space before it included.
            self.observe(self.cursor, Answer(leaf[0], leaf[1], True))

    def _push_backward(self, leaf_first: int, floor: int) -> None:
        if floor < leaf_first - 1 and leaf_first - 1 >= self.shard.first:
            self._backward.append((leaf_first - 1, floor))  # skipped space ends where this leaf starts

    def skip(self, address: int) -> None:
        """No answer for the address (a failure, or nothing registered): end a backward chain,
        or move the forward walk on by one grid cell."""
        if self._chain_floor is not None:
            self._end_backward_probe()
            return
        self.cursor = max(self.cursor, (address // self.cell + 1) * self.cell)
        self._resolved_upto = max(self._resolved_upto, address)

    def _end_backward_probe(self) -> int:
        assert self._chain_floor is not None and self._backward
        floor = self._chain_floor
        self._backward.pop()
        self._chain_floor = None
        return floor

    def observe(self, address: int, answer: Answer) -> None:
        if self._chain_floor is not None:
            floor = self._end_backward_probe()
            if answer.terminal:
                self._push_backward(answer.first, floor)
            return  # the forward walk stays where it was
        floor = self._resolved_upto
        if answer.terminal:
            self._push_backward(answer.first, floor)
            self.cursor = max(self.cursor, answer.last + 1)
            self._resolved_upto = max(floor, answer.last)
        else:
            self.cursor = max(self.cursor, (address // self.cell + 1) * self.cell)
            self._resolved_upto = max(floor, address)


@dataclass
class SampleWalk:
    """The 2016 method: fixed sample addresses, each looked up unless a known leaf holds it."""

    shard: Shard
    addresses: list[int]
    cursor: int = -1  # index into addresses, as an address for checkpoints: the next sample to try
    _position: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.cursor >= 0:
            self._position = next(
                (i for i, a in enumerate(self.addresses) if a >= self.cursor), len(self.addresses)
            )
        self.cursor = (
            self.addresses[self._position] if self._position < len(self.addresses) else (self.shard.last + 1)
        )

    def next_address(self, known: KnownIndex) -> int | None:
        while self._position < len(self.addresses):
            address = self.addresses[self._position]
            self.cursor = address
            if known.terminal_end(address) is None:
                return address
            self._position += 1
        self.cursor = self.shard.last + 1
        return None

    def checkpoint(self) -> str:
        return str(self.cursor)

    def skip(self, address: int) -> None:
        self.observe(address, Answer(address, address, True))

    def observe(self, address: int, answer: Answer) -> None:
        self._position += 1
        self.cursor = (
            self.addresses[self._position] if self._position < len(self.addresses) else self.shard.last + 1
        )


def sample_addresses(shard: Shard) -> list[int]:
    """The sample strategy's probes: the 2016 method (hosts .1/.65/.129/.193 of every 12th /24)
    or, when the shard asks for N samples, N addresses spread evenly over it."""
    if shard.samples:
        span = shard.last - shard.first + 1
        step = max(1, span // shard.samples)
        return [shard.first + min(span - 1, i * step + step // 2) for i in range(min(shard.samples, span))]
    probes = []
    for block in range(shard.first >> 8, (shard.last >> 8) + 1):
        if block % 12 == 0:
            probes += [a for h in (1, 65, 129, 193) if shard.first <= (a := (block << 8) + h) <= shard.last]
    return probes


Walk = SweepWalk | SampleWalk


def walk_for(shard: Shard, checkpoint: str | None = None) -> Walk:
    """The walk a shard asks for, resumed from its checkpoint if there is one."""
    if shard.strategy == "sample":
        start = -1 if checkpoint is None else int(checkpoint.partition("/")[0])
        return SampleWalk(shard, sample_addresses(shard), start)
    return SweepWalk(shard) if checkpoint is None else SweepWalk.resumed(shard, checkpoint)
