"""A crawl's state in Redis administered (synchronous): its plan, epoch, rebuild, counters, deletion."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import redis
import redis.asyncio.retry
import redis.retry
from redis.backoff import NoBackoff

from whoiscrawl.blocks import KnownBlocks, encode_block
from whoiscrawl.keys import Keys
from whoiscrawl.records import NetworkRecord, Progress, Shard
from whoiscrawl.space import Scope
from whoiscrawl.store import REBUILD_LEASE_S, resumed_block
from whoiscrawl.store.redis_scripts import (
    _END_GENERATION,
    _REBUILT,
    _RELEASE,
    _RENEW,
    REDIS_RETRIES,
    _backoff,
    _text,
    new_epoch,
)

log = logging.getLogger(__name__)


# A command (plan, rebuild-store) meets a Redis that is down or silent in seconds, not after the
# retries a worker waits out a restart with (~40 s refused; for ever on a port that never answers).
REACH_TIMEOUT_S = 3.0
DELETE_BATCH = 500  # keys per UNLINK when a crawl is deleted
# A rebuild's staged keys outlive a rebuilder killed before it lands them by this much, then go (a
# block log staged for `full` is ~11M entries); far beyond any rebuild, whose lease lapses in seconds.
STAGED_TTL_S = 6 * 3600


def reach(url: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """Return once a Redis at `url` answers a PING: one try, connect and answer each bounded by
    `timeout` seconds; else redis-py's error (ValueError for a URL that is none)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                  retry=redis.retry.Retry(NoBackoff(), 0))
    try:
        client.ping()
    finally:
        client.close()


