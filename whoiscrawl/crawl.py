"""The crawl loop: walk shards, look addresses up, record what is found (local mode and fleet alike)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from netaddr import IPAddress

from whoiscrawl import metrics
from whoiscrawl.records import NetworkRecord, Shard
from whoiscrawl.registry import LookupFailed, LookupResult, RegistryClient
from whoiscrawl.space import Scope
from whoiscrawl.store import Store
from whoiscrawl.strategy import Answer, Walk, walk_for, worth_listing

log = logging.getLogger(__name__)


class ResultSink(Protocol):
    async def emit(self, record: NetworkRecord) -> None:
        """Return once the record is durable (broker-acknowledged, or written to the file)."""
        ...


@dataclass
class Crawler:
    """Walks shards one lookup at a time; many shards run at once, each in its own lane."""

    store: Store
    sink: ResultSink
    client: RegistryClient
    owner: str  # this process, for claims
    crawl: str = "local"
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    lookups_by_registry: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    failure_pauses: tuple[float, ...] = (2.0, 10.0)  # before giving up on an address
    list_children: bool = True  # follow registries' rdap-down links instead of probing parents' gaps
    scope: Scope | None = None  # listed children outside it are not kept (None: keep all)
    _listings: dict[tuple[int, int], asyncio.Future[bool]] = field(default_factory=dict)

    async def run_shard(self, shard: Shard) -> bool:
        """Walk a shard to its end (True) or until asked to stop (False; its cursor is checkpointed)."""
        if await self.store.is_done(shard.shard_id):
            return True
        walk = walk_for(shard, await self.store.cursor(shard.shard_id))
        metrics.ACTIVE_SHARDS.inc()
        try:
            while not self.stopping.is_set():
                address = walk.next_address(self.store.index)
                if address is None:
                    await self.store.shard_done(shard.shard_id, shard.last - shard.first + 1)
                    metrics.SHARDS.inc()
                    metrics.SHARD_ADDRESSES.inc(shard.last - shard.first + 1)
                    return True
                await self._probe(shard, walk, address)
            return False
        finally:
            metrics.ACTIVE_SHARDS.dec()

    async def _probe(self, shard: Shard, walk: Walk, address: int) -> None:
        if not await self.store.claim(address, self.owner):
            await asyncio.sleep(0.02)  # another worker is looking up this cell; its block will appear
            await self.store.sync()
            return
        try:
            await self.store.sync()  # found by someone else since we looked?
            if self.store.index.terminal_end(address) is not None:
                metrics.KNOWN_SKIPS.inc()
                return
            metrics.IN_FLIGHT.inc()
            try:
                result = await self._lookup_patiently(address)
            except LookupFailed as exc:
                await self._failed(shard, walk, address, str(exc))
                return
            finally:
                metrics.IN_FLIGHT.dec()
            self.lookups_by_registry[result.registry] += result.lookups
            record = result.record
            if record is None:  # the registry holds nothing here
                walk.skip(address)
                await self.store.record_step(
                    shard.shard_id,
                    walk.cursor,
                    None,
                    lookups=result.lookups,
                    rate_limited=result.rate_limited,
                )
                return
            answer = Answer.of(record, shard.resolution)
            if not await self._keep(record, answer) and answer.terminal:
                metrics.WASTED.inc()
            listable = (  # the sample strategy stays the 2016 method: no listings
                self.list_children
                and shard.strategy == "sweep"
                and result.down_url
                and worth_listing(record, shard.resolution)
            )
            listed = listable and await self._list(shard, walk.cursor, record, str(result.down_url))
            if listed:
                answer = Answer(answer.first, answer.last, True)  # every child known: a leaf now
            walk.observe(address, answer)
            # A parent another lane listed is stored already: this lookup found it, wasted nothing.
            stored = None if listed and self.store.index.covers(answer.first, answer.last) else answer
            await self.store.record_step(
                shard.shard_id, walk.cursor, stored, lookups=result.lookups, rate_limited=result.rate_limited
            )
        finally:
            await self.store.release(address, self.owner)

    async def _keep(self, record: NetworkRecord, answer: Answer) -> bool:
        """Send a newly found block to the sink (durable before the store or a cursor moves past
        it); False if it was known already."""
        if self.store.index.knows(answer.first, answer.last):
            return False
        record.crawl = self.crawl
        await self.sink.emit(record)
        metrics.BLOCKS.labels(record.registry).inc()
        return True

    async def _list(self, shard: Shard, cursor: int, parent: NetworkRecord, url: str) -> bool:
        """Ask the registry for a parent's children (RFC 9910 rdap-down), and for theirs in turn.

        True when every descendant is now known, so nothing inside the parent needs probing. A
        child that is a parent itself and was listed whole is stored as a leaf, so no walk probes
        inside it. False when the list (or a part of a long one) could not be had, or another worker
        lists this parent: the walk's grid then covers what no list did. Lanes of this process that meet
        a parent being listed wait for that listing rather than probe inside it."""
        key = (parent.first, parent.last)
        listing = self._listings.get(key)
        if listing is None:
            if not await self.store.first_to_list(parent.first, parent.last, self.owner):
                return False
            listing = asyncio.ensure_future(self._list_now(shard, cursor, parent, url))
            self._listings[key] = listing
            listing.add_done_callback(lambda _: self._listings.pop(key, None))
        return await asyncio.shield(listing)

    async def _list_now(self, shard: Shard, cursor: int, parent: NetworkRecord, url: str) -> bool:
        # A long list is fetched page by page up to the parent's last crawled address, not beyond.
        until = self.scope.last_within(parent.first, parent.last) if self.scope else None
        listing = await self.client.children(parent.registry, url, until or parent.last, parent.handle)
        self.lookups_by_registry[parent.registry] += listing.lookups
        await self.store.record_step(
            shard.shard_id, cursor, None, lookups=listing.lookups, rate_limited=listing.rate_limited
        )
        whole = listing.complete
        for child, child_url in listing.children:
            if self.scope is not None and not self.scope.overlaps(child.first, child.last):
                continue  # a sibling of the crawled space, not asked for
            answer = Answer.of(child, shard.resolution)
            await self._keep(child, answer)
            listable = child_url and worth_listing(child, shard.resolution)
            if listable and await self._list(shard, cursor, child, str(child_url)):
                answer = Answer(answer.first, answer.last, True)
            whole = whole and answer.terminal
            if not self.store.index.covers(answer.first, answer.last):  # nothing new to share otherwise
                await self.store.record_step(shard.shard_id, cursor, answer, lookups=0)
        if not whole:
            await self.store.listed_partly(parent.first, parent.last)
        return whole

    async def _lookup_patiently(self, address: int) -> LookupResult:
        """A lookup that failed every way (RDAP retries, WHOIS) is tried again after a pause:
        registries have bad minutes, and an address given up on is a block possibly lost."""
        for pause in self.failure_pauses:
            try:
                return await self.client.lookup(address)
            except LookupFailed as exc:
                log.info("%s: %s; trying again in %.0fs", IPAddress(address), exc, pause)
                await asyncio.sleep(pause)
        return await self.client.lookup(address)

    async def _failed(self, shard: Shard, walk: Walk, address: int, reason: str) -> None:
        registry = self.client.route(address)[0] if self.client.bootstrap.base_url(address) else "none"
        metrics.ERRORS.labels(registry).inc()
        log.warning("giving up on %s for now: %s", IPAddress(address), reason)
        self.failures = [*self.failures[-99:], f"{IPAddress(address)}: {reason}"]  # the latest 100
        walk.skip(address)
        await self.store.record_step(shard.shard_id, walk.cursor, None, lookups=1, errors=1)


async def run_shards(crawler: Crawler, shards: Iterable[Shard], concurrency: int) -> bool:
    """Local scheduling: walk the shards in address order, `concurrency` of them at a time."""
    queue: asyncio.Queue[Shard] = asyncio.Queue()
    for shard in shards:
        queue.put_nowait(shard)
    complete = True

    async def lane() -> None:
        nonlocal complete
        while not queue.empty() and not crawler.stopping.is_set():
            if not await crawler.run_shard(queue.get_nowait()):
                complete = False
                return

    await asyncio.gather(*(lane() for _ in range(max(1, concurrency))))
    return complete and not crawler.stopping.is_set()
