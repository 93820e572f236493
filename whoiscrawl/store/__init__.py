"""The store's interface: what a shard walk needs of it (Store), its leases and step counts; its homes are
`memory.py` (one process), `redis_blocks.py` (a fleet's, in Redis) and `redis_admin.py` (a crawl's Redis state
planned, rebuilt, deleted)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from whoiscrawl.blocks import KnownBlocks
from whoiscrawl.records import NetworkRecord, Progress
from whoiscrawl.strategy import Answer, worth_listing


def remember(index: KnownBlocks, answer: Answer | None) -> tuple[bool, bool]:
    """Add an answer to the index: (was the block known before, did the index change). A parent
    whose children are all listed becomes a leaf: known before, and still a change to share."""
    if answer is None:
        return False, False
    known = index.knows(answer.first, answer.last)
    return known, index.add(answer.first, answer.last, answer.terminal)


def resumed_block(record: NetworkRecord, resolution: int, leaf: bool = False) -> Answer:
    """A result record's block as a store resumed or rebuilt from results knows it: the one rule of
    a local resume and a fleet's rebuild. The results do not say which listings ended, so a network
    worth listing is a parent again (the lane that meets it next lists it again; a parent listed
    whole is the checkpoint's to say), unless `leaf`: its caller knows nothing inside needs asking
    (a network of a dump seeded whole)."""
    answer = Answer.of(record, resolution)
    if leaf or not worth_listing(record, resolution):
        return Answer(answer.first, answer.last, answer.terminal or leaf)
    # Maybe unlisted yet, or listed part way: a parent until a listing ends again.
    return Answer(answer.first, answer.last, False)


def step_counts(
    answer: Answer | None, known: bool, changed: bool, lookups: int, rate_limited: int, errors: int
) -> dict[str, int]:
    """What one step of a walk adds to the crawl's counters: a block is new if the index changed
    and did not know it; a leaf answered again is a wasted lookup."""
    return {
        "lookups": lookups,
        "rate_limited": rate_limited,
        "errors": errors,
        "blocks": int(changed and not known),
        "wasted": int(answer is not None and answer.terminal and not changed),
    }


# Claims on a cell and on a listing are leases their owner renews while it works (every third of
# one); one whose owner died lapses within seconds, and whoever meets the cell or parent next takes
# it over.
LEASE_S = 12.0
# The rebuild's lease is shorter: while it is held every worker's writes wait, so a rebuilder killed
# mid-way must not stop the fleet for a claim's 12 s (it did, in a chaos run). Renewed every second
# by a thread of its own, which the rebuild's reads do not hold up.
REBUILD_LEASE_S = 3.0
ListingClaim = Literal["mine", "busy", "partly"]  # ours to list; another owner's now; settled, cut


@dataclass(frozen=True)
class Lease:
    """A lease a write is made under: a /24 cell's claim (`first` the cell) or a parent's listing."""

    kind: Literal["cell", "listing", "sources"]
    first: int
    last: int = 0

    @classmethod
    def cell(cls, address: int) -> Lease:
        return cls("cell", address >> 8)

    @classmethod
    def listing(cls, first: int, last: int) -> Lease:
        return cls("listing", first, last)

    @classmethod
    def sources(cls) -> Lease:
        return cls("sources", 0)


class LeaseLost(Exception):
    """A lease passed to another holder while we worked under it (we stalled past it): the work
    under it stops, and what it would have written is refused. `lease` None: the shard's walk."""

    def __init__(self, what: str, lease: Lease | None) -> None:
        super().__init__(f"lost the lease on {what}")
        self.lease = lease


class Store(Protocol):
    """What a shard walk needs from the store; in memory for one process, Redis for a fleet.

    A walk of a shard is fenced by its own token (`take_shard`; each take a new one, also when
    this process takes back a shard it walked before). Each write of the walk carries it (`walk`),
    so an older walk of the shard here is refused like another worker's; a write without one (an
    admin's, a test's) is not checked against the shard's owner.

    A probe whose answer waits for a listing before its step is written keeps that answer in the
    store (`keep_answer`, opaque text) until the step is written (`forget_answer`): a walk cut off
    meanwhile leaves the probe in its checkpoint, and the shard's next walk reads the answer
    (`kept_answer`) rather than ask the registry again."""

    index: KnownBlocks

    async def sync(self) -> None: ...
    async def take_shard(self, shard_id: str, owner: str) -> str: ...
    def leave_shard(self, walk: str) -> None: ...
    async def claim(self, address: int, owner: str) -> bool: ...
    async def renew_claim(self, address: int, owner: str) -> bool: ...
    async def release(self, address: int, owner: str) -> None: ...
    async def first_to_list(self, first: int, last: int, owner: str) -> ListingClaim: ...
    async def renew_listing(self, first: int, last: int, owner: str) -> bool: ...
    async def listed(self, first: int, last: int, owner: str, whole: bool | None) -> None: ...
    async def keep_answer(self, address: int, answer: str) -> None: ...
    async def kept_answer(self, address: int) -> str | None: ...
    async def forget_answer(self, address: int) -> None: ...
    async def cursor(self, shard_id: str) -> str | None: ...
    async def is_done(self, shard_id: str) -> bool: ...
    async def record_step(
        self,
        shard_id: str,
        checkpoint: str,
        answer: Answer | None,
        *,
        lookups: int = 1,
        rate_limited: int = 0,
        errors: int = 0,
        under: Lease | None = None,
        walk: str | None = None,
    ) -> bool: ...
    async def shard_done(self, shard_id: str, addresses: int) -> None: ...
    async def progress(self) -> Progress: ...


log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def renewing(
    renew: Callable[[], Awaitable[bool]], what: str, lease: Lease
) -> AsyncIterator[None]:
    """Keep a lease (a cell's claim, a listing's) while the block inside runs. A renewal that
    finds it another's (we stalled past it) stops the block at once: LeaseLost."""
    body = asyncio.current_task()
    lost = False

    async def keep() -> None:
        nonlocal lost
        while True:
            await asyncio.sleep(LEASE_S / 3)
            try:
                if not await renew():
                    lost = True
                    if body is not None:
                        body.cancel()
                    return
            except Exception as exc:  # a Redis hiccup: the next renewal may get through
                log.warning("renewing the lease on %s: %s", what, exc)

    keeper = asyncio.create_task(keep())
    try:
        yield
    except asyncio.CancelledError:
        if lost and body is not None and body.uncancel() == 0:  # ours alone, not the caller's
            raise LeaseLost(what, lease) from None
        raise
    finally:
        keeper.cancel()
