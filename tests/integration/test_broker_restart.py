"""A record the sink returned for survives the broker restarted or killed under it, as chaos runs do."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable

from whoiscrawl import queue
from whoiscrawl.dev import services
from whoiscrawl.ipv4 import ip_str
from whoiscrawl.records import NetworkRecord


def _record(i: int) -> NetworkRecord:
    first = (10 << 24) + i * 256
    return NetworkRecord("lacnic", f"H{i}", ip_str(first), ip_str(first + 255), [f"{ip_str(first)}/24"])


async def _emit_through(sink: queue.KafkaSink, restart: Callable[[], object],
                        start: int) -> tuple[set[int], int]:
    """Emit records 100 a second from 0.3 s before a restart until 1 s after it: (those the sink
    returned for, the next record's number)."""
    acked: set[int] = set()
    tasks: list[asyncio.Future[None]] = []
    i = start

    async def one(n: int) -> None:
        await sink.emit(_record(n))
        acked.add(n)

    async def burst(seconds: float) -> None:
        nonlocal i
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            tasks.append(asyncio.ensure_future(one(i)))
            i += 1
            await asyncio.sleep(0.01)

    await burst(0.3)
    thread = threading.Thread(target=restart)
    thread.start()
    while thread.is_alive():
        await burst(0.1)
    await burst(1.0)
    await asyncio.gather(*tasks)
    return acked, i


async def test_every_acknowledged_record_survives_a_broker_restart_and_a_crash(unique_name):
    with services.session(services.CACHE_DIR / "broker-restart-test", ("kafka",)) as own:
        queue.ensure_topics(own.kafka_bootstrap, "t.", unique_name, partitions=8)
        sink = queue.KafkaSink(own.kafka_bootstrap, "t.", unique_name)
        try:
            clean, sent = await _emit_through(sink, functools.partial(services.restart_kafka, own), 0)
            crashed = functools.partial(services.restart_kafka, own, crash=True)
            crash, sent = await _emit_through(sink, crashed, sent)
        finally:
            assert sink.close() == 0
        on_topic = {r.handle for r in queue.iter_results(own.kafka_bootstrap, "t.", unique_name)}
    assert clean | crash == set(range(sent))  # each emit returned: none failed
    assert {f"H{i}" for i in clean | crash} <= on_topic
