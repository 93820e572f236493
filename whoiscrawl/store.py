"""The CIDR store: known blocks, claims, shard checkpoints and counters, in memory or in Redis."""

from __future__ import annotations

import asyncio
import json
import os
from array import array
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import redis
import redis.asyncio as aioredis
from sortedcontainers import SortedDict

from whoiscrawl.records import NetworkRecord, Progress
from whoiscrawl.space import Scope
from whoiscrawl.strategy import Answer


class KnownBlocks:
    """The in-process interval index of leaf blocks: is an address inside a known leaf? O(log n).

    A compact sorted pair of arrays (8 bytes a block) holds the bulk; new blocks go to a small
    sorted dict that is merged in when it grows, so inserts stay cheap and memory stays flat."""

    MERGE_AT = 65536

    def __init__(self) -> None:
        self._starts = array("I")
        self._ends = array("I")
        self._recent: SortedDict = SortedDict()
        self._parents: set[int] = set()  # non-leaf blocks seen, as first << 32 | last

    def __len__(self) -> int:
        return len(self._starts) + len(self._recent)

    def terminal_end(self, address: int) -> int | None:
        leaf = self.leaf(address)
        return None if leaf is None else leaf[1]

    def leaf(self, address: int) -> tuple[int, int] | None:
        """The outermost known leaf holding the address (blocks nest, so it ends last)."""
        best: tuple[int, int] | None = None
        i = bisect_right(self._starts, address) - 1
        if i >= 0 and self._ends[i] >= address:
            best = (self._starts[i], self._ends[i])
        recent = self._recent
        if recent:
            j = recent.bisect_right(address) - 1
            if j >= 0:
                first, end = recent.peekitem(j)
                if end >= address and (best is None or end > best[1]):
                    best = (first, end)
        return best

    def add(self, first: int, last: int, terminal: bool) -> bool:
        """Remember a block; True if it was not known before."""
        if not terminal:
            key = first << 32 | last
            if key in self._parents:
                return False
            self._parents.add(key)
            return True
        end = self.terminal_end(first)
        if end is not None and end >= last:
            return False  # inside a known leaf
        for start in list(self._recent.irange(first, last)):
            if self._recent[start] <= last:
                del self._recent[start]  # the new block holds it
        self._recent[first] = last
        if len(self._recent) >= self.MERGE_AT:
            self._merge()
        return True

    def _merge(self) -> None:
        merged = sorted(
            [*zip(self._starts, self._ends, strict=True), *self._recent.items()], key=lambda p: (p[0], -p[1])
        )
        starts, ends = array("I"), array("I")
        for first, last in merged:
            if ends and last <= ends[-1] and first >= starts[-1]:
                continue  # nested in the previous block: the outer one already answers
            starts.append(first)
            ends.append(last)
        self._starts, self._ends = starts, ends
        self._recent.clear()

    def covers(self, first: int, last: int) -> bool:
        """Is first..last inside a known leaf?"""
        end = self.terminal_end(first)
        return end is not None and end >= last

    def knows(self, first: int, last: int) -> bool:
        return self.covers(first, last) or (first << 32 | last) in self._parents


def _remember(index: KnownBlocks, answer: Answer | None) -> tuple[bool, bool]:
    """Add an answer to the index: (was the block known before, did the index change). A parent
    whose children are all listed becomes a leaf: known before, and still a change to share."""
    if answer is None:
        return False, False
    known = index.knows(answer.first, answer.last)
    return known, index.add(answer.first, answer.last, answer.terminal)


# Claims on a cell and on a listing are leases their owner renews while it works (every third of
# one); one whose owner died lapses within seconds, and whoever meets the cell or parent next takes
# it over.
LEASE_S = 12.0
ListingClaim = Literal["mine", "busy", "partly"]  # ours to list; another owner's now; settled, cut


