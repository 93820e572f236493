"""A worker's /healthz fails when its loop, its consumer or its lanes stop moving with work in hand."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable

import pytest
from whoiscrawl.worker.health import Liveness
from whoiscrawl.worker.runner import Lane, Worker, WorkerConfig

from whoiscrawl import metrics
from whoiscrawl.dev.services import free_port
from whoiscrawl.records import Shard

SHARD = Shard("t", "s0", 0, 255, "sweep", 24)
BOUND = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _liveness() -> tuple[Liveness, Clock]:
    clock = Clock()
    live = Liveness(BOUND, clock)
    live.arm()
    return live, clock


def test_an_idle_worker_is_never_stuck_however_long_it_waits_for_work():
    live, clock = _liveness()
    for _ in range(5):
        clock.now += BOUND
        live.polled()
        live.tick(busy=False, progress=0)
    assert live.stuck() is None


def test_lanes_with_work_in_hand_and_no_progress_past_the_bound_are_stuck():
    live, clock = _liveness()
    clock.now += 100  # idle long before the work came: its clock starts when work arrives
    live.polled()
    live.tick(busy=True, progress=7)
    for _ in range(3):
        clock.now += BOUND / 3
        live.polled()
        live.tick(busy=True, progress=7)
    assert live.stuck() is None  # exactly the bound: not past it
    clock.now += 1
    live.polled()
    live.tick(busy=True, progress=7)
    assert live.stuck() == "no lane has moved for 11s with work in hand"
    live.tick(busy=True, progress=8)  # a request ended: moving again
    assert live.stuck() is None


@pytest.mark.parametrize(("loop_ticks", "consumer_polls", "why"), [
    (False, True, "the event loop has not run for 11s"),
    (True, False, "the Kafka consumer has not returned from a poll for 11s"),
])
def test_a_loop_or_a_consumer_that_stops_is_stuck_even_without_work(loop_ticks, consumer_polls, why):
    live, clock = _liveness()
    clock.now += BOUND + 1
    if loop_ticks:
        live.tick(busy=False, progress=0)
    if consumer_polls:
        live.polled()
    assert live.stuck() == why


def test_nothing_is_watched_before_the_worker_takes_shards():
    clock = Clock()
    live = Liveness(BOUND, clock)  # loading the published files may take minutes
    clock.now += 100 * BOUND
    assert live.stuck() is None


class Crawler:
    """A crawler whose walk moves every `step_s` (progress grows), or never (`step_s` None: it
    hangs, as a lane awaiting a reply that never comes would)."""

    def __init__(self, step_s: float | None) -> None:
        self.step_s = step_s
        self.progress = 0

    async def run_shard(self, shard: Shard, until: asyncio.Event | None = None) -> bool:
        if self.step_s is None:
            await asyncio.Event().wait()
        while not (until and until.is_set()):
            await asyncio.sleep(self.step_s)
            self.progress += 1
        return False


def _healthz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


async def _walking(step_s: float | None) -> AsyncIterator[tuple[Worker, int]]:
    """A worker (no broker, no Redis: its consumer polls nothing) whose one lane walks a shard,
    its loop watched with a 1 s bound, its /healthz served on 127.0.0.1 as `Worker.run` serves it."""
    config = WorkerConfig("t", "127.0.0.1:9", "redis://127.0.0.1:9", {}, metrics_port=None,
                          kafka_config={"log_level": "0"}, stuck_after=1.0)
    worker = Worker(config)
    worker._loop = asyncio.get_running_loop()
    worker.crawler = Crawler(step_s)  # type: ignore[assignment]
    port = free_port()
    server = metrics.serve(port, lambda: True, host="127.0.0.1", stuck=worker.liveness.stuck)
    lane = worker.lanes[worker.work_topic, 0] = Lane(worker.work_topic, 0)
    tasks = [asyncio.create_task(worker._walk(SHARD, lane)), asyncio.create_task(worker._consume()),
             asyncio.create_task(worker._watch_loop())]
    try:
        yield worker, port
    finally:
        worker.stopping.set()
        lane.revoked.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.shutdown()
        worker._kafka.shutdown(wait=True)
        worker.consumer.close()


async def _answers(step_s: float | None, stop: Callable[[tuple[int, str]], bool],
                   seconds: float) -> list[tuple[int, str]]:
    """/healthz's answers, asked every 0.25 s for `seconds` or until `stop` holds for one."""
    answers: list[tuple[int, str]] = []
    async for _, port in _walking(step_s):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (answers and stop(answers[-1])):
            answers.append(await asyncio.to_thread(_healthz, port))
            await asyncio.sleep(0.25)
    return answers


async def test_a_worker_whose_lane_hangs_answers_503_once_the_bound_has_passed():
    answers = await _answers(None, lambda answer: answer[0] != 200, 30.0)
    assert answers[0] == (200, "ok\n")
    code, why = answers[-1]
    assert code == 503 and why.startswith("stuck: no lane has moved for "), answers[-1]


async def test_a_worker_whose_lane_moves_stays_healthy_past_the_bound():
    answers = await _answers(0.2, lambda answer: answer[0] != 200, 3.0)
    assert set(answers) == {(200, "ok\n")}
