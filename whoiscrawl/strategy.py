"""Sweep and sample: given what is known, the next address a shard's walk probes (pure logic)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from whoiscrawl.records import Shard


class KnownIndex(Protocol):
    def terminal_end(self, address: int) -> int | None:
        """The last address of a known leaf block holding `address`, or None."""
        ...


@dataclass(frozen=True)
class Answer:
    """What a lookup taught the walk: the most specific network holding the probed address."""

    first: int
    last: int
    terminal: bool  # a leaf at this resolution: nothing worth probing inside it


def is_terminal(first: int, last: int, net_type: str | None, status: Sequence[str], resolution: int) -> bool:
    """Does a returned network end the search inside it?

    Assignments (RIPE/APNIC/AFRINIC/LACNIC "ASSIGNED ...", ARIN "DIRECT ASSIGNMENT"/"REASSIGNMENT")
    hold end users, and a placeholder for unallocated space ("reserved") holds nothing: both are
    leaves. An allocation may hold children in any part of it, so its space must still be probed;
    so must a network we cannot classify. Anything no larger than one grid cell is a leaf at this
    resolution."""
    if last - first + 1 <= 1 << (32 - resolution):
        return True
    if any(s.lower() in ("reserved", "available") for s in status):
        return True
    word = (net_type or "").upper().strip()
    return word.startswith("ASSIGNED") or word.endswith("ASSIGNMENT")


@dataclass
class SweepWalk:
    """Walk a shard in address order, one lookup per block.

    After a leaf, jump past its end (and probe the very next address, where a neighbour often
    starts). After a parent, do NOT jump past its end: children may follow any gap. Probe the
    parent's unknown space on the resolution grid instead, so every block at least one grid cell
    large is found."""

    shard: Shard
    cursor: int = -1

    def __post_init__(self) -> None:
        if self.cursor < 0:
            self.cursor = self.shard.first

    @property
    def cell(self) -> int:
        return 1 << (32 - self.shard.resolution)

    def next_address(self, known: KnownIndex) -> int | None:
        address = self.cursor
        while address <= self.shard.last:
            end = known.terminal_end(address)
            if end is None:
                self.cursor = address
                return address
            address = end + 1
        self.cursor = address
        return None

    def observe(self, address: int, answer: Answer) -> None:
        if answer.terminal:
            self.cursor = max(self.cursor, answer.last + 1)
        else:
            self.cursor = max(self.cursor, (address // self.cell + 1) * self.cell)


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

    def observe(self, address: int, answer: Answer) -> None:
        self._position += 1
        self.cursor = (
            self.addresses[self._position] if self._position < len(self.addresses) else self.shard.last + 1
        )


Walk = SweepWalk | SampleWalk


def walk_for(shard: Shard, cursor: int | None = None) -> Walk:
    """The walk a shard asks for, resumed at a checkpointed cursor if there is one."""
    from whoiscrawl.space import sample_addresses

    start = -1 if cursor is None else cursor
    if shard.strategy == "sample":
        return SampleWalk(shard, sample_addresses(shard), start)
    return SweepWalk(shard, start)