class Store(Protocol):
    """What a shard walk needs from the store; in memory for one process, Redis for a fleet."""

    index: KnownBlocks

    async def sync(self) -> None: ...
    async def claim(self, address: int, owner: str) -> bool: ...
    async def renew_claim(self, address: int, owner: str) -> bool: ...
    async def release(self, address: int, owner: str) -> None: ...
    async def first_to_list(self, first: int, last: int, owner: str) -> ListingClaim: ...
    async def renew_listing(self, first: int, last: int, owner: str) -> bool: ...
    async def listed(self, first: int, last: int, owner: str, whole: bool | None) -> None: ...
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
    ) -> bool: ...
    async def shard_done(self, shard_id: str, addresses: int) -> None: ...
    async def progress(self) -> Progress: ...


# --- one process -----------------------------------------------------------------------------


@dataclass
class MemoryStore:
    """The store of a local crawl: everything in this process, checkpointed to a JSON file."""

    checkpoint_path: Path | None = None
    index: KnownBlocks = field(default_factory=KnownBlocks)
    counters: Progress = field(default_factory=Progress)
    cursors: dict[str, str] = field(default_factory=dict)  # shard id -> its walk's checkpoint
    done: set[str] = field(default_factory=set)
    partly_listed: set[int] = field(default_factory=set)  # parents no listing could settle
    listed_whole: set[int] = field(default_factory=set)  # parents listed whole: leaves the file cannot tell

    async def sync(self) -> None:
        return None

    async def claim(self, address: int, owner: str) -> bool:
        return True  # one walk per region in one process: nothing to race

    async def renew_claim(self, address: int, owner: str) -> bool:
        return True

    async def release(self, address: int, owner: str) -> None:
        return None

    async def first_to_list(self, first: int, last: int, owner: str) -> ListingClaim:
        # One process: the crawler itself keeps two lanes from listing one parent at once.
        return "partly" if (first << 32 | last) in self.partly_listed else "mine"

    async def renew_listing(self, first: int, last: int, owner: str) -> bool:
        return True

    async def listed(self, first: int, last: int, owner: str, whole: bool | None) -> None:
        if whole is not None:
            (self.listed_whole if whole else self.partly_listed).add(first << 32 | last)

    async def cursor(self, shard_id: str) -> str | None:
        return self.cursors.get(shard_id)

    async def is_done(self, shard_id: str) -> bool:
        return shard_id in self.done

    async def record_step(
        self,
        shard_id: str,
        checkpoint: str,
        answer: Answer | None,
        *,
        lookups: int = 1,
        rate_limited: int = 0,
        errors: int = 0,
    ) -> bool:
        known, changed = _remember(self.index, answer)
        self.cursors[shard_id] = checkpoint
        c = self.counters
        c.lookups += lookups
        c.rate_limited += rate_limited
        c.errors += errors
        c.blocks += int(changed and not known)
        c.wasted += int(answer is not None and answer.terminal and not changed)
        return changed

    async def shard_done(self, shard_id: str, addresses: int) -> None:
        if shard_id not in self.done:
            self.done.add(shard_id)
            self.counters.shards_done += 1
            self.counters.addresses_done += addresses
        self.cursors.pop(shard_id, None)

    async def progress(self) -> Progress:
        return self.counters

    def save(self) -> None:
        if self.checkpoint_path is None:
            return
        state = {
            "counters": asdict(self.counters),
            "cursors": self.cursors,
            "done": sorted(self.done),
            "partly_listed": sorted(self.partly_listed),
            "listed_whole": sorted(self.listed_whole),
        }
        tmp = self.checkpoint_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.checkpoint_path)  # atomic: a crash leaves the old or the new file

    def load(self) -> bool:
        if self.checkpoint_path is None or not self.checkpoint_path.exists():
            return False
        state = json.loads(self.checkpoint_path.read_text())
        self.counters = Progress(**state["counters"])
        self.cursors = {k: str(v) for k, v in state["cursors"].items()}  # older files: a bare cursor
        self.done = set(state["done"])
        self.partly_listed = set(state.get("partly_listed", []))
        self.listed_whole = set(state.get("listed_whole", []))
        for key in self.listed_whole:
            self.index.add(key >> 32, key & 0xFFFFFFFF, True)
        return True


