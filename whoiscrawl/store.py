"""The CIDR store: known blocks, claims, shard checkpoints and counters, in memory or in Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import redis
import redis.asyncio as aioredis
import redis.asyncio.retry
import redis.retry
from redis.backoff import ExponentialBackoff

from whoiscrawl import metrics, redis_client
from whoiscrawl.blocks import KnownBlocks, decode_block, encode_block
from whoiscrawl.keys import Keys
from whoiscrawl.records import NetworkRecord, Progress, Shard
from whoiscrawl.space import Scope
from whoiscrawl.strategy import Answer, worth_listing

log = logging.getLogger(__name__)


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
    """What a shard walk needs from the store; in memory for one process, Redis for a fleet."""

    index: KnownBlocks

    async def sync(self) -> None: ...
    async def take_shard(self, shard_id: str, owner: str) -> None: ...
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
        under: Lease | None = None,
    ) -> bool: ...
    async def shard_done(self, shard_id: str, addresses: int) -> None: ...
    async def progress(self) -> Progress: ...


# --- one process -----------------------------------------------------------------------------

# A local crawl saves every half second. Its checkpoint file is JSON lines: the first line the
# whole state (a snapshot), each further line what changed since the line before (a journal), so
# a save writes what changed, not the whole map (which made a crawl of all IPv4 slow down as it
# grew). The file is rewritten as one snapshot (compacted) once the journal outgrows the snapshot,
# so compaction costs at most as much again as the journal lines it replaces.
COMPACT_MIN_BYTES = 64 * 1024  # a small crawl's journal: not worth rewriting the file for


class CheckpointError(ValueError):
    """A local crawl's checkpoint file cannot be read; the text names the file and the line."""


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A local crawl's state from its checkpoint file: the snapshot with the journal's changes
    applied. A last line cut off mid-write (the crawl was killed) is dropped: the state is then the
    one saved before it, as after a kill between two saves."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    state: dict[str, Any] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError as exc:
            if number == len(lines) and number > 1:  # the last line, with no newline: cut off
                break
            raise CheckpointError(
                f"{path} is damaged at line {number} ({exc}): resume from a copy, or start the "
                "crawl anew with another --out"
            ) from exc
        if number == 1:
            state = {"counters": doc["counters"], "cursors": dict(doc["cursors"]),
                     "done": list(doc["done"]), "partly_listed": list(doc.get("partly_listed", [])),
                     "listed_whole": list(doc.get("listed_whole", [])), "seeded": doc.get("seeded", {})}
        else:
            _apply(state, doc)
    if not state:
        raise CheckpointError(f"{path} holds no snapshot: start the crawl anew with another --out")
    return state


def _apply(state: dict[str, Any], change: dict[str, Any]) -> None:
    """One journal line onto the state (a cursor of null: the shard's walk ended)."""
    state["counters"] = change["counters"]
    for shard_id, cursor in change.get("cursors", {}).items():
        if cursor is None:
            state["cursors"].pop(shard_id, None)
        else:
            state["cursors"][shard_id] = cursor
    for name in ("done", "partly_listed", "listed_whole"):
        state[name].extend(change.get(name, []))


@dataclass
class _Journal:
    """What changed since the checkpoint file's last line, and how big the file's parts are."""

    cursors: set[str] = field(default_factory=set)  # shards whose cursor changed or was dropped
    done: list[str] = field(default_factory=list)
    partly_listed: list[int] = field(default_factory=list)
    listed_whole: list[int] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)  # as last written
    seeded: dict[str, Any] = field(default_factory=dict)  # as last written (a change: a new snapshot)
    snapshot_bytes: int | None = None  # None: no snapshot written by this process yet
    journal_bytes: int = 0

    def clear(self) -> None:
        self.cursors.clear()
        self.done.clear()
        self.partly_listed.clear()
        self.listed_whole.clear()


