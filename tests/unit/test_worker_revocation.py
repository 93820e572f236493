"""A worker's revoked lane: its lookup in flight is answered before the revocation is acked."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from confluent_kafka import Message, TopicPartition
from redis.exceptions import MaxConnectionsError
from whoiscrawl.worker import runner
from whoiscrawl.worker.runner import Lane, Worker, WorkerConfig

from whoiscrawl.records import Shard

SHARD = Shard("t", "s0", 0, 255, "sweep", 24)


class Steps:
    """A walk whose steps (a lookup and its checkpoint) take `step_s` each."""

    def __init__(self, step_s: float) -> None:
        self.step_s = step_s
        self.progress = 0  # what the worker's liveness reads of a crawler (not counted here)
        self.started = self.finished = self.cancelled = 0
        self.last_end = 0.0

    async def run_shard(self, shard: Shard, until: asyncio.Event | None = None) -> bool:
        while not (until and until.is_set()):
            self.started += 1
            try:
                await asyncio.sleep(self.step_s)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            self.finished += 1
            self.last_end = time.monotonic()
        return False


def worker_walking(step_s: float) -> tuple[Worker, Steps]:
    """A worker (no broker, no Redis) whose crawler's steps take `step_s`."""
    config = WorkerConfig(
        "t", "127.0.0.1:9", "redis://127.0.0.1:9", {}, metrics_port=None, kafka_config={"log_level": "0"}
    )
    worker = Worker(config)
    worker._loop = asyncio.get_running_loop()
    worker.crawler = steps = Steps(step_s)  # type: ignore[assignment]
    return worker, steps


async def revoked_mid_step(step_s: float) -> tuple[Worker, Steps, float, asyncio.Task[bool]]:
    """A worker holding partition 0 (assigned by hand), its lane walking, revoked on the consumer's
    thread as librdkafka would, 0.1 s into a step. Returns the time the revocation was acked."""
    worker, steps = worker_walking(step_s)
    tp = TopicPartition(worker.work_topic, 0)
    worker.consumer.incremental_assign([tp])
    lane = worker.lanes[worker.work_topic, 0] = Lane(worker.work_topic, 0)
    walking = asyncio.create_task(worker._walk(SHARD, lane))
    await asyncio.sleep(0.1)

    def revoke() -> float:
        worker._on_revoke(worker.consumer, [tp])
        return time.monotonic()

    acked = await asyncio.to_thread(revoke)
    return worker, steps, acked, walking


async def test_a_revoked_lane_finishes_its_step_before_the_revocation_is_acked():
    worker, steps, acked, walking = await revoked_mid_step(0.5)
    try:
        assert steps.cancelled == 0, "the lookup in flight was abandoned"
        assert steps.finished == steps.started == 1
        assert steps.last_end <= acked, "acked while the old lane was still walking"
        assert await walking is False  # not done: not committed, the next owner resumes it
        assert worker.consumer.assignment() == []
    finally:
        worker.consumer.close()


