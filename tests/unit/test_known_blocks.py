"""The in-process interval index answers 'inside a known leaf?' across merges and nesting."""

from __future__ import annotations

import random
import tracemalloc

from whoiscrawl.blocks import KnownBlocks


def test_lookup_add_and_nesting():
    idx = KnownBlocks()
    assert idx.add(100, 199, True)
    assert not idx.add(120, 130, True)  # inside a known leaf: nothing new
    assert idx.terminal_end(150) == 199
    assert idx.terminal_end(99) is None and idx.terminal_end(200) is None
    assert idx.add(0, 999, True)  # a larger leaf swallows the smaller one
    assert idx.terminal_end(500) == 999
    assert idx.add(5000, 9000, False) and not idx.add(5000, 9000, False)
    assert idx.terminal_end(6000) is None  # parents are remembered, never skipped
    assert idx.knows(5000, 9000) and idx.knows(100, 199) and not idx.knows(10_000, 10_001)


def test_matches_brute_force_across_merges(monkeypatch):
    monkeypatch.setattr(KnownBlocks, "MERGE_AT", 64)
    rng = random.Random(7)
    idx = KnownBlocks()
    blocks = []
    for i in range(2000):
        first = i * 1000 + rng.randrange(0, 500)
        last = first + rng.randrange(0, 400)
        blocks.append((first, last))
    rng.shuffle(blocks)
    for first, last in blocks:
        idx.add(first, last, True)
    for _ in range(5000):
        a = rng.randrange(0, 2_000_000)
        expected = next((last for first, last in blocks if first <= a <= last), None)
        assert idx.terminal_end(a) == expected


def test_a_merge_holds_a_few_bytes_a_known_leaf_beside_the_index():
    """A merge of the recent blocks into the arrays is done over arrays: it held a tuple of two ints
    a leaf (~120 bytes, every leaf known), which made `full`'s crawler peak grow with its map."""
    idx = KnownBlocks()
    n = 4 * KnownBlocks.MERGE_AT
    for i in range(n):  # disjoint /24s, merged in four times
        idx.add(i << 8, (i << 8) | 255, True)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n, n + KnownBlocks.MERGE_AT):  # the fifth merge, over 5 * MERGE_AT leaves
            idx.add(i << 8, (i << 8) | 255, True)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert len(idx) == n + KnownBlocks.MERGE_AT
    recent = 200 * KnownBlocks.MERGE_AT  # the sorted dict of recent blocks, however large the index
    assert (peak - recent) / len(idx) < 40, f"{peak / len(idx):.0f} bytes a leaf at the merge's peak"
    assert idx.terminal_end((n << 8) + 7) == (n << 8) | 255 and idx.terminal_end(0) == 255