class RedisCrawlAdmin:
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

    def end_generation(self, owner: str) -> bool:
        """End the store's generation (every worker's writes wait for the next), under the rebuild's
        lease `owner` holds; False: the lease is another's (ours lapsed while we stalled)."""
        return bool(self.client.eval(_END_GENERATION, 2, self.keys.rebuilding, self.keys.epoch, owner))

    def restore_plan(
        self, owner: str, shards: dict[str, tuple[int, int]], done: dict[str, int], cursors: dict[str, str],
        blocks: int, copies: Mapping[str, Mapping[str, str]] | None = None,
        fill: Mapping[str, str] | None = None,
    ) -> bool:
        """Land a rebuild, `owner` holding its lease: the plan anew (shard id -> its span) from the
        work topic, with the finished shards (id -> addresses) from the committed offsets, the
        walks' checkpoints of the others, the hashes the checkpoints topic keeps a copy of (`copies`:
        name -> fields, `queue.copied`: the published files' load's progress, the answers kept,
        the special-purpose space withheld) and the block log staged (`stage_blocks`, `blocks` of
        them), the fill's batches published (`fill`: batch id -> its item, from the fill topic; those
        answered are among `done`, 0 addresses each); the other counters stay. All at once and only
        under the lease: False (nothing written) if it passed to another process, whose reading of
        the topics is newer."""
        named = self.keys
        hashes = {"sources": named.sources, "kept-answers": named.kept_answers, "special": named.special,
                  "fill-figures": named.fill_figures, "fill": named.fill}
        staged = {name: self.keys.staged(owner, name) for name in ("done", "cursors", "planned", *hashes)}
        fill = dict(fill or {})
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(*staged.values())
        walking: dict[Any, Any] = {k: v for k, v in cursors.items()
                                   if (k in shards or k in fill) and k not in done}
        if walking:
            pipe.hset(staged["cursors"], mapping=walking)
        if done:
            pipe.sadd(staged["done"], *done)
        if shards:
            pipe.hset(staged["planned"], mapping={k: f"{a}-{b}" for k, (a, b) in shards.items()})
        if fill:
            pipe.hset(staged["fill"], mapping=dict[Any, Any](fill))
        for name, fields in (copies or {}).items():
            if fields:
                pipe.hset(staged[name], mapping=dict[Any, Any](fields))
        for key in staged.values():
            pipe.expire(key, STAGED_TTL_S)
        pipe.execute()
        addresses = sum(b - a + 1 for a, b in shards.values())
        counters = {"shards_total": len(shards) + len(fill), "addresses_total": addresses,
                    "shards_done": len(done), "addresses_done": sum(done.values()), "blocks": blocks}
        scope = Scope.of(shards.values()).encode() if shards else ""
        keys = [self.keys.rebuilding, self.keys.epoch, self.keys.counters, self.keys.scope,
                self.keys.blocks, self.keys.staged(owner, "blocks"), self.keys.done, staged["done"],
                self.keys.cursors, staged["cursors"], self.keys.planned, staged["planned"],
                *(key for name, real in hashes.items() for key in (real, staged[name]))]
        counted = [x for pair in counters.items() for x in pair]
        return bool(self.client.eval(_REBUILT, len(keys), *keys, owner, new_epoch(), scope, *counted))

    def add_plan(self, shards: Iterable[Shard], special: Iterable[Shard] = ()) -> tuple[int, int]:
        """Add a plan's shards to the crawl's (a re-plan publishes on top of the earlier plans and
        shares the shards of the ranges they had in common); the totals and the scope are the
        union's. `special`: the special-purpose space it withheld (`Plan.special`), kept for the
        loader that plans the delegations the statistics list there. Returns the shards and
        addresses planned in all."""
        planned: dict[bytes, bytes] = self.client.hgetall(self.keys.planned)  # type: ignore[assignment]
        spans = {}
        for key, value in planned.items():
            first, _, last = value.partition(b"-")
            spans[key.decode()] = (int(first), int(last))
        spans.update({s.shard_id: (s.first, s.last) for s in shards})
        pipe = self.client.pipeline(transaction=False)
        totals = self._plan(pipe, spans)
        if withheld := {s.shard_id: s.to_json() for s in special}:
            pipe.hset(self.keys.special, mapping=dict[Any, Any](withheld))
        pipe.execute()
        return totals

    def _plan(self, pipe: Any, spans: dict[str, tuple[int, int]]) -> tuple[int, int]:
        """Queue the plan's shards, totals and scope on a pipeline; returns the totals."""
        addresses = sum(b - a + 1 for a, b in spans.values())
        if spans:
            pipe.hset(self.keys.planned, mapping={k: f"{a}-{b}" for k, (a, b) in spans.items()})
            pipe.set(self.keys.scope, Scope.of(spans.values()).encode())
        batches: Any = self.client.hlen(self.keys.fill)  # the fill's batches: shards too
        totals = {"shards_total": len(spans) + int(batches), "addresses_total": addresses}
        pipe.hset(self.keys.counters, mapping=totals)
        return len(spans), addresses

    def loaded(self) -> dict[str, Any] | None:
        """The published files' load's figures once it is done (worker/sources.py, `done`); None
        before. What the fill's batches asked is not in them: `sources.fill.loaded` adds it."""
        done = self.client.hget(self.keys.sources, "done")
        return json.loads(done) if done else None

    def fill(self) -> tuple[dict[str, str], dict[str, str]]:
        """The fill's batches published (batch id -> its item) and those answered (batch id -> what
        it asked, JSON)."""
        published: Any = self.client.hgetall(self.keys.fill)
        answered: Any = self.client.hgetall(self.keys.fill_figures)
        return ({_text(k): _text(v) for k, v in published.items()},
                {_text(k): _text(v) for k, v in answered.items()})

    def progress(self) -> Progress:
        return Progress.from_mapping(self.client.hgetall(self.keys.counters))

    def stage_blocks(self, owner: str, records: Iterable[NetworkRecord], resolution: int = 24) -> int:
        """Write the block log anew from result records (Redis is a cache of the compacted results
        topic), staged for the rebuild `owner` lands (`restore_plan`); returns the blocks written.
        Workers read it from its start once the epoch is new. Which parents were listed whole is
        not on the topic: every network worth listing comes back a parent (the lane that meets it
        next lists it again), so none looks listed when it was not."""
        seen = KnownBlocks()  # an uncompacted topic can still hold a block twice
        staged = self.keys.staged(owner, "blocks")
        self.client.delete(staged)
        pipe = self.client.pipeline(transaction=False)
        written = 0
        for record in records:
            answer = resumed_block(record, resolution)
            if not seen.add(answer.first, answer.last, answer.terminal):
                continue
            pipe.xadd(staged, {"b": encode_block(answer)})
            written += 1
            if len(pipe) >= 10_000:
                pipe.expire(staged, STAGED_TTL_S)
                pipe.execute()
        pipe.expire(staged, STAGED_TTL_S)
        pipe.execute()
        return written

    def unfinished(self, limit: int = 20) -> list[dict[str, Any]]:
        """The store's view of the planned shards not done (the first `limit`, by id): each one's
        span, owner (`<token>/<holder>`), checkpoint, and the listing leases and cell claims held
        inside it (a lane stuck under one keeps renewing it, and every other lane waits). For a
        crawl that did not finish: what is left, and who holds it."""
        raw: Any = self.client.hgetall(self.keys.planned)
        planned = {_text(k): _text(v) for k, v in raw.items()}
        members: Any = self.client.smembers(self.keys.done)
        done = {_text(m) for m in members}
        listings = []  # (first, last, holder) of each listing lease, and of each cell claim (a /24)
        for key in self.client.scan_iter(match=self.keys.prefix + "listing:*", count=1000):
            _, low, high = _text(key).rsplit(":", 2)
            listings.append((int(low), int(high), _text(self.client.get(key))))
        claims = []
        for key in self.client.scan_iter(match=self.keys.prefix + "claim:*", count=1000):
            cell = int(_text(key).rsplit(":", 1)[1])
            claims.append((cell << 8, (cell << 8) + 255, _text(self.client.get(key))))
        out = []
        for shard_id in sorted(set(planned) - done)[:limit]:
            low, _, high = planned[shard_id].partition("-")
            first, last = int(low), int(high)
            owner: Any = self.client.hget(self.keys.owners, shard_id)
            cursor: Any = self.client.hget(self.keys.cursors, shard_id)
            out.append({
                "shard": shard_id, "first": first, "last": last,
                "owner": None if owner is None else _text(owner),
                "checkpoint": None if cursor is None else _text(cursor),
                "listings": [{"first": a, "last": b, "holder": h}
                             for a, b, h in listings if a <= last and b >= first],
                "claims": [{"first": a, "holder": h} for a, _, h in claims if first <= a <= last],
            })
        return out

    def delete_crawl(self) -> int:
        """Delete every key of the crawl; returns how many. UNLINKed in batches as SCAN finds them:
        one DEL of every key held Redis, for every crawl's workers, while it freed a large crawl's
        block log and cursors (UNLINK frees in the background, and a batch bounds each command)."""
        deleted, batch = 0, []
        for name in self.client.scan_iter(match=self.keys.prefix + "*", count=1000):
            batch.append(name)
            if len(batch) == DELETE_BATCH:
                deleted, batch = deleted + int(self.client.unlink(*batch)), []
        return deleted + (int(self.client.unlink(*batch)) if batch else 0)

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])