@dataclass
class MemoryStore:
    """The store of a local crawl: everything in this process, checkpointed to a JSON-lines file."""

    checkpoint_path: Path | None = None
    index: KnownBlocks = field(default_factory=KnownBlocks)
    counters: Progress = field(default_factory=Progress)
    cursors: dict[str, str] = field(default_factory=dict)  # shard id -> its walk's checkpoint
    done: set[str] = field(default_factory=set)
    partly_listed: set[int] = field(default_factory=set)  # parents no listing could settle
    listed_whole: set[int] = field(default_factory=set)  # parents listed whole: leaves the file cannot tell
    # registry -> the dump seeded: its serial, whether whole, the spans it skipped (sources/seed.dump_leaf)
    seeded: dict[str, dict[str, Any]] = field(default_factory=dict)
    _journal: _Journal = field(default_factory=_Journal, repr=False)

    async def sync(self) -> None:
        return None

    async def take_shard(self, shard_id: str, owner: str) -> None:
        return None  # one process walks each shard once at a time: nothing to fence

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
        if whole is None:
            return
        key = first << 32 | last
        kept, journal = (self.listed_whole, self._journal.listed_whole) if whole else (
            self.partly_listed, self._journal.partly_listed)
        if key not in kept:
            kept.add(key)
            journal.append(key)

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
        under: Lease | None = None,
    ) -> bool:
        known, changed = _remember(self.index, answer)
        self.cursors[shard_id] = checkpoint
        self._journal.cursors.add(shard_id)
        for name, value in step_counts(answer, known, changed, lookups, rate_limited, errors).items():
            setattr(self.counters, name, getattr(self.counters, name) + value)
        return changed

    async def shard_done(self, shard_id: str, addresses: int) -> None:
        if shard_id not in self.done:
            self.done.add(shard_id)
            self._journal.done.append(shard_id)
            self.counters.shards_done += 1
            self.counters.addresses_done += addresses
        if self.cursors.pop(shard_id, None) is not None:
            self._journal.cursors.add(shard_id)

    async def progress(self) -> Progress:
        return self.counters

    def save(self) -> None:
        """Append what changed since the last save (nothing if nothing did), or write the whole
        state anew: the first time, and once the journal outgrew the snapshot."""
        if self.checkpoint_path is None:
            return
        journal = self._journal
        limit = max(journal.snapshot_bytes or 0, COMPACT_MIN_BYTES)
        # The dumps seeded (once a crawl) and the parents they settled go out with a whole snapshot.
        if journal.snapshot_bytes is None or journal.journal_bytes > limit or self.seeded != journal.seeded:
            self._write_snapshot()
            return
        counters = asdict(self.counters)
        if counters == journal.counters and not (
            journal.cursors or journal.done or journal.partly_listed or journal.listed_whole
        ):
            return
        change: dict[str, Any] = {"counters": counters}
        if journal.cursors:
            change["cursors"] = {s: self.cursors.get(s) for s in sorted(journal.cursors)}
        for name in ("done", "partly_listed", "listed_whole"):
            if getattr(journal, name):
                change[name] = getattr(journal, name)
        line = json.dumps(change).encode() + b"\n"
        with self.checkpoint_path.open("ab") as fh:
            fh.write(line)  # one write: a kill cuts at most this line short, which load drops
        journal.journal_bytes += len(line)
        journal.counters = counters
        journal.clear()

    def _write_snapshot(self) -> None:
        assert self.checkpoint_path is not None
        counters = asdict(self.counters)
        state = {
            "counters": counters,
            "cursors": self.cursors,
            "done": sorted(self.done),
            "partly_listed": sorted(self.partly_listed),
            "listed_whole": sorted(self.listed_whole),
            "seeded": self.seeded,
        }
        line = json.dumps(state).encode() + b"\n"
        tmp = self.checkpoint_path.with_suffix(".tmp")
        tmp.write_bytes(line)
        os.replace(tmp, self.checkpoint_path)  # atomic: a crash leaves the old or the new file
        self._journal.clear()
        self._journal.counters = counters
        self._journal.seeded = json.loads(json.dumps(self.seeded))
        self._journal.snapshot_bytes, self._journal.journal_bytes = len(line), 0

    def load(self) -> bool:
        """The state saved last (False: no checkpoint). The next save writes a snapshot, which
        also drops a journal line a kill cut off."""
        if self.checkpoint_path is None or not self.checkpoint_path.exists():
            return False
        state = read_checkpoint(self.checkpoint_path)
        self.counters = Progress(**state["counters"])
        self.cursors = {k: str(v) for k, v in state["cursors"].items()}  # older files: a bare cursor
        self.done = set(state["done"])
        self.partly_listed = set(state.get("partly_listed", []))
        self.listed_whole = set(state.get("listed_whole", []))
        self.seeded = dict(state.get("seeded", {}))
        for key in self.listed_whole:
            self.index.add(key >> 32, key & 0xFFFFFFFF, True)
        self._journal = _Journal()
        return True