# --- a fleet -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    """Every Redis key of one crawl, named in one place."""

    crawl: str

    @property
    def prefix(self) -> str:
        return f"whoiscrawl:{self.crawl}:"

    @property
    def blocks(self) -> str:  # a stream: the append-only log of blocks, read incrementally by workers
        return self.prefix + "blocks"

    @property
    def counters(self) -> str:
        return self.prefix + "counters"

    @property
    def scope(self) -> str:
        return self.prefix + "scope"

    @property
    def cursors(self) -> str:
        return self.prefix + "cursors"

    @property
    def done(self) -> str:
        return self.prefix + "done"

    def claim(self, cell: int) -> str:
        return f"{self.prefix}claim:{cell}"

    def listing(self, first: int, last: int) -> str:
        return f"{self.prefix}listing:{first}:{last}"

    @property
    def partly_listed(self) -> str:
        return self.prefix + "partly-listed"

    def limiter(self, registry: str, egress: str) -> str:
        return f"{self.prefix}rate:{registry}:{egress}"

    def plan(self, marker: str) -> str:  # the operator's publish-once marker of one plan
        return f"{self.prefix}plan:{marker}"


def _encode(answer: Answer) -> str:
    return f"{answer.first}:{answer.last}:{int(answer.terminal)}"


_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_SHARD_DONE = """
if redis.call('sadd', KEYS[1], ARGV[1]) == 1 then
  redis.call('hincrby', KEYS[2], 'shards_done', 1)
  redis.call('hincrby', KEYS[2], 'addresses_done', ARGV[2])
end
redis.call('hdel', KEYS[3], ARGV[1])
return 1
"""


class RedisStore:
    """The crawl's state in Redis, shared by every worker; admin calls are synchronous."""

    def __init__(self, url: str, crawl: str) -> None:
        self.keys = Keys(crawl)
        self.client = redis.Redis.from_url(url)

    def progress(self) -> Progress:
        return Progress.from_mapping(self.client.hgetall(self.keys.counters))

    def set_shards_total(self, n: int) -> None:
        self.client.hset(self.keys.counters, "shards_total", n)

    def set_scope(self, scope: Scope) -> None:
        """What the crawl covers, for workers to keep listed children inside it."""
        self.client.set(self.keys.scope, scope.encode())

    def set_addresses_total(self, n: int) -> None:
        self.client.hset(self.keys.counters, "addresses_total", n)

    def rebuild_blocks(self, records: Iterable[NetworkRecord], resolution: int = 24) -> int:
        """Write the block log anew from result records (Redis is a cache of the compacted results
        topic); returns the blocks written. Workers' incremental reads pick the new log up as is."""
        seen = KnownBlocks()  # an uncompacted topic can still hold a block twice
        self.client.delete(self.keys.blocks)
        pipe = self.client.pipeline(transaction=False)
        written = 0
        for record in records:
            answer = Answer.of(record, resolution)
            if not seen.add(answer.first, answer.last, answer.terminal):
                continue
            pipe.xadd(self.keys.blocks, {"b": _encode(answer)})
            written += 1
            if len(pipe) >= 10_000:
                pipe.execute()
        pipe.hset(self.keys.counters, "blocks", written)
        pipe.execute()
        return written

    def delete_crawl(self) -> int:
        names = list(self.client.scan_iter(match=self.keys.prefix + "*", count=1000))
        return int(self.client.delete(*names)) if names else 0

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])


