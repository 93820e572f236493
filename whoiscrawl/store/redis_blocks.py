"""The store of a fleet: a worker's view of the crawl's shared state in Redis (implements Store)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
import redis.asyncio.retry
import redis.retry

from whoiscrawl import metrics, redis_client
from whoiscrawl.blocks import KnownBlocks, decode_block, encode_block
from whoiscrawl.keys import Keys
from whoiscrawl.queue import copy_key
from whoiscrawl.records import Progress, Shard
from whoiscrawl.space import Scope
from whoiscrawl.store import LEASE_S, Lease, LeaseLost, ListingClaim, remember, step_counts
from whoiscrawl.store.redis_scripts import (
    _ADD_FILL,
    _GIVE_BACK,
    _LISTED,
    _RECORD_STEP,
    _RELEASE,
    _RENEW,
    _SHARD_DONE,
    _SOURCES_WRITE,
    _TAKE,
    _TAKE_SHARD,
    REDIS_RETRIES,
    _backoff,
    _text,
    new_epoch,
)
from whoiscrawl.strategy import Answer

log = logging.getLogger(__name__)


@dataclass
class _Walk:
    """A walk of a shard under way in this process: its shard, and its holder in the shard's owners
    now (its token as taken; a new one after a store generation ended; "" lost meanwhile)."""

    shard_id: str
    holder: str


class RedisBlockStore:
    """A worker's view of the shared store: a local index kept current from the Redis block log."""

    LEASE_MS = int(LEASE_S * 1000)

    def __init__(
        self,
        url: str,
        crawl: str,
        rebuild: Callable[[], Awaitable[bool]] | None = None,
        mirror: Callable[[str, str | None], None] | None = None,
    ) -> None:
        """`rebuild`: what rebuilds the store from the crawl's topics when Redis lost it (False:
        another process holds the rebuild's lease); without it a lost store just starts anew.
        `mirror(shard_id, checkpoint)`: where each checkpoint is copied (None: the shard is done),
        and each answer kept (keyed `queue.copy_key`; None: forgotten)."""
        self.keys = Keys(crawl)
        self.url = url  # the plan is added to through it (`RedisCrawlAdmin`): a fleet's loader
        retry = redis.asyncio.retry.Retry(_backoff(), REDIS_RETRIES)
        self.client: aioredis.Redis = redis_client.pooled(url, retry=retry)
        self.index = KnownBlocks()
        self.rebuild = rebuild
        self.mirror = mirror
        self.losses = 0  # store generations this process saw end
        self._done: dict[str, int] = {}  # shards this process finished: marked again after a loss
        self._figures: dict[str, str] = {}  # of those, the fill's batches: what each asked
        self._epoch: str | None = None  # the store generation this process reads and writes
        self._last_id = "0-0"
        self._release = self.client.register_script(_RELEASE)
        self._renew = self.client.register_script(_RENEW)
        self._take_lease = self.client.register_script(_TAKE)
        self._give_back = self.client.register_script(_GIVE_BACK)
        self._take_shard = self.client.register_script(_TAKE_SHARD)
        self._listed = self.client.register_script(_LISTED)
        self._shard_done = self.client.register_script(_SHARD_DONE)
        self._record_step = self.client.register_script(_RECORD_STEP)
        self._sources_write = self.client.register_script(_SOURCES_WRITE)
        self._add_fill = self.client.register_script(_ADD_FILL)
        self._held: dict[str, str] = {}  # lease key -> our holder in it, `<token>/<owner>/<nonce>`
        # Our walks under way, by their token: one that ended here unfinished is not among them.
        self._walks: dict[str, _Walk] = {}
        self._sync_lock = asyncio.Lock()
        self._recover_lock = asyncio.Lock()

    async def close(self) -> None:
        await self.client.aclose()

    async def _current_epoch(self) -> str | None:
        value: Any = await self.client.get(self.keys.epoch)
        return value.decode() if isinstance(value, bytes) else value

    async def recover(self) -> None:
        """Follow the store's generation: a new one (rebuilt) is read from its start; none at all
        (Redis lost its data) is rebuilt first, by one process under a lease, while the others'
        writes wait. The local index stays: all it knows is on the results topic already."""
        async with self._recover_lock:
            while (epoch := await self._current_epoch()) is None:
                if self.rebuild is None:
                    await self.client.set(self.keys.epoch, new_epoch(), nx=True)
                elif not await self._rebuild_once(self.rebuild):
                    await asyncio.sleep(0.5)  # another process rebuilds it, or Kafka is away
            if epoch != self._epoch:
                ended = self._epoch is not None
                if ended:
                    self.losses += 1
                    log.warning("the store is a new generation (%s): reading it from its start", epoch)
                self._epoch, self._last_id = epoch, "0-0"
                await self._mark_done_again(epoch)
                if ended:
                    await self._own_again()

    async def _own_again(self) -> None:
        """The walks this process had in the generation that ended stay ours unless another took
        them meanwhile (it may have: we could have stalled through the loss). Of two walks of one
        shard here (taken back while the older one still wound down) only the newer one."""
        newest = {walk.shard_id: token for token, walk in self._walks.items()}  # in the order taken
        for token, walk in list(self._walks.items()):
            if newest[walk.shard_id] != token:
                walk.holder = ""
                continue
            now: Any = await self.client.hget(self.keys.owners, walk.shard_id)
            if walk.holder and now is not None and _text(now) == walk.holder:
                continue  # the generation ended, its data did not (a rebuild by hand)
            holder = await self._take_shard(
                keys=[self.keys.fence, self.keys.owners], args=[walk.shard_id, self._name(), "1"])
            walk.holder = _text(holder) if holder else ""

    async def _mark_done_again(self, epoch: str) -> None:
        """Shards finished before a loss whose offsets the rebuild did not see committed yet."""
        for shard_id, addresses in list(self._done.items()):
            figures = self._figures.get(shard_id, "")
            await self._shard_done(keys=self._done_keys, args=[shard_id, addresses, epoch, figures])

    @property
    def _done_keys(self) -> list[str]:
        named = self.keys
        return [named.done, named.counters, named.cursors, named.epoch, named.owners, named.fill_figures]

    @staticmethod
    async def _rebuild_once(rebuild: Callable[[], Awaitable[bool]]) -> bool:
        try:
            return await rebuild()
        except Exception as exc:  # Kafka away too, say: the next try may get through
            log.warning("rebuilding the store failed, will try again: %s", exc)
            return False

    async def _guarded(self, write: Callable[[str], Awaitable[int]]) -> int:
        """Run a write in our store generation; if that ended, once it is rebuilt. Its answer."""
        while True:
            if self._epoch is None:
                await self.recover()
            assert self._epoch is not None
            if (done := int(await write(self._epoch))) >= 0:
                return done
            await self.recover()
            await self.sync()

    async def sync(self) -> None:
        """Read the blocks other workers logged since the last sync (all of them, the first time
        and after the store was rebuilt)."""
        while not await self._read_log():
            await self.recover()

    async def _read_log(self) -> bool:
        """Read the log's new entries; False if the store is not our generation (nothing read)."""
        async with self._sync_lock:
            while True:
                low = "-" if self._last_id == "0-0" else f"({self._last_id}"
                pipe = self.client.pipeline(transaction=True)
                pipe.get(self.keys.epoch)
                pipe.xrange(self.keys.blocks, min=low, count=20000)
                epoch, raw = await pipe.execute()
                if self._epoch is None or epoch is None or epoch.decode() != self._epoch:
                    return False
                entries: list[Any] = raw or []
                for entry_id, data in entries:
                    first, last, terminal = decode_block(data[b"b"])
                    self.index.add(first, last, bool(terminal))
                    self._last_id = entry_id.decode()
                if len(entries) < 20000:
                    return True

    async def take_shard(self, shard_id: str, owner: str) -> str:
        """Own a shard's walk from now; its token, which each write of the walk carries. Any other
        walk of it (a worker that stalled while Kafka gave its partition to us, or an older walk
        of it in this process, still winding down when the partition came back) has its
        checkpoints refused from now on."""
        holder = await self._take_shard(keys=[self.keys.fence, self.keys.owners], args=[shard_id, owner, "0"])
        walk = _text(holder)
        self._walks[walk] = _Walk(shard_id, walk)
        return walk

    def leave_shard(self, walk: str) -> None:
        """A walk ended unfinished (revoked, stopped, taken over). A listing it started may go on
        under its own lease: its steps write their blocks, never the walk's checkpoint, which is
        the shard's next walk's to write. (Each of them was refused, and counted as a stale write:
        16,614 in a calm run of `standard`, from listings of walks revoked in the start-up
        rebalance.) A newer walk of the shard here keeps its own token, and its checkpoints."""
        self._walks.pop(walk, None)

    def _name(self) -> str:
        """A holder's name for the shards' re-owning after a loss: this store's, unique."""
        return f"store-{id(self):x}"

    async def claim(self, address: int, owner: str) -> bool:
        # Claims are per /24 cell: two workers never look up addresses of one cell at once.
        return await self._take(self.keys.claim(address >> 8), owner)

    async def _take(self, key: str, owner: str) -> bool:
        """Take a lease if it is free, with a new fencing token. One taken as our task was cancelled
        is given back: Redis ran the command, and the lease would keep everyone out for its whole
        term (seen as a crawl that never finished while its workers were revoked every 0.05-0.5 s)."""
        name = f"{owner}/{uuid.uuid4().hex[:8]}"
        try:
            holder = await self._take_lease(keys=[key, self.keys.fence], args=[name, self.LEASE_MS])
        except asyncio.CancelledError:
            await self._give_back(keys=[key], args=[name])
            raise
        if not holder:
            return False
        self._held[key] = _text(holder)
        return True

    def _holder(self, key: str, owner: str) -> str | None:
        """Our holder in a lease, if `owner` took it (`<token>/<owner>/<nonce>`)."""
        holder = self._held.get(key)
        return holder if holder is not None and holder.split("/", 1)[1].rsplit("/", 1)[0] == owner else None

    async def _renew_held(self, key: str, owner: str) -> bool:
        holder = self._holder(key, owner)
        return holder is not None and bool(await self._renew(keys=[key], args=[holder, self.LEASE_MS]))

    async def _let_go(self, key: str, owner: str) -> None:
        holder = self._holder(key, owner)
        if holder is not None:
            del self._held[key]
            await self._release(keys=[key], args=[holder])

    async def renew_claim(self, address: int, owner: str) -> bool:
        return await self._renew_held(self.keys.claim(address >> 8), owner)

    async def release(self, address: int, owner: str) -> None:
        await self._let_go(self.keys.claim(address >> 8), owner)

    async def first_to_list(self, first: int, last: int, owner: str) -> ListingClaim:
        """Claim a parent's listing (a lease: `renew_listing` keeps it). A parent listed whole
        becomes a leaf, so nobody asks again; one that no listing could settle (cut short) is
        remembered, because asking again gives the same cut. "busy": another worker lists it now."""
        key = self.keys.listing(first, last)
        if await self.client.sismember(self.keys.partly_listed, f"{first}:{last}"):
            return "partly"
        if not await self._take(key, owner):
            return "busy"
        try:
            # The last owner may have settled it just before its lease ended (settled, then released).
            settled = await self.client.sismember(self.keys.partly_listed, f"{first}:{last}")
        except asyncio.CancelledError:  # cancelled meanwhile: given back
            await self._let_go(key, owner)
            raise
        if settled:
            await self._let_go(key, owner)
            return "partly"
        return "mine"

    async def renew_listing(self, first: int, last: int, owner: str) -> bool:
        return await self._renew_held(self.keys.listing(first, last), owner)

    async def listed(self, first: int, last: int, owner: str, whole: bool | None) -> None:
        """A listing ended: whole (its leaf is in the block log already), cut (False), or left
        unfinished (None: for whoever meets the parent next). Ends the lease; LeaseLost if it was
        another's by then (a cut is then not recorded: the listing's new owner settles it)."""
        key = self.keys.listing(first, last)
        holder = self._holder(key, owner)
        if holder is not None:
            del self._held[key]
        keys = [key, self.keys.partly_listed, self.keys.counters]
        mark = {True: "1", False: "0", None: ""}[whole]
        if holder is None or not await self._listed(keys=keys, args=[holder, mark, f"{first}:{last}"]):
            metrics.STALE_WRITES.labels("listing").inc()
            raise LeaseLost(f"the listing of {first}-{last}", Lease.listing(first, last))

    async def keep_answer(self, address: int, answer: str) -> None:
        """Keep a probe's answer until its step is written (`forget_answer`): a walk cut off while it
        waits (for a listing) leaves it to the shard's next walk, which reads it (`kept_answer`)
        rather than ask the registry again. One never forgotten (the block became known another
        way, and the address is not probed again) goes with the crawl's keys. Copied where the
        checkpoints are (`mirror`), so a Redis lost meanwhile is rebuilt with it."""
        await self.client.hset(self.keys.kept_answers, str(address), answer)
        if self.mirror is not None:
            self.mirror(copy_key("kept-answers", str(address)), answer)

    async def kept_answer(self, address: int) -> str | None:
        value: Any = await self.client.hget(self.keys.kept_answers, str(address))
        return None if value is None else _text(value)

    async def forget_answer(self, address: int) -> None:
        await self.client.hdel(self.keys.kept_answers, str(address))
        if self.mirror is not None:
            self.mirror(copy_key("kept-answers", str(address)), None)

    async def scope(self) -> Scope | None:
        """The crawl's scope as planned (None: planned before scopes were written)."""
        value: Any = await self.client.get(self.keys.scope)
        return Scope.decode(value.decode() if isinstance(value, bytes) else value) if value else None

    async def special(self) -> list[Shard]:
        """The special-purpose space the crawl's plans withheld (`Plan.special`), a shard-shaped span each."""
        raw: Any = await self.client.hvals(self.keys.special)
        return [Shard.from_json(value) for value in raw]

    async def cursor(self, shard_id: str) -> str | None:
        value: Any = await self.client.hget(self.keys.cursors, shard_id)
        return value.decode() if isinstance(value, bytes) else value

    async def is_done(self, shard_id: str) -> bool:
        """Whether a shard is done. One found done is remembered as if this process had finished it
        (marked done again after a loss): its lane commits its offset next, and should Redis lose
        the crawl before that commit reaches a rebuild's reading, the rebuild forgets it, and its
        message is never read again (a crawl that cannot finish)."""
        if not await self.client.sismember(self.keys.done, shard_id):
            return False
        span: Any = await self.client.hget(self.keys.planned, shard_id)
        if span is not None:
            first, _, last = _text(span).partition("-")
            self._done.setdefault(shard_id, int(last) - int(first) + 1)
        return True

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
    ) -> bool:
        known, changed = remember(self.index, answer)
        block = encode_block(answer) if changed and answer is not None else ""
        counts = step_counts(answer, known, changed, lookups, rate_limited, errors)
        lease_key = self._lease_key(under) if under is not None else self.keys.epoch
        held = self._held.get(lease_key, "-") if under is not None else ""  # "-": held by nobody
        counted = [x for n, v in counts.items() if v for x in (n, v)]
        keys = [self.keys.epoch, self.keys.blocks, self.keys.cursors, self.keys.counters,
                self.keys.owners, self.keys.done, lease_key]
        written = checkpoint

        async def attempt(epoch: str) -> int:
            nonlocal written
            written, owned = self._walk_fence(walk, checkpoint)
            return int(await self._record_step(
                keys=keys, args=[epoch, shard_id, written, block, owned, held, *counted]))

        code = await self._guarded(attempt)
        if code == 3 and under is not None:
            metrics.STALE_WRITES.labels(under.kind).inc()
            raise LeaseLost(str(under), under)
        if code == 2:
            metrics.STALE_WRITES.labels("shard").inc()
            if under is None or under.kind != "listing":
                raise LeaseLost(f"shard {shard_id}", None)
            # A listing goes on under its own lease (its blocks are kept; the walk that started it
            # has lost its shard, whose checkpoint is another's now: its next steps write none).
            self._walks.pop(walk or "", None)
            return changed
        if self.mirror is not None and written:
            self.mirror(shard_id, written)
        return changed

    def _walk_fence(self, walk: str | None, checkpoint: str) -> tuple[str, str]:
        """A walk's step as fenced now: the checkpoint it may write ("": none, the walk ended here,
        leave_shard) and the walk's token to check against the shard's owner ("-": lost; "": not
        checked, a write outside a walk, an admin's or a test's). Read at each try of the write: a
        store generation that ended re-owns a walk under a new token, and its first write after a
        loss was refused with the old one."""
        if walk is None:
            return checkpoint, ""
        if (ours := self._walks.get(walk)) is None:
            return "", ""
        return checkpoint, ours.holder or "-"

    def _lease_key(self, lease: Lease) -> str:
        if lease.kind == "cell":
            return self.keys.claim(lease.first)
        return self.keys.listing(lease.first, lease.last)

    async def shard_done(self, shard_id: str, addresses: int, figures: str = "") -> None:
        """Mark a shard finished (once, however often it is called); its checkpoint goes with it. A
        batch of the fill (0 addresses) keeps what it asked, `figures`, as it is first marked."""
        await self._guarded(lambda epoch: self._shard_done(
            keys=self._done_keys, args=[shard_id, addresses, epoch, figures]))
        for token in [t for t, w in self._walks.items() if w.shard_id == shard_id]:
            del self._walks[token]  # a done shard has no checkpoint left to write
        self._done[shard_id] = addresses
        if figures:
            self._figures[shard_id] = figures
        if self.mirror is not None:
            if figures:  # before the checkpoint's tombstone: a rebuild never has it done without them
                self.mirror(copy_key("fill-figures", shard_id), figures)
            self.mirror(shard_id, None)

    async def add_fill(self, owner: str, batches: dict[str, str], field: str = "",
                       progress: str = "") -> None:
        """The fill's batches published (batch id -> its item), counted among the shards, and the
        load's progress `field` set (if named), fenced by the load's lease (LeaseLost: another
        loads now)."""
        named = self.keys
        pairs = [x for kv in batches.items() for x in kv]
        holder = self._held.get(named.sources_lease, "-")
        keys = [named.epoch, named.sources_lease, named.fill, named.sources, named.counters, named.planned]
        args: list[Any] = [holder, len(batches), *pairs, field, progress]
        if not await self._guarded(lambda epoch: self._add_fill(keys=keys, args=[epoch, *args])):
            metrics.STALE_WRITES.labels("sources").inc()
            raise LeaseLost("the published files' load", Lease.sources())

    async def progress(self) -> Progress:
        return Progress.from_mapping(await self.client.hgetall(self.keys.counters))

    # The published files' load (worker/sources.py): one worker at a time, under a lease.
    async def take_sources(self, owner: str) -> bool:
        return await self._take(self.keys.sources_lease, owner)

    async def renew_sources(self, owner: str) -> bool:
        return await self._renew_held(self.keys.sources_lease, owner)

    async def release_sources(self, owner: str) -> None:
        await self._let_go(self.keys.sources_lease, owner)

    async def sources_state(self, crawl: str | None = None) -> dict[str, str]:
        """The load's progress as its loaders wrote it (field -> JSON text); of another crawl on the
        same Redis (`crawl`: a previous generation's, which a refresh reads) if named."""
        raw: dict[Any, Any] = await self.client.hgetall(Keys(crawl).sources if crawl else self.keys.sources)
        return {_text(k): _text(v) for k, v in raw.items()}

    async def sources_write(
        self, owner: str, answers: Iterable[Answer] = (), *, fields: dict[str, str] | None = None,
        clear: Iterable[str] = (), lookups: int = 0,
    ) -> None:
        """One step of the load, fenced by its lease: the blocks of records the broker acknowledged
        to the log (and the local index), progress `fields` set, `clear`ed ones dropped. LeaseLost:
        another worker loads the files now (we stalled past the lease)."""
        blocks, new = [], 0
        for answer in answers:
            known, changed = remember(self.index, answer)
            if changed:
                blocks.append(encode_block(answer))
                new += not known
        pairs = [x for kv in (fields or {}).items() for x in kv]
        dropped = list(clear)
        counts = [x for kv in (("blocks", new), ("lookups", lookups)) if kv[1] for x in kv]
        holder = self._held.get(self.keys.sources_lease, "-")
        args = [holder, len(pairs) // 2, len(dropped), len(counts) // 2, *pairs, *dropped, *counts, *blocks]
        keys = [self.keys.epoch, self.keys.sources_lease, self.keys.blocks, self.keys.sources,
                self.keys.counters]
        if not await self._guarded(lambda epoch: self._sources_write(keys=keys, args=[epoch, *args])):
            metrics.STALE_WRITES.labels("sources").inc()
            raise LeaseLost("the published files' load", Lease.sources())
