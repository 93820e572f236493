"""The in-process interval index answers 'inside a known leaf?' across merges and nesting."""

from __future__ import annotations

import random

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