class RedisBlockStore:
    """A worker's view of the shared store: a local index kept current from the Redis block log."""

    LEASE_MS = int(LEASE_S * 1000)

    def __init__(self, url: str, crawl: str) -> None:
        self.keys = Keys(crawl)
        self.client = aioredis.Redis.from_url(url)
        self.index = KnownBlocks()
        self._last_id = "0-0"
        self._release = self.client.register_script(_RELEASE)
        self._renew = self.client.register_script(_RENEW)
        self._shard_done = self.client.register_script(_SHARD_DONE)
        self._sync_lock = asyncio.Lock()

    async def close(self) -> None:
        await self.client.aclose()

    async def sync(self) -> None:
        """Read the blocks other workers logged since the last sync (all of them, the first time)."""
        async with self._sync_lock:
            while True:
                low = "-" if self._last_id == "0-0" else f"({self._last_id}"
                raw: Any = await self.client.xrange(self.keys.blocks, min=low, count=20000)
                entries: list[Any] = raw or []
                for entry_id, data in entries:
                    first, last, terminal = (int(x) for x in data[b"b"].split(b":"))
                    self.index.add(first, last, bool(terminal))
                    self._last_id = entry_id.decode()
                if len(entries) < 20000:
                    return

    async def claim(self, address: int, owner: str) -> bool:
        # Claims are per /24 cell: two workers never look up addresses of one cell at once.
        ok = await self.client.set(self.keys.claim(address >> 8), owner, nx=True, px=self.LEASE_MS)
        return bool(ok)

    async def renew_claim(self, address: int, owner: str) -> bool:
        return bool(await self._renew(keys=[self.keys.claim(address >> 8)], args=[owner, self.LEASE_MS]))

    async def release(self, address: int, owner: str) -> None:
        await self._release(keys=[self.keys.claim(address >> 8)], args=[owner])

    async def first_to_list(self, first: int, last: int, owner: str) -> ListingClaim:
        """Claim a parent's listing (a lease: `renew_listing` keeps it). A parent listed whole
        becomes a leaf, so nobody asks again; one that no listing could settle (cut short) is
        remembered, because asking again gives the same cut. "busy": another worker lists it now."""
        key = self.keys.listing(first, last)
        if await self.client.sismember(self.keys.partly_listed, f"{first}:{last}"):
            return "partly"
        if not await self.client.set(key, owner, nx=True, px=self.LEASE_MS):
            return "busy"
        # The last owner may have settled it just before its lease ended (settled, then released).
        if await self.client.sismember(self.keys.partly_listed, f"{first}:{last}"):
            await self._release(keys=[key], args=[owner])
            return "partly"
        return "mine"

    async def renew_listing(self, first: int, last: int, owner: str) -> bool:
        key = self.keys.listing(first, last)
        return bool(await self._renew(keys=[key], args=[owner, self.LEASE_MS]))

    async def listed(self, first: int, last: int, owner: str, whole: bool | None) -> None:
        """A listing ended: whole (its leaf is in the block log already), cut (False), or left
        unfinished (None: for whoever meets the parent next). Ends the lease."""
        if whole is False:
            await self.client.sadd(self.keys.partly_listed, f"{first}:{last}")
        await self._release(keys=[self.keys.listing(first, last)], args=[owner])

    async def scope(self) -> Scope | None:
        """The crawl's scope as planned (None: planned before scopes were written)."""
        value: Any = await self.client.get(self.keys.scope)
        return Scope.decode(value.decode() if isinstance(value, bytes) else value) if value else None

    async def cursor(self, shard_id: str) -> str | None:
        value: Any = await self.client.hget(self.keys.cursors, shard_id)
        return value.decode() if isinstance(value, bytes) else value

    async def is_done(self, shard_id: str) -> bool:
        return bool(await self.client.sismember(self.keys.done, shard_id))

    async def record_step(
        self,
        shard_id: str,
        checkpoint: str,
        answer: Answer | None,
        *,
        lookups: int = 1,
        rate_limited: int = 0,
        errors: int = 0,
    ) -> bool:
        known, changed = _remember(self.index, answer)
        pipe = self.client.pipeline(transaction=False)
        if changed and answer is not None:
            pipe.xadd(self.keys.blocks, {"b": _encode(answer)})
            if not known:
                pipe.hincrby(self.keys.counters, "blocks", 1)
        if answer is not None and answer.terminal and not changed:
            pipe.hincrby(self.keys.counters, "wasted", 1)
        pipe.hset(self.keys.cursors, shard_id, checkpoint)
        for name, value in (("lookups", lookups), ("rate_limited", rate_limited), ("errors", errors)):
            if value:
                pipe.hincrby(self.keys.counters, name, value)
        await pipe.execute()
        return changed

    async def shard_done(self, shard_id: str, addresses: int) -> None:
        await self._shard_done(
            keys=[self.keys.done, self.keys.counters, self.keys.cursors], args=[shard_id, addresses]
        )

    async def progress(self) -> Progress:
        return Progress.from_mapping(await self.client.hgetall(self.keys.counters))
