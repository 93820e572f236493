"""Listing coordination: a parent's children asked once across the fleet (RFC 9910 rdap-down, WHOIS).

A parent worth listing is listed by one lane of one worker at a time (its listing lease, in the
store); every other lane meeting it waits for that listing (or takes it over once the lease lapses)
and never probes inside it meanwhile. A listing answered whole makes its parent a leaf. The crawler
(crawl.py) is the host: its store, client, patience and lease keeping are what a listing uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from whoiscrawl.records import NetworkRecord, Shard
from whoiscrawl.registry import Listing, ListingStopped, LookupFailed, RegistryClient
from whoiscrawl.registry.client import Child
from whoiscrawl.registry.patience import Patience
from whoiscrawl.space import Scope
from whoiscrawl.store import Lease, LeaseLost, Store, renewing
from whoiscrawl.strategy import Answer, worth_listing

log = logging.getLogger("whoiscrawl.crawl")  # the crawl loop's log, as before listings had a home


class ListingUnanswered(LookupFailed):
    """A listing the registry did not answer whole, with what it did answer."""

    def __init__(self, message: str, listing: Listing, registry: str) -> None:
        super().__init__(message, registry)
        self.listing = listing


class ListingHost(Protocol):
    """What a listing uses of its crawler."""

    store: Store
    client: RegistryClient
    owner: str
    scope: Scope | None  # listed children outside it are not kept (None: keep all)
    stopping: asyncio.Event
    patience: Patience
    lookups_by_registry: Counter[str]
    listing_poll_s: float  # how often a lane waiting for another worker's listing looks again
    steps: int  # the lanes' steps (a look at another worker's listing is one: Crawler.progress)
    abandon_listings_on_stop: bool  # a fleet worker's drain leaves a long listing to the next

    async def keep(self, record: NetworkRecord, answer: Answer) -> bool: ...



@dataclass
class Listings:
    """The parents one crawling process lists, each listing shared by the lanes that meet it."""

    host: ListingHost
    _listings: dict[tuple[int, int], asyncio.Future[bool | None]] = field(default_factory=dict)

    async def list(
        self, shard: Shard, walk: str, checkpoint: str, parent: NetworkRecord, url: str
    ) -> bool | None:
        """Ask the registry for a parent's children (RFC 9910 rdap-down), and for theirs in turn,
        for the walk (`walk` its fencing token) whose checkpoint its steps carry.

        True when every descendant is now known, so nothing inside the parent needs probing. A
        child that is a parent itself and was listed whole is stored as a leaf, so no walk probes
        inside it. False when the list (or a part of a long one) could not be had: the walk's grid
        then covers what no list did. A parent another lane or worker lists now is waited for (or
        its listing taken over once its owner's lease lapses), never probed inside meanwhile: a
        probe there answers the parent, and a partly listed parent must not look known. None: the
        crawl stops while another worker still lists it, or a fleet worker's drain before it is
        asked (the drain would leave it unfinished)."""
        key = (parent.first, parent.last)
        while True:
            listing = self._listings.get(key)
            if listing is not None:
                with contextlib.suppress(LeaseLost):  # the lister lane asks again, and so do we
                    return await asyncio.shield(listing)
                continue
            if self.host.store.index.covers(parent.first, parent.last):
                return True  # listed whole already: a lookup in flight meanwhile answered it again
            if self.host.abandon_listings_on_stop and self.host.stopping.is_set():
                # A drain would leave the listing before its first child: not asked at all (its answer
                # was thrown away, and the parent's next lister asked again).
                return None
            claim = await self.host.store.first_to_list(parent.first, parent.last, self.host.owner)
            if claim == "partly":
                return False
            if claim == "mine":
                listing = asyncio.ensure_future(self._list_owned(shard, walk, checkpoint, parent, url))
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
            if self.host.stopping.is_set():
                return None
            await asyncio.sleep(self.host.listing_poll_s)
            await self.host.store.sync()
            self.host.steps += 1

    def _listing_ended(self, key: tuple[int, int], listing: asyncio.Future[bool | None]) -> None:
        """Forget a listing that ended. One stopped because its lease was lost may have nobody left
        waiting for it (the lane that started it moved on): its LeaseLost is expected, not an error."""
        self._listings.pop(key, None)
        exc = None if listing.cancelled() else listing.exception()
        if exc is not None and not isinstance(exc, LeaseLost):
            log.error("the listing of %d-%d failed", *key, exc_info=exc)

    async def _list_owned(
        self, shard: Shard, walk: str, checkpoint: str, parent: NetworkRecord, url: str
    ) -> bool | None:
        """List a parent whose lease is ours, renewing it meanwhile; store it as a leaf if whole."""
        await self.host.store.sync()
        if self.host.store.index.covers(parent.first, parent.last):  # the lease's last owner listed it whole
            await self.host.store.listed(parent.first, parent.last, self.host.owner, True)
            return True
        renew = functools.partial(self.host.store.renew_listing, parent.first, parent.last, self.host.owner)
        lease = Lease.listing(parent.first, parent.last)
        async with renewing(renew, f"the listing of {parent.handle}", lease):
            whole = await self._list_now(shard, walk, checkpoint, parent, url)
        if whole:
            leaf = Answer(parent.first, parent.last, True)
            await self.host.store.record_step(shard.shard_id, checkpoint, leaf, lookups=0, under=lease,
                                              walk=walk)
        await self.host.store.listed(parent.first, parent.last, self.host.owner, whole)
        return whole

    async def _list_now(
        self, shard: Shard, walk: str, checkpoint: str, parent: NetworkRecord, url: str
    ) -> bool | None:
        try:
            listing = await self._children(shard, walk, checkpoint, parent, url)
        except ListingStopped:
            return None  # a drain while its subtree was kept: unfinished, for whoever is next
        if listing is None:
            return None  # stopping while the registry answered nothing: for whoever is next
        if listing.deep:
            return await self._keep_subtree(shard, walk, checkpoint, parent, listing)
        whole: bool | None = listing.complete
        for child, child_url in listing.children:
            if self.host.abandon_listings_on_stop and self.host.stopping.is_set():
                return None  # a drain does not sit out a long list: unfinished, for whoever is next
            if self.host.scope is not None and not self.host.scope.overlaps(child.first, child.last):
                continue  # a sibling of the crawled space, not asked for
            answer = Answer.of(child, shard.resolution)
            await self.host.keep(child, answer)
            inside = (child.first, child.last) != (parent.first, parent.last)  # never wait for ourselves
            listed: bool | None = False
            if inside and child_url and worth_listing(child, shard.resolution):
                listed = await self.list(shard, walk, checkpoint, child, str(child_url))
                if listed is None:
                    return None  # stopping: unfinished, for whoever meets the parent next
            if listed:
                answer = Answer(answer.first, answer.last, True)
            whole = whole and answer.terminal
            if not self.host.store.index.covers(answer.first, answer.last):  # nothing new to share otherwise
                await self.host.store.record_step(shard.shard_id, checkpoint, answer, lookups=0,
                                                  under=Lease.listing(parent.first, parent.last), walk=walk)
        return whole

    async def _keep_subtree(
        self, shard: Shard, walk: str, checkpoint: str, parent: NetworkRecord, listing: Listing
    ) -> bool | None:
        """A parent's whole subtree (`rdap-bottom`; ARIN's `r >`, whole or completed by its parts:
        `whois.ArinListing`): what of it the listing did not hand over as it came (`_keep_part`),
        kept. None: stopping meanwhile."""
        try:
            await self._keep_part(shard, walk, checkpoint, parent, listing.children, listing.complete)
        except ListingStopped:
            return None  # a drain does not sit out a long list: unfinished, for whoever is next
        return listing.complete

    async def _keep_part(self, shard: Shard, walk: str, checkpoint: str, parent: NetworkRecord,
                         children: Sequence[Child], whole: bool) -> None:
        """Networks of a parent's subtree, in address order (a parent before its children), each in
        scope kept and stored as a leaf at once (other lanes skip it from then on), the innermost
        first: once a parent is stored the store takes what is inside it for known, and `keep` would
        drop its record. A relation search hands them as each answer settles (`RegistryClient.children`),
        so a subtree of 75,000 networks is never held whole. `whole`: all inside each is known (its
        own children are in the list too); else only what its type says is a leaf is one (the grid
        probes the rest). A drain stops it (`ListingStopped`)."""
        scope, lease = self.host.scope, Lease.listing(parent.first, parent.last)
        for child, _ in reversed(children):
            if self.host.abandon_listings_on_stop and self.host.stopping.is_set():
                raise ListingStopped  # a drain does not sit out a long list
            if scope is not None and not scope.overlaps(child.first, child.last):
                continue  # a sibling of the crawled space, not asked for
            leaf = Answer.of(child, shard.resolution)
            leaf = Answer(leaf.first, leaf.last, leaf.terminal or whole)
            await self.host.keep(child, leaf)
            if not self.host.store.index.covers(leaf.first, leaf.last):  # known whole already (listed)
                await self.host.store.record_step(shard.shard_id, checkpoint, leaf, lookups=0, under=lease,
                                                  walk=walk)

    async def _children(
        self, shard: Shard, walk: str, checkpoint: str, parent: NetworkRecord, url: str
    ) -> Listing | None:
        """A parent's children, asked patiently (registry/patience.py) while its registry does not
        answer (a listing given up on as the grid's would lose the children smaller than a cell). A
        list too long for one answer is split, and only the parts inside the crawl's scope listed.
        Once given up on, what it had (incomplete: the walk's grid probes the rest); None: stopping
        meanwhile."""
        wanted = self.host.scope.overlaps if self.host.scope else None
        within = self.host.scope.hull if self.host.scope else None  # a subtree asked inside the scope
        span = (parent.first, parent.last)
        lease = Lease.listing(*span)
        kept = functools.partial(self._keep_part, shard, walk, checkpoint, parent)

        async def cost(lookups: int, rate_limited: int) -> None:
            self.host.lookups_by_registry[parent.registry] += lookups
            await self.host.store.record_step(shard.shard_id, checkpoint, None, lookups=lookups,
                                              rate_limited=rate_limited, under=lease, walk=walk)

        async def ask() -> Listing:
            try:
                listing = await self.host.client.children(parent.registry, url, parent.handle, span, wanted,
                                                          deep=True, within=within, kept=kept)
            except ListingStopped as stop:  # a drain: what it asked is counted all the same
                await cost(stop.lookups, stop.rate_limited)
                raise
            await cost(listing.lookups, listing.rate_limited)
            if listing.unanswered:
                raise ListingUnanswered("not answered", listing, parent.registry)
            self.host.patience.answered(parent.registry)
            return listing

        what = f"the listing of {parent.handle}"
        try:
            return await self.host.patience.ask(what, ask)
        except ListingUnanswered as exc:  # the grid probes what it did not list
            self.host.patience.give_up(parent.registry, what, "its registry answers others, not this")
            await self.host.store.record_step(shard.shard_id, checkpoint, None, lookups=0, errors=1,
                                              under=lease, walk=walk)
            return exc.listing
