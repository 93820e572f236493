"""Known blocks: the in-process interval index of leaves, and a block's entry in the Redis block log."""

from __future__ import annotations

from array import array
from bisect import bisect_right

import numpy as np
from sortedcontainers import SortedDict

from whoiscrawl.strategy import Answer


class KnownBlocks:
    """The in-process interval index of leaf blocks: is an address inside a known leaf? O(log n).

    A compact sorted pair of arrays (8 bytes a block) holds the bulk; new blocks go to a small
    sorted dict that is merged in when it grows, so inserts stay cheap and memory stays flat."""

    MERGE_AT = 65536

    def __init__(self) -> None:
        self._starts = array("I")
        self._ends = array("I")
        self._recent: SortedDict = SortedDict()
        self._parents: set[int] = set()  # non-leaf blocks seen, as first << 32 | last

    def __len__(self) -> int:
        return len(self._starts) + len(self._recent)

    def terminal_end(self, address: int) -> int | None:
        leaf = self.leaf(address)
        return None if leaf is None else leaf[1]

    def leaf(self, address: int) -> tuple[int, int] | None:
        """The outermost known leaf holding the address (blocks nest, so it ends last)."""
        best: tuple[int, int] | None = None
        i = bisect_right(self._starts, address) - 1
        if i >= 0 and self._ends[i] >= address:
            best = (self._starts[i], self._ends[i])
        recent = self._recent
        if recent:
            j = recent.bisect_right(address) - 1
            if j >= 0:
                first, end = recent.peekitem(j)
                if end >= address and (best is None or end > best[1]):
                    best = (first, end)
        return best

    def add(self, first: int, last: int, terminal: bool) -> bool:
        """Remember a block; True if it was not known before."""
        if not terminal:
            key = first << 32 | last
            if key in self._parents:
                return False
            self._parents.add(key)
            return True
        end = self.terminal_end(first)
        if end is not None and end >= last:
            return False  # inside a known leaf
        for start in list(self._recent.irange(first, last)):
            if self._recent[start] <= last:
                del self._recent[start]  # the new block holds it
        self._recent[first] = last
        if len(self._recent) >= self.MERGE_AT:
            self._merge()
        return True

    def _merge(self) -> None:
        # Over arrays, 4-8 bytes a leaf: a list of (first, last) tuples was ~235 bytes a leaf at its
        # peak, every known leaf each merge (`full`'s millions: hundreds of MB a merge).
        firsts = np.concatenate([np.frombuffer(self._starts, np.uint32),
                                 np.fromiter(self._recent.keys(), np.uint32, len(self._recent))])
        lasts = np.concatenate([np.frombuffer(self._ends, np.uint32),
                                np.fromiter(self._recent.values(), np.uint32, len(self._recent))])
        order = np.lexsort((np.uint32(0xFFFFFFFF) - lasts, firsts))  # by first, the outer block first
        firsts, lasts = firsts[order], lasts[order]
        # Blocks nest: one ending no later than a block before it lies inside it (the outer one answers).
        keep = np.ones(len(lasts), bool)
        keep[1:] = lasts[1:] > np.maximum.accumulate(lasts)[:-1]
        self._starts, self._ends = array("I", firsts[keep].tobytes()), array("I", lasts[keep].tobytes())
        self._recent.clear()

    def covers(self, first: int, last: int) -> bool:
        """Is first..last inside a known leaf?"""
        end = self.terminal_end(first)
        return end is not None and end >= last

    def knows(self, first: int, last: int) -> bool:
        return self.covers(first, last) or (first << 32 | last) in self._parents


def encode_block(answer: Answer) -> str:
    """A block-log entry: `first:last:leaf`."""
    return f"{answer.first}:{answer.last}:{int(answer.terminal)}"


def decode_block(entry: bytes) -> tuple[int, int, int]:
    """(first, last, leaf) of a block-log entry."""
    first, last, terminal = (int(x) for x in entry.split(b":"))
    return first, last, terminal