# --- a fleet -----------------------------------------------------------------------------------



_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
# Fencing: every lease (a cell's claim, a listing's, a shard's walk) is held as `<token>/<holder>`,
# the token drawn from a counter that only grows (KEYS[2]). A write under a lease is checked against
# it in the same script, so one made by a holder that stalled while the lease passed on is refused.
_TAKE = """
local holder = redis.call('incr', KEYS[2]) .. '/' .. ARGV[1]
if redis.call('set', KEYS[1], holder, 'NX', 'PX', ARGV[2]) then return holder end
return false
"""
# A lease taken as its taker was cancelled: its holder's name (ARGV[1]) is known, not its token.
_GIVE_BACK = """
local held = redis.call('get', KEYS[1])
if held and string.sub(held, -#ARGV[1] - 1) == '/' .. ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
# A shard's walk: the latest to start it owns it (Kafka gave it the partition); after a store
# generation ended, only if nobody took it meanwhile (ARGV[3] '1').
_TAKE_SHARD = """
local holder = redis.call('incr', KEYS[1]) .. '/' .. ARGV[2]
if ARGV[3] == '1' then
  if redis.call('hsetnx', KEYS[2], ARGV[1], holder) == 0 then return false end
else
  redis.call('hset', KEYS[2], ARGV[1], holder)
end
return holder
"""
# Writes of a walk land only in the store generation (epoch) the worker reads: never in a Redis
# that lost its data and is not rebuilt yet, where a rebuild would drop or double them (-1).
# Fenced: a write made under a lease it no longer holds (a cell's claim, a listing's) is refused
# whole (3: its lookups still counted); a checkpoint is taken only while the walk owns its shard (not
# done, its token current): else the block found is kept, the checkpoint refused (2).
_RECORD_STEP = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return -1 end
if ARGV[6] ~= '' and redis.call('get', KEYS[7]) ~= ARGV[6] then
  for i = 7, #ARGV, 2 do
    if ARGV[i] ~= 'blocks' and ARGV[i] ~= 'wasted' then
      redis.call('hincrby', KEYS[4], ARGV[i], ARGV[i + 1])
    end
  end
  redis.call('hincrby', KEYS[4], 'stale_writes_refused', 1)
  return 3
end
if ARGV[4] ~= '' then redis.call('xadd', KEYS[2], '*', 'b', ARGV[4]) end
for i = 7, #ARGV, 2 do redis.call('hincrby', KEYS[4], ARGV[i], ARGV[i + 1]) end
if redis.call('sismember', KEYS[6], ARGV[2]) == 1
   or (ARGV[5] ~= '' and redis.call('hget', KEYS[5], ARGV[2]) ~= ARGV[5]) then
  redis.call('hincrby', KEYS[4], 'stale_writes_refused', 1)
  return 2
end
local old = redis.call('hget', KEYS[3], ARGV[2])
if old and tonumber(string.match(old, '^%d+')) > tonumber(string.match(ARGV[3], '^%d+')) then
  redis.call('hincrby', KEYS[4], 'checkpoints_backwards', 1)
end
redis.call('hset', KEYS[3], ARGV[2], ARGV[3])
return 1
"""
# A listing ends (under its lease, else refused: 0): cut short, it is remembered as partly listed.
_LISTED = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then
  redis.call('hincrby', KEYS[3], 'stale_writes_refused', 1)
  return 0
