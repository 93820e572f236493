"""The fleet worker: takes shards from Kafka, walks them, commits each once its results are acked."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from whoiscrawl.worker.fill import FleetFill
from whoiscrawl.worker.health import STUCK_AFTER_S, Liveness
from whoiscrawl.worker.sources import FleetLoad, Results

from whoiscrawl import metrics, recover
from whoiscrawl.crawl import Crawler, Member
from whoiscrawl.queue import CheckpointSink, KafkaSink, dead_letter_topic, fill_topic, group_name, topic_names
from whoiscrawl.ratelimit import RedisRateLimiter
from whoiscrawl.rates import Limit, scaled
from whoiscrawl.records import DeadLetter, FillBatch, RecordError, Shard
from whoiscrawl.redis_client import TRANSIENT
from whoiscrawl.registry import Egress, RegistryClient
from whoiscrawl.registry.client import ABANDONED_WAIT_S
from whoiscrawl.settings import SETTINGS, CrawlSettings
from whoiscrawl.sources import stats
from whoiscrawl.sources.published import SourcesSettings, StatsPlan, load_stats
from whoiscrawl.space import Scope, fetch_bootstrap
from whoiscrawl.store.redis_blocks import RedisBlockStore

log = logging.getLogger("whoiscrawl.worker")


# Of the grace after SIGTERM, what flushing results, checkpoints and leaving the group may take.
CLOSE_RESERVE_S = 2.0
LEAVE_RESERVE_S = 1.0  # of that, what leaving the group may take
# How long a revoked lane's walk may take to reach its next step (its lookup in flight answered and
# checkpointed) before it is cancelled; the partition's next owner starts after it.
REVOKE_WAIT_S = 2.0
# How long a lane whose shard another worker took over waits for its partition's revocation before
# walking the shard again: a member that stalled past its session is fenced by the broker within
# its heartbeat, and revoked on its next poll.
SHARD_TAKEN_WAIT_S = 30.0
# A loop blocked this long has its thread's stack written to stderr: leases lapse at 12 s, and a
# stall that cost them (a lister's relisted by another) is otherwise seen only by its effects.
STALL_DUMP_S = 6.0


@dataclass
class WorkerConfig:
    """A fleet worker's configuration: where it runs (Kafka, Redis, its egress) beside the crawl's
    knobs, which are the settings contract's (`settings`: whois servers, rdap-down listing); the
    defaults are the contract's (whoiscrawl/settings.py)."""

    crawl: str
    kafka_bootstrap: str
    redis_url: str
    limits: dict[str, Limit]
    topic_prefix: str = SETTINGS["topic_prefix"].default
    bootstrap_url: str | None = SETTINGS["bootstrap_url"].default
    egresses: list[Egress] = field(default_factory=lambda: [Egress(socket.gethostname())])
    egress_share: float = SETTINGS["egress_share"].default  # addresses behind one egress key (a NAT pool)
    settings: CrawlSettings = field(default_factory=CrawlSettings)
    metrics_port: int | None = SETTINGS["metrics_port"].default
    grace_seconds: float = SETTINGS["grace_seconds"].default  # inside GKE's spot notice; AWS gives 2 min
    max_queued_per_partition: int = 4
    kafka_config: dict[str, str] = field(default_factory=dict)
    name: str = field(default_factory=socket.gethostname)  # this member's: its pod's ($WHOISCRAWL_POD_NAME)
    sources: SourcesSettings | None = None  # the published files, loaded once per crawl (None: live)
    previous: str | None = None  # the previous generation's crawl, refreshed by difference (None: crawl anew)
    stuck_after: float = STUCK_AFTER_S  # /healthz fails once the worker has not moved this long


def group_consumer_config(config: WorkerConfig, owner: str) -> dict[str, Any]:
    """The consumer settings of a crawl's worker group member (`owner` its client id)."""
    return {
        "bootstrap.servers": config.kafka_bootstrap,
        "group.id": group_name(config.topic_prefix, config.crawl),
        "client.id": owner,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # KIP-848's protocol: the broker moves partitions one member at a time, so a join or a
        # death never stops the whole group (the classic protocol's rebalance waits for every
        # member, and under kills every 1-3 s it never finished: 30 s silences). Session timeout
        # and heartbeat are the broker's `group.consumer.*` settings.
        "group.protocol": "consumer",
        "max.poll.interval.ms": 600000,
        **config.kafka_config,
    }


