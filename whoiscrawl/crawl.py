"""The crawl loop: walk shards, look addresses up, record what is found (local mode and fleet alike)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from netaddr import IPAddress

from whoiscrawl import metrics
from whoiscrawl.records import NetworkRecord, Shard
from whoiscrawl.registry import Listing, LookupFailed, LookupResult, RegistryClient
from whoiscrawl.space import Scope
from whoiscrawl.store import LEASE_S, Lease, LeaseLost, Store
from whoiscrawl.strategy import Answer, Walk, walk_for, worth_listing

log = logging.getLogger(__name__)


Asked = TypeVar("Asked")


class ListingUnanswered(LookupFailed):
    """A listing the registry did not answer whole, with what it did answer."""

    def __init__(self, message: str, listing: Listing, registry: str) -> None:
        super().__init__(message, registry)
        self.listing = listing


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
    # Before an address that failed every way is asked again; the last repeats while its registry
    # answers nothing (an outage), and the address is given up on after them if it does answer.
    failure_pauses: tuple[float, ...] = (2.0, 10.0, 30.0)
    list_children: bool = True  # follow registries' rdap-down links instead of probing parents' gaps
    scope: Scope | None = None  # listed children outside it are not kept (None: keep all)
    listing_poll_s: float = 0.25  # how often a lane waiting for another worker's listing looks again
    # A fleet worker's drain leaves a long listing to whoever meets the parent next; a local crawl
    # (Ctrl-C) finishes it, or every resume would list the parent from its first child again.
    abandon_listings_on_stop: bool = False
    _listings: dict[tuple[int, int], asyncio.Future[bool | None]] = field(default_factory=dict)
    _answered_at: dict[str, float] = field(default_factory=dict)  # per registry, monotonic
    _help: dict[str, tuple[float, asyncio.Future[bool]]] = field(default_factory=dict)  # the last asked

    async def run_shard(self, shard: Shard, until: asyncio.Event | None = None) -> bool:
        """Walk a shard to its end (True), or until the crawl stops or `until` is set (False: each
        step is checkpointed, so the walk stops after the one in progress)."""
        if await self.store.is_done(shard.shard_id):
            return True
        await self.store.take_shard(shard.shard_id, self.owner)  # a former owner's writes stop here
        walk = walk_for(shard, await self.store.cursor(shard.shard_id))
        metrics.ACTIVE_SHARDS.inc()
        try:
            while not self.stopping.is_set() and not (until and until.is_set()):
                address = walk.next_address(self.store.index)
                if address is None:
                    await self.store.shard_done(shard.shard_id, shard.last - shard.first + 1)
                    metrics.SHARDS.inc()
                    metrics.SHARD_ADDRESSES.inc(shard.last - shard.first + 1)
                    return True
                await self._probe(shard, walk, address)
            return False
        except LeaseLost as lost:
            if lost.lease is not None:
                raise
            # We stalled while the shard passed to another walk (Kafka moved its partition): its
            # checkpoint is that walk's now, and ours were refused. Stop; our revocation is coming.
            log.warning("shard %s is walked by another worker now (a stall?): leaving it", shard.shard_id)
            return False
        finally:
            metrics.ACTIVE_SHARDS.dec()

    async def _probe(self, shard: Shard, walk: Walk, address: int) -> None:
        if not await self.store.claim(address, self.owner):
            await asyncio.sleep(0.02)  # another worker is looking up this cell; its block will appear
            await self.store.sync()
            return
        renew = functools.partial(self.store.renew_claim, address, self.owner)
        try:
            async with renewing(renew, f"cell {IPAddress(address >> 8 << 8)}/24", Lease.cell(address)):
                await self._probe_claimed(shard, walk, address)
        except LeaseLost as lost:
            if lost.lease != Lease.cell(address):
                raise
            # Its lookup stopped and its step refused: the walk meets the address again, and the
            # cell's new owner's block (or its claim) is what it finds there.
            log.warning("%s: dropping the probe of %s", lost, IPAddress(address))
        finally:
            await self.store.release(address, self.owner)

    async def _probe_claimed(self, shard: Shard, walk: Walk, address: int) -> None:
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
        if result is None:
            return  # stopping: the walk's checkpoint still holds this probe, for whoever resumes it
        self.lookups_by_registry[result.registry] += result.lookups
        if result.record is None:  # the registry holds nothing here
            walk.skip(address)
            await self._step(shard, walk, None, result, address)
            return
        await self._answered(shard, walk, address, result, result.record)

    async def _answered(
        self, shard: Shard, walk: Walk, address: int, result: LookupResult, record: NetworkRecord
    ) -> None:
        answer = Answer.of(record, shard.resolution)
        if not await self._keep(record, answer) and answer.terminal:
            metrics.WASTED.inc()
        listable = (  # the sample strategy stays the 2016 method: no listings
            self.list_children
            and shard.strategy == "sweep"
            and result.down_url
            and worth_listing(record, shard.resolution)
        )
        url = str(result.down_url)
        listed = await self._list(shard, walk.checkpoint(), record, url) if listable else False
        if listed is None:
            # Stopping while another worker still lists this parent: observe nothing, so the walk's
            # checkpoint still holds this probe and whoever resumes the shard makes it again.
            await self._step(shard, walk, None, result, address)
            return
        if listed:
            answer = Answer(answer.first, answer.last, True)  # every child known: a leaf now
        walk.observe(address, answer)
        # A parent listed whole is stored already (by its lister): this lookup found it, wasted nothing.
        stored = None if listed and self.store.index.covers(answer.first, answer.last) else answer
        await self._step(shard, walk, stored, result, address)

    async def _step(
        self, shard: Shard, walk: Walk, answer: Answer | None, result: LookupResult, address: int
    ) -> None:
        """Checkpoint the walk after a lookup, with what it found and what it cost (under the
        address's cell claim)."""
        await self.store.record_step(
            shard.shard_id,
            walk.checkpoint(),
            answer,
            lookups=result.lookups,
            rate_limited=result.rate_limited,
            under=Lease.cell(address),
        )

    async def _keep(self, record: NetworkRecord, answer: Answer) -> bool:
        """Send a newly found block to the sink (durable before the store or a cursor moves past
        it); False if it was known already."""
        if self.store.index.knows(answer.first, answer.last):
            return False
        record.crawl = self.crawl
        await self.sink.emit(record)
        metrics.BLOCKS.labels(record.registry).inc()
        return True

    async def _list(self, shard: Shard, checkpoint: str, parent: NetworkRecord, url: str) -> bool | None:
        """Ask the registry for a parent's children (RFC 9910 rdap-down), and for theirs in turn.

        True when every descendant is now known, so nothing inside the parent needs probing. A
        child that is a parent itself and was listed whole is stored as a leaf, so no walk probes
        inside it. False when the list (or a part of a long one) could not be had: the walk's grid
        then covers what no list did. A parent another lane or worker lists now is waited for (or
        its listing taken over once its owner's lease lapses), never probed inside meanwhile: a
        probe there answers the parent, and a partly listed parent must not look known. None: the
        crawl stops while another worker still lists it."""
        key = (parent.first, parent.last)
        while True:
            listing = self._listings.get(key)
            if listing is not None:
                with contextlib.suppress(LeaseLost):  # the lister lane asks again, and so do we
                    return await asyncio.shield(listing)
                continue
            if self.store.index.covers(parent.first, parent.last):
                return True  # listed whole already: a lookup in flight meanwhile answered it again
            claim = await self.store.first_to_list(parent.first, parent.last, self.owner)
            if claim == "partly":
                return False
            if claim == "mine":
                listing = asyncio.ensure_future(self._list_owned(shard, checkpoint, parent, url))
                self._listings[key] = listing
                listing.add_done_callback(functools.partial(self._listing_ended, key))
                try:
                    return await asyncio.shield(listing)
                except LeaseLost as lost:
                    if lost.lease != Lease.listing(*key):
                        raise
                    # We stalled and another worker lists it now: stopped, its writes dropped;
                    # taken again (or waited for) before going on.
                    log.warning("%s (a stall?): stopped listing %s, asking for it again", lost, parent.handle)
                    continue
            if self.stopping.is_set():
                return None
            await asyncio.sleep(self.listing_poll_s)
            await self.store.sync()

    def _listing_ended(self, key: tuple[int, int], listing: asyncio.Future[bool | None]) -> None:
        """Forget a listing that ended. One stopped because its lease was lost may have nobody left
        waiting for it (the lane that started it moved on): its LeaseLost is expected, not an error."""
        self._listings.pop(key, None)
        exc = None if listing.cancelled() else listing.exception()
        if exc is not None and not isinstance(exc, LeaseLost):
            log.error("the listing of %d-%d failed", *key, exc_info=exc)

    async def _list_owned(
        self, shard: Shard, checkpoint: str, parent: NetworkRecord, url: str
    ) -> bool | None:
        """List a parent whose lease is ours, renewing it meanwhile; store it as a leaf if whole."""
        await self.store.sync()
        if self.store.index.covers(parent.first, parent.last):  # the lease's last owner listed it whole
            await self.store.listed(parent.first, parent.last, self.owner, True)
            return True
        renew = functools.partial(self.store.renew_listing, parent.first, parent.last, self.owner)
        lease = Lease.listing(parent.first, parent.last)
        async with renewing(renew, f"the listing of {parent.handle}", lease):
            whole = await self._list_now(shard, checkpoint, parent, url)
        if whole:
            leaf = Answer(parent.first, parent.last, True)
            await self.store.record_step(shard.shard_id, checkpoint, leaf, lookups=0, under=lease)
        await self.store.listed(parent.first, parent.last, self.owner, whole)
        return whole

    async def _list_now(self, shard: Shard, checkpoint: str, parent: NetworkRecord, url: str) -> bool | None:
        listing = await self._children(shard, checkpoint, parent, url)
        if listing is None:
            return None  # stopping while the registry answered nothing: for whoever is next
        whole: bool | None = listing.complete
        for child, child_url in listing.children:
            if self.abandon_listings_on_stop and self.stopping.is_set():
                return None  # a drain does not sit out a long list: unfinished, for whoever is next
            if self.scope is not None and not self.scope.overlaps(child.first, child.last):
                continue  # a sibling of the crawled space, not asked for
            answer = Answer.of(child, shard.resolution)
            await self._keep(child, answer)
            inside = (child.first, child.last) != (parent.first, parent.last)  # never wait for ourselves
            listed: bool | None = False
            if inside and child_url and worth_listing(child, shard.resolution):
                listed = await self._list(shard, checkpoint, child, str(child_url))
                if listed is None:
                    return None  # stopping: unfinished, for whoever meets the parent next
            if listed:
                answer = Answer(answer.first, answer.last, True)
            whole = whole and answer.terminal
            if not self.store.index.covers(answer.first, answer.last):  # nothing new to share otherwise
                await self.store.record_step(shard.shard_id, checkpoint, answer, lookups=0,
                                             under=Lease.listing(parent.first, parent.last))
        return whole

    async def _children(
        self, shard: Shard, checkpoint: str, parent: NetworkRecord, url: str
    ) -> Listing | None:
        """A parent's children, asked `_patiently` while its registry does not answer (a listing
        given up on as the grid's would lose the children smaller than a cell). A list too long
        for one answer is split, and only the parts inside the crawl's scope listed. Once given up
        on, what it had (incomplete: the walk's grid probes the rest); None: stopping meanwhile."""
        wanted = self.scope.overlaps if self.scope else None
        span = (parent.first, parent.last)
        lease = Lease.listing(*span)

        async def ask() -> Listing:
            listing = await self.client.children(parent.registry, url, parent.handle, span, wanted)
            self.lookups_by_registry[parent.registry] += listing.lookups
            await self.store.record_step(
                shard.shard_id, checkpoint, None, lookups=listing.lookups, rate_limited=listing.rate_limited,
                under=lease,
            )
            if listing.unanswered:
                raise ListingUnanswered("not answered", listing, parent.registry)
            self._answered_at[parent.registry] = time.monotonic()
            return listing

        what = f"the listing of {parent.handle}"
        try:
            return await self._patiently(what, ask)
        except ListingUnanswered as exc:  # the grid probes what it did not list
            self._give_up(parent.registry, what, "its registry answers others, not this")
            await self.store.record_step(shard.shard_id, checkpoint, None, lookups=0, errors=1, under=lease)
            return exc.listing

    async def _lookup_patiently(self, address: int) -> LookupResult | None:
        """A lookup asked `_patiently`; None: the crawl stops during a pause (the probe stays in the
        walk's checkpoint)."""

        async def ask() -> LookupResult:
            result = await self.client.lookup(address)
            # The registry asked first and the one that answered (a transfer's holder) are up.
            for registry in {self.client.route(address)[0], result.registry}:
                self._answered_at[registry] = time.monotonic()
            return result

        return await self._patiently(str(IPAddress(address)), ask)

    async def _patiently(self, what: str, ask: Callable[[], Awaitable[Asked]]) -> Asked | None:
        """Ask (a lookup, a listing) again after each pause while it fails every way (the client's
        retries, WHOIS): registries have bad minutes, and what is given up on is blocks possibly
        lost. When the pauses run out it is given up on (LookupFailed raised) if it failed while the
        registry that failed (a transferred block's holder, maybe) was known to answer: it answered
        another request, or a help query, before this one was asked again. While that registry
        answers nothing the last pause repeats.
        None: the crawl stops during a pause (a drain must not sit it out)."""
        started = time.monotonic()
        helped = False  # asked again at once because its registry answered help
        for attempt in itertools.count():
            answered_before = dict(self._answered_at)
            try:
                return await ask()
            except LookupFailed as exc:
                failing = exc.registry
                if attempt >= len(self.failure_pauses):
                    if failing is None or helped or answered_before.get(failing, -math.inf) > started:
                        raise  # no registry serves it, or its registry answered others: it is this one
                    if await self._answers_help(failing):
                        helped = True
                        continue  # up: ask once more, and give it up if that fails
                pause = self.failure_pauses[min(attempt, len(self.failure_pauses) - 1)]
                if attempt == len(self.failure_pauses):
                    log.warning("%s: %s; %s answers nothing: asking again every %.0fs until it does",
                                what, exc, failing, pause)
                else:
                    log.info("%s: %s; trying again in %.0fs", what, exc, pause)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), pause)
                if self.stopping.is_set():
                    return None
        raise AssertionError("unreachable")

    async def _answers_help(self, registry: str) -> bool:
        """Ask a registry that answered none of our lookups lately whether it is up (RDAP help): a
        lone lane's only traffic may be its broken address, which would otherwise wait forever.
        One query a registry per last pause, whatever the number of lanes waiting: in an outage
        every lane asks, and LACNIC allows ten requests a minute."""
        if self.stopping.is_set():
            return False
        asked = self._help.get(registry)
        if asked is None or time.monotonic() - asked[0] >= self.failure_pauses[-1]:
            asked = (time.monotonic(), asyncio.ensure_future(self.client.answering(registry)))
            self._help[registry] = asked
        at, answering = asked
        try:
            if not await asyncio.shield(answering):
                return False
        except Exception as exc:  # the shared query failed outright: as if unanswered
            log.info("asking %s for help: %r", registry, exc)
            return False
        self._answered_at[registry] = max(self._answered_at.get(registry, -math.inf), at)
        return True

    async def _failed(self, shard: Shard, walk: Walk, address: int, reason: str) -> None:
        registry = self.client.route(address)[0] if self.client.bootstrap.base_url(address) else "none"
        self._give_up(registry, str(IPAddress(address)), reason)
        walk.skip(address)
        await self.store.record_step(
            shard.shard_id, walk.checkpoint(), None, lookups=1, errors=1, under=Lease.cell(address)
        )

    def _give_up(self, registry: str, what: str, reason: str) -> None:
        """Count and name something given up on (an address, a listing), for the crawl's report."""
        metrics.ERRORS.labels(registry).inc()
        log.warning("giving up on %s for now: %s", what, reason)
        self.failures = [*self.failures[-99:], f"{what}: {reason}"]  # the latest 100


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

    # A task group, not gather: cancelled, it returns once every lane has unwound (released its
    # claims), not before.
    async with asyncio.TaskGroup() as lanes:
        for _ in range(max(1, concurrency)):
            lanes.create_task(lane())
    return complete and not crawler.stopping.is_set()