end
if ARGV[2] == '0' then redis.call('sadd', KEYS[2], ARGV[3]) end
redis.call('del', KEYS[1])
return 1
"""
# A batch of the published files' load (worker/sources.py), under its lease (else refused: 0): its
# blocks to the log, its progress fields set (ARGV[3] of them, pairs) and cleared (ARGV[4] names),
# its counts added (ARGV[5] pairs), all at once. Only in the store generation the loader reads (-1).
_SOURCES_WRITE = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('get', KEYS[2]) ~= ARGV[2] then
  redis.call('hincrby', KEYS[5], 'stale_writes_refused', 1)
  return 0
end
local i = 6
for _ = 1, tonumber(ARGV[3]) do redis.call('hset', KEYS[4], ARGV[i], ARGV[i + 1]); i = i + 2 end
for _ = 1, tonumber(ARGV[4]) do redis.call('hdel', KEYS[4], ARGV[i]); i = i + 1 end
for _ = 1, tonumber(ARGV[5]) do redis.call('hincrby', KEYS[5], ARGV[i], ARGV[i + 1]); i = i + 2 end
for j = i, #ARGV do redis.call('xadd', KEYS[3], '*', 'b', ARGV[j]) end
return 1
"""
# A finished shard: its checkpoint and its owner go with it.
_SHARD_DONE = """
if ARGV[3] ~= '' and redis.call('get', KEYS[4]) ~= ARGV[3] then return -1 end
if redis.call('sadd', KEYS[1], ARGV[1]) == 1 then
  redis.call('hincrby', KEYS[2], 'shards_done', 1)
  redis.call('hincrby', KEYS[2], 'addresses_done', ARGV[2])
end
redis.call('hdel', KEYS[3], ARGV[1])
redis.call('hdel', KEYS[5], ARGV[1])
return 1
"""


# Every Redis call waits out a restart (connection refused, reset) for up to ~40 s, then fails.
REDIS_RETRIES = 45


def _backoff() -> ExponentialBackoff:
    return ExponentialBackoff(cap=1.0, base=0.05)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def new_epoch() -> str:
    return uuid.uuid4().hex[:12]