@dataclass
class Lane:
    """The shards of one partition (of the work topic, or the fill's batches of one of the fill
    topic's), walked one after another, committed in order."""

    topic: str
    partition: int
    queue: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    walk: asyncio.Task[bool] | None = None  # the shard being walked
    paused: bool = False
    revoked: asyncio.Event = field(default_factory=asyncio.Event)


class Worker:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.owner = f"{config.name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.work_topic, _ = topic_names(config.topic_prefix, config.crawl)
        self.fill_topic = fill_topic(config.topic_prefix, config.crawl)
        self.lanes: dict[tuple[str, int], Lane] = {}
        self.stopping = asyncio.Event()
        self._kafka = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-consumer")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = False
        self.failed = False
        # Finished shards whose commit a rebalance refused, by partition; retried until they land.
        self.uncommitted: dict[tuple[str, int], TopicPartition] = {}
        self.consumer = Consumer(group_consumer_config(config, self.owner))
        self.liveness = Liveness(config.stuck_after)

    async def _call(self, fn: Any, *args: Any) -> Any:
        # librdkafka's consumer is used from one thread only: every call goes through this executor.
        assert self._loop is not None
        return await self._loop.run_in_executor(self._kafka, fn, *args)

    # Rebalance callbacks run inside consume(), on the consumer thread.
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assert self._loop is not None
        log.info("assigned partitions %s", sorted(tp.partition for tp in partitions))
        for tp in partitions:
            self._loop.call_soon_threadsafe(self._start_lane, tp.topic, tp.partition)
        consumer.incremental_assign(partitions)
        # A partition we paused (its lane's queue was full) and now get back must not stay paused:
        # its new lane starts empty and would never resume it.
        consumer.resume(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assert self._loop is not None
        log.info("revoked partitions %s", sorted(tp.partition for tp in partitions))
        # The revocation is acked when this returns, and the partitions' next owner starts then: the
        # lanes' walks reach their next step first, so a lookup in flight is answered, not abandoned
        # (a request the registry still serves while the next one is sent, past its connection cap).
        # A draining worker's lanes are over by now (the grace's share for them has passed): they
        # are only let go of, not waited for.
        revoked = [(tp.topic, tp.partition) for tp in partitions]
        if self.stopping.is_set():
            for partition in revoked:
                self._loop.call_soon_threadsafe(self._stop_lane, partition)
        else:
            stopped = asyncio.run_coroutine_threadsafe(self._stop_lanes(revoked), self._loop)
            try:
                stopped.result(REVOKE_WAIT_S + 1.0)
            except Exception as exc:  # a walk outlived its wait: it is cancelled meanwhile
                log.debug("revocation: %r", exc)
        consumer.incremental_unassign(partitions)

    async def _close(self, sink: KafkaSink, checkpoints: CheckpointSink, end: float) -> int:
        """Flush and leave the group by `end` (the grace's); returns the results left undelivered.
        What is left is shared in turn: the results' flush (each result is a block), then the walk
        checkpoints' (one lost costs a re-walk), then leaving the group. Each once had the whole
        remainder, one after the other: a drain of 12.4 s in a 10 s grace."""
        flush_until = end - LEAVE_RESERVE_S
        undelivered = await asyncio.to_thread(sink.close, max(0.2, flush_until - time.monotonic()))
        if self.letters is not None:  # each was acknowledged when it was sent: nothing should be left
            await asyncio.to_thread(self.letters.close, max(0.1, min(1.0, flush_until - time.monotonic())))
        await asyncio.to_thread(checkpoints.close, max(0.1, min(2.0, flush_until - time.monotonic())))
        # A dynamic member leaves the group here; a static one (`group.instance.id`) leaves for now:
        # its partitions wait the session timeout for a replacement under its name, then move on.
        await self._call(self.consumer.close)
        return int(undelivered)

    def _start_lane(self, topic: str, partition: int) -> None:
        old = self.lanes.get((topic, partition))
        if old and old.task and not old.task.done():
            old.revoked.set()
        lane = Lane(topic, partition)
        name = f"lane-{partition}" if topic == self.work_topic else f"fill-lane-{partition}"
        lane.task = asyncio.create_task(self._run_lane(lane), name=name)
        lane.task.add_done_callback(self._lane_ended)
        self.lanes[topic, partition] = lane

    def _lane_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # A bug, not weather: stop the worker (exit 1) so it restarts, rather than sit on a
            # partition nobody walks.
            log.error("%s failed; stopping the worker", task.get_name(), exc_info=task.exception())
            self.failed = True
            self.stopping.set()

    async def _stop_lanes(self, partitions: list[tuple[str, int]]) -> None:
        """Stop the lanes of revoked partitions; return once their walks have ended. Not the lanes
        themselves: one whose shard just finished commits it through the consumer, whose thread
        waits for this."""
        walks = [lane.walk for p in partitions if (lane := self._stop_lane(p)) and lane.walk]
        if walks:
            await asyncio.wait(walks, timeout=REVOKE_WAIT_S + 0.5)

    def _stop_lane(self, partition: tuple[str, int]) -> Lane | None:
        # Its next owner re-reads from the committed offset, finds the shard done in Redis and
        # commits it: our pending commit is theirs now.
        self.uncommitted.pop(partition, None)
        lane = self.lanes.pop(partition, None)
        if lane:
            lane.revoked.set()  # its walk stops after its current step; the next owner resumes there
        return lane

    async def _run_lane(self, lane: Lane) -> None:
        while not self.stopping.is_set() and not lane.revoked.is_set():
            try:
                msg = await asyncio.wait_for(lane.queue.get(), timeout=0.5)
            except TimeoutError:
                if (lane.topic, lane.partition) in self.uncommitted:
                    await self._commit(self.uncommitted[lane.topic, lane.partition])
                continue
            if lane.paused and lane.queue.qsize() <= self.config.max_queued_per_partition // 2:
                lane.paused = False
                await self._call(self.consumer.resume, [TopicPartition(lane.topic, lane.partition)])
            try:
                shard = self._work(lane, msg)
            except RecordError as exc:
                await self._dead_letter(msg, str(exc))
                await self._commit(self._next_offset(msg))
                continue
            done = await self._walk(shard, lane)
            while not done and not (self.stopping.is_set() or lane.revoked.is_set()):
                done = await self._walk_again(shard, lane)
            if not done:
                return  # stopped or revoked: not committed, so whoever owns it next redoes the rest
            await self._commit(self._next_offset(msg))

    def _work(self, lane: Lane, msg: Message) -> Shard | FillBatch:
        """A message of the lane's topic: a shard of the walk, or a batch of the fill."""
        raw = msg.value() or b""
        return FillBatch.from_json(raw) if lane.topic == self.fill_topic else Shard.from_json(raw)

    async def _walk(self, shard: Shard | FillBatch, lane: Lane) -> bool:
        """Walk a shard until it is done (True), the worker stops or the lane is revoked (False).
        Redis failing under the walk (away longer than its commands' retries) is weather, not a bug:
        the lane pauses (0.5 s, doubling to 10 s) and walks the shard again from its checkpoint; the
        worker and its other lanes go on."""
        pause = 0.5
        while True:
            try:
                return await self._walk_once(shard, lane)
            except TRANSIENT as exc:
                log.warning("lane %d: Redis failed under shard %s (%r): walking it again in %.1fs",
                            lane.partition, _id(shard), exc, pause)
            waits = [asyncio.ensure_future(event.wait()) for event in (self.stopping, lane.revoked)]
            await asyncio.wait(waits, timeout=pause)
            for wait in waits:
                wait.cancel()
            if self.stopping.is_set() or lane.revoked.is_set():
                return False
            pause = min(10.0, pause * 2)

    async def _walk_once(self, shard: Shard | FillBatch, lane: Lane) -> bool:
        assert self.crawler is not None
        if isinstance(shard, FillBatch):
            assert self.filler is not None
            asking = self.filler.run(shard, until=lane.revoked)
        else:
            asking = self.crawler.run_shard(shard, until=lane.revoked)
        lane.walk = walk = asyncio.create_task(asking)
        revoked = asyncio.create_task(lane.revoked.wait())
        try:
            await asyncio.wait({walk, revoked}, return_when=asyncio.FIRST_COMPLETED)
            if not walk.done():
                # Revoked: it stops after its current step. One still waiting then (for a registry's
                # slot or pause, another worker's listing) is cancelled; its next owner probes again.
                await asyncio.wait({walk}, timeout=REVOKE_WAIT_S)
        finally:  # a lane cancelled (the end of a drain's grace) takes its walk with it
            revoked.cancel()
            walk.cancel()
        await asyncio.gather(walk, return_exceptions=True)
        return not walk.cancelled() and walk.result()

    async def _walk_again(self, shard: Shard | FillBatch, lane: Lane) -> bool:
        """A walk that ended neither done nor stopped: another worker took the shard over while we
        stalled (Kafka moved the partition). Our revocation is on its way; if it does not come,
        the partition is ours after all (the other's walk ended), and the shard is walked again
        from its checkpoint (or found done, and committed)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(lane.revoked.wait(), SHARD_TAKEN_WAIT_S)
        if self.stopping.is_set() or lane.revoked.is_set():
            return False
        return await self._walk(shard, lane)

    async def _dead_letter(self, msg: Message, reason: str) -> None:
        """A work message that does not match its schema: kept on the dead-letter topic with where
        it was and why (acknowledged before it is committed past), counted; the lane goes on."""
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        log.error("skipping a malformed work message at %s, kept as a dead letter: %s", where, reason)
        metrics.DEAD_LETTERS.labels("work", "none").inc()
        letter = DeadLetter.of("work", reason, where, msg.value() or b"")
        letter.crawl = self.config.crawl
        if self.letters is not None:
            try:
                await self.letters.emit(letter)
            except Exception as exc:  # the crawl goes on without it; the log has it
                log.error("a dead letter could not be kept (%r): %s", exc, letter.to_json()[:2000].decode())

    def _next_offset(self, msg: Message) -> TopicPartition:
        return TopicPartition(msg.topic() or self.work_topic, msg.partition() or 0, (msg.offset() or 0) + 1)

    async def _commit(self, tp: TopicPartition) -> None:
        try:
            await self._call(lambda: self.consumer.commit(offsets=[tp], asynchronous=False))
            if self.uncommitted.get((tp.topic, tp.partition), tp).offset <= tp.offset:
                self.uncommitted.pop((tp.topic, tp.partition), None)
        except KafkaException as exc:
            # A rebalance is under way. The shard is marked done in Redis, so nothing is redone;
            # but the offset must still be committed, or the crawl's lag never reaches zero when
            # the partition stays with us (cooperative-sticky). Retried while the lane is idle.
            log.warning("commit of %s[%d]@%d failed, will retry: %s", tp.topic, tp.partition, tp.offset, exc)
            self.uncommitted[tp.topic, tp.partition] = tp

    async def _consume(self) -> None:
        while not self.stopping.is_set():
            msgs = await self._call(self.consumer.consume, 64, 0.2)
            self.liveness.polled()
            self._ready = True
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        log.warning("kafka: %s", err)
                    continue
                where = (msg.topic() or self.work_topic, msg.partition() or 0)
                lane = self.lanes.get(where)
                if lane is None:
                    # A message is only delivered for a partition we hold: walk it. Dropping it
                    # would lose the shard, since our position has moved past it.
                    self._start_lane(*where)
                    lane = self.lanes[where]
                lane.queue.put_nowait(msg)
                if not lane.paused and lane.queue.qsize() >= self.config.max_queued_per_partition:
                    lane.paused = True
                    await self._call(self.consumer.pause, [TopicPartition(*where)])

    async def _report_lag(self) -> None:
        while not self.stopping.is_set():
            lag = 0
            for topic, partition in list(self.lanes):
                tp = TopicPartition(topic, partition)
                try:
                    _, high = await self._call(self.consumer.get_watermark_offsets, tp, 5, True)
                    [committed] = await self._call(self.consumer.committed, [tp], 5)
                    lag += max(0, high - max(committed.offset, 0))
                except Exception as exc:  # a transient broker error must not stop the worker
                    log.debug("lag: %s", exc)
            metrics.CONSUMER_LAG.set(lag)
            await asyncio.sleep(10)

    async def _rebuild_store(self) -> bool:
        """Redis lost the crawl: rebuild it from the topics (False: another worker does)."""
        cfg = self.config
        rebuilt = await asyncio.to_thread(
            recover.rebuild, cfg.redis_url, cfg.kafka_bootstrap, cfg.topic_prefix, cfg.crawl, self.owner,
            cfg.kafka_config,
        )
        return rebuilt is not None

    async def _watch_store(self, store: RedisBlockStore) -> None:
        """Notice a lost store even while no lane touches it (all waiting, or none assigned)."""
        while not self.stopping.is_set():
            try:
                await store.sync()
            except Exception as exc:  # Redis away longer than its retries: look again later
                log.warning("watching the store: %s", exc)
            await asyncio.sleep(1.0)

    async def _watch_loop(self, stacks: IO[str] | None = None) -> None:
        """Log how long the event loop was blocked, and write the stack of one blocked for long (to
        `stacks`, stderr by default). The stack is the loop's thread's alone, taken by a watchdog
        thread holding the GIL (`sys._current_frames`), while the loop's thread cannot run Python:
        never every thread's from outside the GIL, as `faulthandler.dump_traceback_later` did while
        those threads ran (a worker died of it, SIGSEGV in CPython's `dump_frame`, 0.27 s after
        waking from a pause)."""
        tick = 1.0
        beat = [time.monotonic()]  # when the loop last ran: written by the loop, read by the watchdog
        done = threading.Event()
        watchdog = threading.Thread(
            target=_watchdog, args=(threading.get_ident(), beat, done, stacks or sys.stderr),
            name="loop-watchdog", daemon=True,
        )
        watchdog.start()
        self.liveness.arm()
        try:
            while not self.stopping.is_set():
                self._tick()
                woke = beat[0] = time.monotonic()
                await asyncio.sleep(tick)
                late = time.monotonic() - woke - tick
                if late > 2.0:
                    log.warning("the event loop was blocked for %.1fs", late)
        finally:
            done.set()

    def _tick(self) -> None:
        """Tell the liveness the loop ran, whether work is in hand and how far the lanes got."""
        busy = any(lane.queue.qsize() or (lane.walk and not lane.walk.done()) for lane in self.lanes.values())
        self.liveness.tick(busy, self.crawler.progress if self.crawler else 0)

    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        cfg = self.config
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self.stopping.set)
        server = None
        if cfg.metrics_port is not None:
            server = metrics.serve(cfg.metrics_port, lambda: self._ready and not self.stopping.is_set(),
                                   stuck=self.liveness.stuck)
        checkpoints = CheckpointSink(cfg.kafka_bootstrap, cfg.topic_prefix, cfg.crawl, cfg.kafka_config)
        store = RedisBlockStore(cfg.redis_url, cfg.crawl, rebuild=self._rebuild_store, mirror=checkpoints.put)
        await store.sync()
        limiter = RedisRateLimiter(store.client, scaled(cfg.limits, cfg.egress_share), self.owner)
        self.letters = KafkaSink(cfg.kafka_bootstrap, cfg.topic_prefix, cfg.crawl, cfg.kafka_config,
                                 topic=dead_letter_topic(cfg.topic_prefix, cfg.crawl))
        client, sink, loaded = await self._prepared(store, limiter, checkpoints)
        scope = await store.scope()
        member = Member(self.owner, cfg.crawl, abandon_listings_on_stop=True)
        self.crawler = Crawler(store, sink, client, member, cfg.settings, scope=scope, stopping=self.stopping)
        if cfg.sources is not None and cfg.sources.loads_files:  # every worker asks the fill's batches
            self.filler = FleetFill(store, sink, client, self.owner, cfg.crawl)
        if loaded:  # else stopping before the files were loaded: no shard is walked without them
            topics = [self.work_topic, *([self.fill_topic] if self.filler else [])]
            self.consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("worker %s taking shards of %s", self.owner, self.work_topic)
        consume = asyncio.create_task(self._consume())
        lag = asyncio.create_task(self._report_lag())
        watch = asyncio.create_task(self._watch_store(store))
        stalls = asyncio.create_task(self._watch_loop())
        await self.stopping.wait()
        started = time.monotonic()
        log.info("stopping: finishing lookups in flight (grace %.0fs)", cfg.grace_seconds)
        lanes = [lane.task for lane in self.lanes.values() if lane.task]
        if lanes:
            # Lanes still busy then are cancelled (their shards are redelivered): flushing results and
            # leaving the group must fit in the grace too (the chaos test saw 11.5 s of 10).
            _, pending = await asyncio.wait(lanes, timeout=max(0.5, cfg.grace_seconds - CLOSE_RESERVE_S))
            for task in pending:
                task.cancel()
        for task in (consume, lag, watch, stalls):
            task.cancel()
        await asyncio.gather(consume, lag, watch, stalls, return_exceptions=True)
        undelivered = await self._close(sink, checkpoints, started + cfg.grace_seconds)
        self._kafka.shutdown(wait=True)
        # A request at the registry keeps its connection slot till it ends, inside the grace.
        await client.close(wait_s=min(ABANDONED_WAIT_S, started + cfg.grace_seconds - 0.5 - time.monotonic()))
        await store.close()
        if server:
            server.shutdown()
        log.info("stopped in %.1fs (%d results undelivered)", time.monotonic() - started, undelivered)
        return 0 if undelivered == 0 and not self.failed else 1

    crawler: Crawler | None = None
    filler: FleetFill | None = None  # a crawl from the published files: the fill's batches asked here
    letters: KafkaSink | None = None  # the crawl's dead-letter topic

    async def _prepared(self, store: RedisBlockStore, limiter: RedisRateLimiter, checkpoints: CheckpointSink
                        ) -> tuple[RegistryClient, KafkaSink, bool]:
        """The registry client, the results' sink, and whether the crawl's published files are
        loaded (False: stopping first). What they download goes to a folder of its own, removed
        once they are loaded, or as soon as anything before fails (a bootstrap that cannot be read,
        a statistics fetch cut short): a worker restarted over and over leaves none behind."""
        cfg = self.config
        with tempfile.TemporaryDirectory(prefix="whoiscrawl-sources-", ignore_cleanup_errors=True) as folder:
            cache = Path(folder)
            published = await self._statistics(cache, await store.scope())
            client = RegistryClient(
                await fetch_bootstrap(cfg.bootstrap_url), limiter, cfg.egresses,
                dict(cfg.settings.whois_servers), delegated_by=published.router() if published else None,
                delegation_at=published.holders() if published else None,
                delegation_country=stats.configured_country(), dead_letters=self.letters,
                timeout=cfg.settings.lookup_timeout, listing_timeout=cfg.settings.listing_timeout,
            )
            sink = KafkaSink(cfg.kafka_bootstrap, cfg.topic_prefix, cfg.crawl, cfg.kafka_config)
            loaded = await self._files_loaded(store, sink, client, published, cache, checkpoints)
        return client, sink, loaded

    async def _statistics(self, cache: Path, scope: Scope | None) -> StatsPlan | None:
        """The delegation statistics, when the crawl reads them: each worker routes its lookups by
        them (the load writes their free space once). Only the delegations the crawl's scope
        touches, those in special-purpose space (the load plans what they list where the plan
        withheld it), and every free or reserved row (`stats.read_path`): all five files' rows are
        ~140 MB a worker whatever the crawl's size."""
        settings = self.config.sources
        if settings is None or "stats" not in settings.sources:
            return None
        return await load_stats(settings.files_base, cache, within=scope.overlaps if scope else None)

    async def _files_loaded(
        self, store: RedisBlockStore, sink: KafkaSink, client: RegistryClient, published: StatsPlan | None,
        cache: Path, checkpoints: CheckpointSink,
    ) -> bool:
        """Wait until the crawl's published files are loaded, loading them if no other worker is
        (worker/sources.py); False: stopping first. True at once for a crawl that reads none."""
        cfg = self.config
        if cfg.sources is None or not cfg.sources.loads_files:
            return True
        results = Results(cfg.kafka_bootstrap, cfg.topic_prefix, cfg.crawl, cfg.kafka_config)
        load = FleetLoad(cfg.sources, store, sink, results, client, self.owner, cache, stats=published,
                         checkpoints=checkpoints, stopping=self.stopping, previous=cfg.previous)
        figures = await load.ready()
        if figures is not None:
            log.info("the published files are loaded: %s", json.dumps(figures)[:2000])
        if published is not None and load.stale:  # older than the crawl's: routed by the bootstrap
            kept = published.without(load.stale)
            client.delegated_by, client.delegation_at = kept.router(), kept.holders()
        return figures is not None


def _id(work: Shard | FillBatch) -> str:
    return work.batch_id if isinstance(work, FillBatch) else work.shard_id


def _watchdog(loop_thread: int, beat: list[float], done: threading.Event, out: IO[str]) -> None:
    """Write the loop thread's stack once per stall that lasts `STALL_DUMP_S`."""
    reported = None
    while not done.wait(0.5):
        since = beat[0]
        blocked = time.monotonic() - since
        if blocked < STALL_DUMP_S or since == reported:
            continue
        reported = since
        frame = sys._current_frames().get(loop_thread)
        where = "".join(traceback.format_stack(frame)) if frame is not None else "(gone)\n"
        out.write(f"the event loop has been blocked for {blocked:.1f}s, in:\n{where}")
        out.flush()


def run_worker(config: WorkerConfig) -> NoReturn:
    """Run a worker to its end and exit the process with its code.

    Threads a lane cancelled at the end of the grace left running (an answer's parse) hold nothing
    still to deliver once the sink and the consumer are closed: the process exits without joining
    them (`asyncio.run` and the interpreter would, seen adding 7 s to a 10 s drain)."""
    loop = asyncio.new_event_loop()
    code = loop.run_until_complete(Worker(config).run())
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
