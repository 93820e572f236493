"""The local store fences a shard's walks as a fleet's store does: each walk by its own token."""

from __future__ import annotations

import pytest

from whoiscrawl.store import Lease, LeaseLost
from whoiscrawl.store.memory import MemoryStore
from whoiscrawl.strategy import Answer


async def test_an_older_walk_of_a_shard_taken_again_writes_no_checkpoint() -> None:
    """A shard taken again while its older walk winds down: the older walk's steps (its lane's last,
    its listing's) keep their blocks and counts and write no checkpoint over the newer walk's; the
    older walk leaving takes nothing of the newer one's. (The local store wrote every checkpoint.)"""
    store = MemoryStore()
    listing = Lease.listing(0, 65535)
    older = await store.take_shard("s", "me")
    await store.record_step("s", "100", None, walk=older)
    newer = await store.take_shard("s", "me")
    await store.record_step("s", "300", None, walk=newer)
    with pytest.raises(LeaseLost):  # the older lane's last step: its walk stops
        await store.record_step("s", "200", None, under=Lease.cell(256), walk=older)
    assert await store.record_step("s", "100", Answer(0, 255, True), lookups=0, under=listing, walk=older)
    store.leave_shard(older)
    await store.record_step("s", "400", None, walk=newer)
    assert await store.record_step("s", "100", Answer(256, 511, True), lookups=0, under=listing, walk=older)
    assert await store.cursor("s") == "400"
    assert (store.counters.blocks, store.counters.stale_writes_refused) == (2, 2)
    await store.shard_done("s", 65536)
    await store.record_step("s", "500", None, walk=newer)  # a step after the shard ended
    assert await store.cursor("s") is None