class RedisStore:
    """The crawl's state in Redis, shared by every worker; admin calls are synchronous."""

    def __init__(self, url: str, crawl: str, client: redis.Redis | None = None) -> None:
        """`client`: a shared one (the operator's, with its own timeouts); else one that waits out
        a Redis restart (REDIS_RETRIES)."""
        self.keys = Keys(crawl)
        self.client = client if client is not None else redis.Redis.from_url(
            url, retry=redis.retry.Retry(_backoff(), REDIS_RETRIES))

    def mark_epoch(self) -> None:
        """Start the store's first generation (planning does): a Redis that loses it lost the crawl."""
        self.client.set(self.keys.epoch, new_epoch(), nx=True)

    def epoch(self) -> str | None:
        value: Any = self.client.get(self.keys.epoch)
        return value.decode() if isinstance(value, bytes) else value

    @contextlib.contextmanager
    def rebuilding(self, owner: str) -> Iterator[bool]:
        """The rebuild lease (True: ours, renewed while the block runs; False: someone else's)."""
        ms = int(REBUILD_LEASE_S * 1000)
        if not self.client.set(self.keys.rebuilding, owner, nx=True, px=ms):
            yield False
            return
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(REBUILD_LEASE_S / 3):
                self.client.eval(_RENEW, 1, self.keys.rebuilding, owner, ms)

        keeper = threading.Thread(target=renew, name="rebuild-lease", daemon=True)
        keeper.start()
        try:
            yield True
        finally:
            stop.set()
            keeper.join()
            self.client.eval(_RELEASE, 1, self.keys.rebuilding, owner)

    def restore_plan(
        self, shards: dict[str, tuple[int, int]], done: dict[str, int], cursors: dict[str, str]
    ) -> None:
        """The plan anew (shard id -> its span), from the work topic, with the finished shards (id
        -> addresses) from the committed offsets and the walks' checkpoints of the others; the other
        counters stay."""
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.keys.done, self.keys.cursors, self.keys.planned)
        walking: dict[Any, Any] = {k: v for k, v in cursors.items() if k in shards and k not in done}
        if walking:
            pipe.hset(self.keys.cursors, mapping=walking)
        pipe.hdel(self.keys.counters, "shards_done", "addresses_done")
        self._plan(pipe, shards)
        for shard_id, addresses in done.items():
            pipe.eval(_SHARD_DONE, 5, self.keys.done, self.keys.counters, self.keys.cursors,
                      self.keys.epoch, self.keys.owners, shard_id, addresses, "")
        pipe.execute()

    def add_plan(self, shards: Iterable[Shard]) -> tuple[int, int]:
        """Add a plan's shards to the crawl's (a re-plan publishes on top of the earlier plans and
        shares the shards of the ranges they had in common); the totals and the scope are the
        union's. Returns the shards and addresses planned in all."""
        planned: dict[bytes, bytes] = self.client.hgetall(self.keys.planned)  # type: ignore[assignment]
        spans = {}
        for key, value in planned.items():
            first, _, last = value.partition(b"-")
            spans[key.decode()] = (int(first), int(last))
        spans.update({s.shard_id: (s.first, s.last) for s in shards})
        pipe = self.client.pipeline(transaction=False)
        totals = self._plan(pipe, spans)
        pipe.execute()
        return totals

    def _plan(self, pipe: Any, spans: dict[str, tuple[int, int]]) -> tuple[int, int]:
        """Queue the plan's shards, totals and scope on a pipeline; returns the totals."""
        addresses = sum(b - a + 1 for a, b in spans.values())
        if spans:
            pipe.hset(self.keys.planned, mapping={k: f"{a}-{b}" for k, (a, b) in spans.items()})
            pipe.set(self.keys.scope, Scope.of(spans.values()).encode())
        pipe.hset(self.keys.counters, mapping={"shards_total": len(spans), "addresses_total": addresses})
        return len(spans), addresses

    def progress(self) -> Progress:
        return Progress.from_mapping(self.client.hgetall(self.keys.counters))

    def rebuild_blocks(self, records: Iterable[NetworkRecord], resolution: int = 24) -> int:
        """Write the block log anew from result records (Redis is a cache of the compacted results
        topic); returns the blocks written. Workers read it from its start once the epoch is new.
        Which parents were listed whole is not on the topic: every network worth listing comes back
        a parent (the lane that meets it next lists it again), so none looks listed when it was not."""
        seen = KnownBlocks()  # an uncompacted topic can still hold a block twice
        self.client.delete(self.keys.blocks)
        pipe = self.client.pipeline(transaction=False)
        written = 0
        for record in records:
            answer = Answer.of(record, resolution)
            if worth_listing(record, resolution):
                # Maybe unlisted yet, or listed part way: a parent until a listing ends again.
                answer = Answer(answer.first, answer.last, False)
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

    def __init__(
        self,
        url: str,
        crawl: str,
        rebuild: Callable[[], Awaitable[bool]] | None = None,
        mirror: Callable[[str, str | None], None] | None = None,
    ) -> None:
        """`rebuild`: what rebuilds the store from the crawl's topics when Redis lost it (False:
        another process holds the rebuild's lease); without it a lost store just starts anew.
        `mirror(shard_id, checkpoint)`: where each checkpoint is copied (None: the shard is done)."""
        self.keys = Keys(crawl)
        retry = redis.asyncio.retry.Retry(_backoff(), REDIS_RETRIES)
        self.client: aioredis.Redis = redis_client.Redis.from_url(url, retry=retry)
        self.index = KnownBlocks()
        self.rebuild = rebuild
        self.mirror = mirror
        self.losses = 0  # store generations this process saw end
        self._done: dict[str, int] = {}  # shards this process finished: marked again after a loss
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
        self._held: dict[str, str] = {}  # lease key -> our holder in it, `<token>/<owner>/<nonce>`
        self._shards: dict[str, str] = {}  # shard id -> our holder of its walk ("": lost)
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
        them meanwhile (it may have: we could have stalled through the loss)."""
        for shard_id, ours in list(self._shards.items()):
            now: Any = await self.client.hget(self.keys.owners, shard_id)
            if ours and now is not None and _text(now) == ours:
                continue  # the generation ended, its data did not (a rebuild by hand)
            holder = await self._take_shard(
                keys=[self.keys.fence, self.keys.owners], args=[shard_id, self._name(), "1"])
            self._shards[shard_id] = _text(holder) if holder else ""

    async def _mark_done_again(self, epoch: str) -> None:
        """Shards finished before a loss whose offsets the rebuild did not see committed yet."""
        keys = [self.keys.done, self.keys.counters, self.keys.cursors, self.keys.epoch, self.keys.owners]
        for shard_id, addresses in list(self._done.items()):
            await self._shard_done(keys=keys, args=[shard_id, addresses, epoch])

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

    async def take_shard(self, shard_id: str, owner: str) -> None:
        """Own a shard's walk from now: a walk of it elsewhere (a worker that stalled while Kafka
        gave its partition to us) has its checkpoints refused from now on."""
        holder = await self._take_shard(keys=[self.keys.fence, self.keys.owners], args=[shard_id, owner, "0"])
        self._shards[shard_id] = _text(holder)

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
        under: Lease | None = None,
    ) -> bool:
        known, changed = _remember(self.index, answer)
        block = encode_block(answer) if changed and answer is not None else ""
        counts = step_counts(answer, known, changed, lookups, rate_limited, errors)
        lease_key = self._lease_key(under) if under is not None else self.keys.epoch
        held = self._held.get(lease_key, "-") if under is not None else ""  # "-": held by nobody
        # A walk's write is checked against its shard's owner ("-": lost); one outside a walk (an
        # admin's, a test's) is not.
        owned = (self._shards[shard_id] or "-") if shard_id in self._shards else ""
        counted = (x for n, v in counts.items() if v for x in (n, v))
        args = [shard_id, checkpoint, block, owned, held, *counted]
        keys = [self.keys.epoch, self.keys.blocks, self.keys.cursors, self.keys.counters,
                self.keys.owners, self.keys.done, lease_key]
        code = await self._guarded(lambda epoch: self._record_step(keys=keys, args=[epoch, *args]))
        if code == 3 and under is not None:
            metrics.STALE_WRITES.labels(under.kind).inc()
            raise LeaseLost(str(under), under)
        if code == 2:
            metrics.STALE_WRITES.labels("shard").inc()
            if under is None or under.kind != "listing":
                raise LeaseLost(f"shard {shard_id}", None)
            # A listing goes on under its own lease (its blocks are kept; the walk that started it
            # has lost its shard, whose checkpoint is another's now).
            return changed
        if self.mirror is not None:
            self.mirror(shard_id, checkpoint)
        return changed

    def _lease_key(self, lease: Lease) -> str:
        if lease.kind == "cell":
            return self.keys.claim(lease.first)
        return self.keys.listing(lease.first, lease.last)

    async def shard_done(self, shard_id: str, addresses: int) -> None:
        """Mark a shard finished (once, however often it is called); its checkpoint goes with it."""
        keys = [self.keys.done, self.keys.counters, self.keys.cursors, self.keys.epoch, self.keys.owners]
        await self._guarded(lambda epoch: self._shard_done(keys=keys, args=[shard_id, addresses, epoch]))
        self._shards.pop(shard_id, None)
        self._done[shard_id] = addresses
        if self.mirror is not None:
            self.mirror(shard_id, None)

    async def progress(self) -> Progress:
        return Progress.from_mapping(await self.client.hgetall(self.keys.counters))

    # The published files' load (worker/sources.py): one worker at a time, under a lease.
    async def take_sources(self, owner: str) -> bool:
        return await self._take(self.keys.sources_lease, owner)

    async def renew_sources(self, owner: str) -> bool:
        return await self._renew_held(self.keys.sources_lease, owner)

    async def release_sources(self, owner: str) -> None:
        await self._let_go(self.keys.sources_lease, owner)

    async def sources_state(self) -> dict[str, str]:
        """The load's progress as its loaders wrote it (field -> JSON text)."""
        raw: dict[Any, Any] = await self.client.hgetall(self.keys.sources)
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
            known, changed = _remember(self.index, answer)
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
