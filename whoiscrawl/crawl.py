"""The crawl loop: walk shards, look addresses up, record what is found (local mode and fleet alike)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import InitVar, dataclass, field
from typing import Protocol

from netaddr import IPAddress

from whoiscrawl import metrics
from whoiscrawl.listing import Listings
from whoiscrawl.records import NetworkRecord, Shard
from whoiscrawl.registry import LookupFailed, LookupResult, RegistryClient
from whoiscrawl.registry.patience import PAUSES, Patience
from whoiscrawl.settings import CrawlSettings
from whoiscrawl.space import Scope
from whoiscrawl.store import Lease, LeaseLost, Store, renewing
from whoiscrawl.strategy import Answer, SweepWalk, Walk, walk_for, worth_listing

log = logging.getLogger(__name__)


class ResultSink(Protocol):
    async def emit(self, record: NetworkRecord) -> None:
        """Return once the record is durable (broker-acknowledged, or written to the file)."""
        ...


@dataclass(frozen=True)
class Member:
    """This process as one of a crawl's walkers: the name its claims and leases carry, the crawl's
    name its records carry, and whether its stop leaves long listings to the others."""

    owner: str  # this process, for claims
    crawl: str = "local"
    # A fleet worker's drain leaves a long listing to whoever meets the parent next; a local crawl
    # (Ctrl-C) finishes it, or every resume would list the parent from its first child again.
    abandon_listings_on_stop: bool = False


@dataclass
class Crawler:
    """Walks shards one lookup at a time; many shards run at once, each in its own lane (a
    ShardLane). The crawler holds what its lanes share: store, sink, client, the failure policy
    (registry/patience.py) and the listings (listing.py). Its crawl knobs are the settings'
    (`list_children`, and `failure_pauses`: None is the failure policy's own)."""

    store: Store
    sink: ResultSink
    client: RegistryClient
    member: InitVar[Member]
    settings: CrawlSettings = field(default_factory=CrawlSettings)
    scope: Scope | None = None  # listed children outside it are not kept (None: keep all)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    owner: str = field(init=False)  # the member's, read by lanes and listings
    crawl: str = field(init=False)
    abandon_listings_on_stop: bool = field(init=False)
    lookups_by_registry: Counter[str] = field(init=False, default_factory=Counter)
    # Probes ended and looks at another worker's listing: with the client's requests, the lanes'
    # `progress`.
    steps: int = field(init=False, default=0)
    # How often a lane waiting for another worker's listing looks again.
    listing_poll_s: float = field(init=False, default=0.25)
    # The failure policy (registry/patience.py): pauses, help queries, what was given up on.
    patience: Patience = field(init=False)
    listings: Listings = field(init=False)  # the parents this process lists (listing.py)
    # The statistics' delegations asked for whole (`RegistryClient.whole_delegation`), once a
    # process: while one's lookup and listing are out, the future the other lanes meeting it wait
    # for; once answered, None (a lane inside it that its listing left unknown asks its own
    # address). Lanes over shards smaller than a delegation each met it at once: quick's
    # 192.12.176.0/21, across 8 /24 shards, was answered 8 times.
    delegations: dict[tuple[int, int], asyncio.Future[None] | None] = field(init=False, default_factory=dict)

    def __post_init__(self, member: Member) -> None:
        self.owner, self.crawl = member.owner, member.crawl
        self.abandon_listings_on_stop = member.abandon_listings_on_stop
        # Before an address that failed every way is asked again; the last repeats while its registry
        # answers nothing (an outage), and the address is given up on after them if it does answer.
        pauses = PAUSES if self.settings.failure_pauses is None else self.settings.failure_pauses
        self.patience = Patience(self.client.answering, self.stopping, pauses)
        self.listings = Listings(self)

    @property
    def progress(self) -> int:
        """Grows while any lane moves (a probe ended, a request ended, another worker's listing
        looked at): read by the fleet worker's liveness (worker/health.py)."""
        return self.steps + self.client.requests

    @property
    def failures(self) -> list[str]:
        """What was given up on, named (the latest 100)."""
        return self.patience.failures

    async def run_shard(self, shard: Shard, until: asyncio.Event | None = None) -> bool:
        """Walk a shard to its end (True), or until the crawl stops or `until` is set (False: each
        step is checkpointed, so the walk stops after the one in progress)."""
        if await self.store.is_done(shard.shard_id):
            return True
        # A token of this walk's own: a former owner's writes stop here, even an older walk of it here.
        token = await self.store.take_shard(shard.shard_id, self.owner)
        lane = ShardLane(self, shard, walk_for(shard, await self.store.cursor(shard.shard_id)), token)
        metrics.ACTIVE_SHARDS.inc()
        try:
            return await lane.walk_on(until)
        except LeaseLost as lost:
            if lost.lease is not None:
                raise
            # We stalled while the shard passed to another walk (Kafka moved its partition): its
            # checkpoint is that walk's now, and ours were refused. Stop; our revocation is coming.
            log.warning("shard %s is walked by another worker now (a stall?): leaving it", shard.shard_id)
            return False
        finally:
            self.store.leave_shard(token)  # unless done: a listing it started writes no checkpoint
            metrics.ACTIVE_SHARDS.dec()

    async def keep(self, record: NetworkRecord, answer: Answer) -> bool:
        """Send a newly found block to the sink (durable before the store or a cursor moves past
        it); False if it was known already."""
        if self.store.index.knows(answer.first, answer.last):
            return False
        record.crawl = self.crawl
        await self.sink.emit(record)
        log.debug("kept %s %s (%s), acknowledged", record.registry, ",".join(record.cidrs), record.handle)
        metrics.BLOCKS.labels(record.registry).inc()
        return True

    async def asked_whole(self, delegation: tuple[int, int]) -> bool:
        """Was the delegation asked for whole by a lane? Waits for its lookup and listing first."""
        if delegation not in self.delegations:
            return False
        pending = self.delegations[delegation]
        if pending is not None:
            await asyncio.shield(pending)  # a waiter cancelled leaves the others' future alone
        return True

    def asking_whole(self, delegation: tuple[int, int]) -> None:
        """A lane asks the delegation for whole now: lanes meeting it meanwhile wait (`asked_whole`)."""
        self.delegations[delegation] = asyncio.get_running_loop().create_future()

    def whole_asked(self, delegation: tuple[int, int], answered: bool) -> None:
        """The delegation's probe ended: kept as asked if the registry answered it, else forgotten
        (the next lane inside it asks it again); the lanes waiting for it go on."""
        pending = self.delegations.pop(delegation, None)
        if answered:
            self.delegations[delegation] = None
        if pending is not None and not pending.done():
            pending.set_result(None)

    async def _lookup_patiently(self, address: int, whole: int = 0) -> LookupResult | None:
        """A lookup asked patiently (registry/patience.py); None: the crawl stops during a pause (the
        probe stays in the walk's checkpoint). `whole`: of the delegation holding it, its first prefix."""

        async def ask() -> LookupResult:
            result = await self.client.lookup(address, whole)
            # The registry asked first and the one that answered (a transfer's holder) are up.
            self.patience.answered(*{result.asked or result.registry, result.registry})
            return result

        return await self.patience.ask(str(IPAddress(address)), ask)


@dataclass
class ShardLane:
    """One lane's shard as it is walked: the shard, its walk, the walk's fencing token (which each
    of its writes carries) and the resolution its answers are read at, bound once; the process's
    parts (store, client, listings, patience) are the crawler's."""

    crawler: Crawler
    shard: Shard
    walk: Walk
    token: str
    _first_probe: bool = True  # the one probe a former walk of the shard may have left answered

    @property
    def resolution(self) -> int:
        return self.shard.resolution

    async def walk_on(self, until: asyncio.Event | None) -> bool:
        """Walk to the shard's end (True), or until the crawl stops or `until` is set (False)."""
        crawler, shard = self.crawler, self.shard
        while not crawler.stopping.is_set() and not (until and until.is_set()):
            address = self.walk.next_address(crawler.store.index)
            if address is None:
                await crawler.store.shard_done(shard.shard_id, shard.last - shard.first + 1)
                metrics.SHARDS.inc()
                metrics.SHARD_ADDRESSES.inc(shard.last - shard.first + 1)
                return True
            await self._probe(address)
            crawler.steps += 1
        return False

    async def _probe(self, address: int) -> None:
        store, owner = self.crawler.store, self.crawler.owner
        if not await store.claim(address, owner):
            await asyncio.sleep(0.02)  # another worker is looking up this cell; its block will appear
            await store.sync()
            return
        renew = functools.partial(store.renew_claim, address, owner)
        try:
            async with renewing(renew, f"cell {IPAddress(address >> 8 << 8)}/24",
                                              Lease.cell(address)):
                await self._probe_claimed(address)
        except LeaseLost as lost:
            if lost.lease != Lease.cell(address):
                raise
            # Its lookup stopped and its step refused: the walk meets the address again, and the
            # cell's new owner's block (or its claim) is what it finds there.
            log.warning("%s: dropping the probe of %s", lost, IPAddress(address))
        finally:
            await store.release(address, owner)

    async def _probe_claimed(self, address: int) -> None:
        crawler = self.crawler
        await crawler.store.sync()  # found by someone else since we looked?
        if crawler.store.index.terminal_end(address) is not None:
            metrics.KNOWN_SKIPS.inc()
            return
        kept = await self._kept_answer(address)
        if kept is not None and kept.record is not None:
            await self._answered(address, kept, kept.record, kept=True)
            return
        # Where listings are followed, a delegation of a grid cell or more (one worth listing) is asked
        # for as a whole before anything below it, once a process: its children would be met first,
        # each worth listing listed on its own, and every lane starting inside it would ask it.
        sweep = self.walk if crawler.settings.list_children and isinstance(self.walk, SweepWalk) else None
        whole = sweep.cell if sweep else 0
        delegation = crawler.client.whole_delegation(address, whole)
        if delegation is not None and await crawler.asked_whole(delegation):
            await crawler.store.sync()  # its listing may have made the address known
            if crawler.store.index.terminal_end(address) is not None:
                metrics.KNOWN_SKIPS.inc()
                return
            delegation = None  # answered, not listed whole here: the address on its own
        if delegation is None:
            await self._ask(address, 0)
            return
        crawler.asking_whole(delegation)
        answered = False
        try:
            answered = await self._ask(address, whole)
        finally:
            crawler.whole_asked(delegation, answered)

    async def _ask(self, address: int, whole: int) -> bool:
        """Look the address up (`whole`: its delegation's first prefix) and take in the answer; False
        where none came (given up on, or stopping)."""
        crawler = self.crawler
        metrics.IN_FLIGHT.inc()
        try:
            result = await crawler._lookup_patiently(address, whole)
        except LookupFailed as exc:
            await self._failed(address, str(exc))
            return False
        finally:
            metrics.IN_FLIGHT.dec()
        if result is None:
            return False  # stopping: the walk's checkpoint still holds this probe, for whoever resumes it
        crawler.lookups_by_registry[result.registry] += result.lookups
        if result.prefix and result.record is None:  # nothing holds the whole prefix: ask the address
            await self._step(None, result, address)
            return True
        if result.record is None:  # the registry holds nothing here
            self.walk.skip(address)
            await self._step(None, result, address)
            return True
        await self._answered(address, result, result.record)
        return True

    async def _kept_answer(self, address: int) -> LookupResult | None:
        """The answer a former walk of the shard had for this address and kept, cut off (killed,
        paused past its leases, drained, revoked) while it waited for a listing before writing its
        step: the probe its checkpoint still holds, so only a walk's first probe can be one. Asked
        again, each was a duplicate lookup (a chaos run of quick: 52 of 58, some asked by four walks
        in turn)."""
        if not self._first_probe or not self.crawler.settings.list_children:
            return None
        self._first_probe = False
        text = await self.crawler.store.kept_answer(address)
        if text is None:
            return None
        log.info("%s: answered for a former walk of shard %s, not asked again", IPAddress(address),
                 self.shard.shard_id)
        return LookupResult.from_kept(text)

    async def _answered(self, address: int, result: LookupResult, record: NetworkRecord,
                        kept: bool = False) -> None:
        """A probe's answer (`kept`: a former walk's, its record delivered by it): the parent it
        names listed, then the walk's step. While the listing is waited for, the answer is kept in
        the store, for the shard's next walk should this one be cut off before its step."""
        crawler = self.crawler
        answer = Answer.of(record, self.resolution)
        if not kept and not await crawler.keep(record, answer) and answer.terminal:
            metrics.WASTED.inc()
        listable = (  # the sample strategy stays the 2016 method: no listings
            crawler.settings.list_children
            and self.shard.strategy == "sweep"
            and result.down_url
            and worth_listing(record, self.resolution)
        )
        if not listable:
            await self._after_listing(address, result, answer, False)
            return
        if not kept:
            await crawler.store.keep_answer(address, result.kept())
        url = str(result.down_url)
        listed = await crawler.listings.list(self.shard, self.token, self.walk.checkpoint(), record, url)
        await self._after_listing(address, result, answer, listed)
        if listed is not None:  # stepped past it (a step refused raises): nothing left for another walk
            await crawler.store.forget_answer(address)

    async def _after_listing(self, address: int, result: LookupResult, answer: Answer,
                             listed: bool | None) -> None:
        """The walk's step after a probe's answer and its listing (`listed`: whole, not, or None:
        stopping while another worker still lists it)."""
        crawler, walk = self.crawler, self.walk
        if listed is None:
            # Stopping while another worker still lists this parent: observe nothing, so the walk's
            # checkpoint still holds this probe, and whoever resumes the shard reads its kept answer.
            await self._step(None, result, address)
            return
        if listed:
            answer = Answer(answer.first, answer.last, True)  # every child known: a leaf now
        elif result.prefix:  # the delegation, not listed whole: the address is asked again on its own
            # (stored as a parent: as a leaf the walk would skip it)
            await self._step(Answer(answer.first, answer.last, False), result, address)
            return
        walk.observe(address, answer)
        # A parent listed whole is stored already (by its lister): this lookup found it, wasted nothing.
        stored = None if listed and crawler.store.index.covers(answer.first, answer.last) else answer
        await self._step(stored, result, address)

    async def _step(self, answer: Answer | None, result: LookupResult, address: int) -> None:
        """Checkpoint the walk after a lookup, with what it found and what it cost (under the
        address's cell claim)."""
        await self.crawler.store.record_step(
            self.shard.shard_id,
            self.walk.checkpoint(),
            answer,
            lookups=result.lookups,
            rate_limited=result.rate_limited,
            under=Lease.cell(address),
            walk=self.token,
        )

    async def _failed(self, address: int, reason: str) -> None:
        client = self.crawler.client
        registry = client.route(address)[0] if client.bootstrap.base_url(address) else "none"
        self.crawler.patience.give_up(registry, str(IPAddress(address)), reason)
        self.walk.skip(address)
        await self.crawler.store.record_step(
            self.shard.shard_id, self.walk.checkpoint(), None, lookups=1, errors=1, under=Lease.cell(address),
            walk=self.token,
        )


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