async def test_a_revoked_lane_stuck_in_a_step_is_cancelled_within_the_wait(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(runner, "REVOKE_WAIT_S", 0.3)
    started = time.monotonic()
    worker, steps, acked, walking = await revoked_mid_step(30.0)  # waiting out a registry's pause
    try:
        assert steps.cancelled == 1
        assert acked - started < 2.0
        assert await walking is False
    finally:
        worker.consumer.close()


async def test_a_lane_cancelled_at_the_end_of_a_drain_takes_its_walk_with_it():
    """Else the walk goes on, and the revocation on leaving the group waits for it: a 10.5 s drain
    in a 10 s grace (a chaos run)."""
    worker, steps = worker_walking(30.0)
    try:
        lane = worker.lanes[worker.work_topic, 0] = Lane(worker.work_topic, 0)
        walking = asyncio.create_task(worker._walk(SHARD, lane))
        await asyncio.sleep(0.1)
        walking.cancel()
        await asyncio.gather(walking, return_exceptions=True)
        await asyncio.sleep(0)
        assert steps.cancelled == 1
    finally:
        worker.consumer.close()



class FailingOnce(Steps):
    """A walk whose first attempt ends in `error` (its shard then walked again, and done)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(0.0)
        self.error = error

    async def run_shard(self, shard: Shard, until: asyncio.Event | None = None) -> bool:
        self.started += 1
        if self.started == 1:
            raise self.error
        return True


async def test_a_walk_that_redis_failed_is_walked_again_and_the_worker_goes_on(monkeypatch):
    """Redis failing under a walk (its pool exhausted, as on a worker waking from a pause, or away
    longer than its commands' retries) is weather: the lane walks the shard again; the worker and
    its other lanes go on (the lane's error once stopped the worker)."""
    worker, _ = worker_walking(0.0)
    worker.crawler = walk = FailingOnce(MaxConnectionsError("Too many connections"))  # type: ignore[assignment]
    try:
        lane = worker.lanes[worker.work_topic, 0] = Lane(worker.work_topic, 0)
        assert await asyncio.wait_for(worker._walk(SHARD, lane), 10) is True
        assert walk.started == 2 and not worker.stopping.is_set()
    finally:
        worker.consumer.close()


async def test_a_lanes_bug_stops_the_worker_loudly(caplog):
    """Any other error is a bug: the worker stops (exit 1, so it is restarted), saying which lane
    failed and how, rather than sit on a partition nobody walks."""
    worker, _ = worker_walking(0.0)
    worker.crawler = FailingOnce(KeyError("a bug"))  # type: ignore[assignment]
    try:
        worker._start_lane(worker.work_topic, 0)
        message = Message(topic=worker.work_topic, partition=0, value=SHARD.to_json())
        worker.lanes[worker.work_topic, 0].queue.put_nowait(message)
        await asyncio.wait_for(worker.stopping.wait(), 10)
        assert worker.failed
        [failed] = [r for r in caplog.records if r.levelname == "ERROR"]
        assert "lane-0 failed" in failed.getMessage()
        assert failed.exc_info and isinstance(failed.exc_info[1], KeyError)
    finally:
        worker.consumer.close()


async def test_a_blocked_event_loop_is_reported_with_the_stack_of_its_thread(monkeypatch, caplog, tmp_path):
    """A stall long enough to cost leases is logged, and its stack is written while it lasts."""
    worker, _ = worker_walking(0.1)
    monkeypatch.setattr(runner, "STALL_DUMP_S", 1.0)
    with (tmp_path / "stacks").open("w+") as stacks:
        watching = asyncio.create_task(worker._watch_loop(stacks))
        await asyncio.sleep(1.2)
        time.sleep(3.5)  # a synchronous call blocking the loop
        await asyncio.sleep(0.1)
        worker.stopping.set()
        await watching
        stacks.seek(0)
        dumped = stacks.read()
    assert any("the event loop was blocked for" in r.getMessage() for r in caplog.records)
    assert "test_a_blocked_event_loop_is_reported" in dumped


def busy_elsewhere(stop: threading.Event) -> None:
    """Another thread running Python meanwhile (a parse, the Kafka client's callbacks)."""
    while not stop.is_set():
        sum(range(1000))


async def test_the_stall_watchdog_reads_no_running_threads_stack(monkeypatch, tmp_path):
    """The watchdog writes the blocked loop's stack only: walking the frames of threads that run
    meanwhile is not safe (a worker died of SIGSEGV in CPython's dump_frame, from faulthandler's
    dump of every thread, 0.27 s after waking from a pause)."""
    worker, _ = worker_walking(0.1)
    monkeypatch.setattr(runner, "STALL_DUMP_S", 1.0)
    stop = threading.Event()
    other = threading.Thread(target=busy_elsewhere, args=(stop,), name="busy-elsewhere")
    other.start()
    try:
        with (tmp_path / "stacks").open("w+") as stacks:
            watching = asyncio.create_task(worker._watch_loop(stacks))
            await asyncio.sleep(0.1)
            time.sleep(2.5)  # a synchronous call blocking the loop
            worker.stopping.set()
            await watching
            stacks.seek(0)
            dumped = stacks.read()
    finally:
        stop.set()
        other.join()
        worker.consumer.close()
    assert "test_the_stall_watchdog_reads_no_running_threads_stack" in dumped  # the loop's own
    assert "busy_elsewhere" not in dumped, dumped
