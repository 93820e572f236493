"""Answers asked once per key (`registry.once.Once`): shared while in flight, kept as values after."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import pytest

from whoiscrawl.ratelimit import MemoryRateLimiter
from whoiscrawl.registry import RegistryClient
from whoiscrawl.registry.once import Once
from whoiscrawl.space import Bootstrap


async def test_concurrent_callers_share_one_request_and_later_ones_its_value():
    asked: list[str] = []
    release = asyncio.Event()

    async def ask() -> str:
        asked.append("x")
        await release.wait()
        return "answer"

    once: Once[str, str] = Once()
    waiting = [asyncio.create_task(once.get("k", ask)) for _ in range(3)]
    await asyncio.sleep(0)
    assert once.asked("k") and not once.asked("other")
    release.set()
    assert await asyncio.gather(*waiting) == ["answer"] * 3
    assert await once.get("k", ask) == "answer" and asked == ["x"]


async def test_a_request_that_failed_is_asked_again_and_one_caller_gone_leaves_the_others_theirs():
    calls = 0

    async def ask() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("refused")
        await asyncio.sleep(0.01)
        return calls

    once: Once[str, int] = Once()
    with pytest.raises(OSError):
        await once.get("k", ask)
    assert not once.asked("k")
    first, second = asyncio.create_task(once.get("k", ask)), asyncio.create_task(once.get("k", ask))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == 2 and await once.get("k", ask) == 2


async def test_a_request_whose_callers_are_all_gone_is_cancelled_not_sent():
    """A fleet worker whose batch of the fill moved to another worker had its contacts' requests go
    on without anyone waiting, each asked again by the batch's new owner (43 of `standard`'s 389
    LACNIC contacts asked twice): the last caller gone now takes the request with it."""
    started, finished = asyncio.Event(), []

    async def ask() -> str:
        started.set()
        await asyncio.sleep(0.2)  # waiting for the registry's permit
        finished.append("sent")
        return "answer"

    once: Once[str, str] = Once()
    first, second = asyncio.create_task(once.get("k", ask)), asyncio.create_task(once.get("k", ask))
    await started.wait()
    first.cancel()
    await asyncio.sleep(0)
    second.cancel()
    await asyncio.gather(first, second, return_exceptions=True)
    await asyncio.sleep(0.3)
    assert finished == [] and not once.asked("k")  # not sent; the next caller asks again
    assert await once.get("k", ask) == "answer" and finished == ["sent"]


async def test_a_client_keeps_each_contact_asked_as_its_addresses_not_as_its_request():
    # the LACNIC fill asks every distinct abuse contact once (256k in `full`); what the client keeps
    # of each answered one must be its addresses: finished tasks cost ~1 kB each (~300 MB at full)
    client = RegistryClient(Bootstrap((), (), {}), MemoryRateLimiter({}))  # no RDAP base: no request
    contacts = 20_000
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(contacts):
            emails, cost = await client.contact_emails("lacnic", f"C{n}-LACNIC")
            assert emails == [] and cost.lookups == 0
        gc.collect()
        per_contact = (tracemalloc.get_traced_memory()[0] - before) / contacts
    finally:
        tracemalloc.stop()
        await client.close()
    assert per_contact < 400, f"{per_contact:.0f} bytes kept a contact"
