"""The CIDR store: known blocks, claims, shard checkpoints and counters, in memory or in Redis."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import redis
import redis.asyncio as aioredis

from whoiscrawl.blocks import KnownBlocks, decode_block, encode_block
from whoiscrawl.keys import Keys
from whoiscrawl.records import NetworkRecord, Progress
from whoiscrawl.space import Scope
from whoiscrawl.strategy import Answer


def _remember(index: KnownBlocks, answer: Answer | None) -> tuple[bool, bool]:
    """Add an answer to the index: (was the block known before, did the index change). A parent
    whose children are all listed becomes a leaf: known before, and still a change to share."""
    if answer is None:
        return False, False
    known = index.knows(answer.first, answer.last)
    return known, index.add(answer.first, answer.last, answer.terminal)


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
        for name, value in step_counts(answer, known, changed, lookups, rate_limited, errors).items():
            setattr(self.counters, name, getattr(self.counters, name) + value)
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
            pipe.xadd(self.keys.blocks, {"b": encode_block(answer)})
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
                    first, last, terminal = decode_block(data[b"b"])
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
            pipe.xadd(self.keys.blocks, {"b": encode_block(answer)})
        pipe.hset(self.keys.cursors, shard_id, checkpoint)
        for name, value in step_counts(answer, known, changed, lookups, rate_limited, errors).items():
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
