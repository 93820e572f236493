"""Budgets shared through Redis hold for every process behind one egress address."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time

import redis.asyncio as aioredis

from whoiscrawl.keys import budget
from whoiscrawl.ratelimit import GRANTED_SLOT_MS, RedisRateLimiter
from whoiscrawl.rates import Limit


async def _send(limiter: RedisRateLimiter, n: int, egresses: list[str], slots: list[tuple[float, str]]):
    """n lanes through the limiter; each notes the slot it was granted (Redis's clock, ms)."""
    async def one() -> None:
        async with limiter.permit("lacnic", egresses) as egress:
            slots.append((GRANTED_SLOT_MS.get(), egress))

    await asyncio.gather(*(one() for _ in range(n)))


def spaced(slots: list[tuple[float, str]], interval_ms: float) -> bool:
    """Every egress's granted slots at least one interval apart (Lua's %.14g rounding aside)."""
    for egress in {e for _, e in slots}:
        mine = sorted(t for t, e in slots if e == egress)
        if any(b - a < interval_ms - 0.5 for a, b in itertools.pairwise(mine)):
            return False
    return True


async def redis_ms(client: aioredis.Redis) -> float:
    seconds, micros = await client.time()
    return seconds * 1000 + micros / 1000


async def test_two_processes_share_one_budget(services, unique_name):
    """Read from the limiter's own slots (on Redis's clock), not the sends' wall-clock gaps, which
    a busy machine shifts. Whichever crawl each works for: budgets were once keyed by crawl, and
    two crawls leaving by one address each spent the registry's whole limit."""
    limit = Limit(40.0, None)
    clients = [aioredis.Redis.from_url(services.redis_url) for _ in range(2)]
    try:
        limiters = [RedisRateLimiter(c, {"lacnic": limit}) for c in clients]
        slots: list[tuple[float, str]] = []
        await asyncio.gather(*(_send(lim, 10, [f"{unique_name}-nat"], slots) for lim in limiters))
        # 20 slots through one address, one interval apart at least, although two processes asked.
        assert len(slots) == 20 and spaced(slots, limit.interval_ms)
    finally:
        for c in clients:
            await c.aclose()


async def test_second_address_doubles_the_budget_and_pause_holds(services, unique_name):
    limit = Limit(40.0, None)
    a, b = f"{unique_name}-a", f"{unique_name}-b"
    client = aioredis.Redis.from_url(services.redis_url)
    try:
        limiter = RedisRateLimiter(client, {"lacnic": limit})
        slots: list[tuple[float, str]] = []
        await _send(limiter, 20, [a, b], slots)
        assert len(slots) == 20 and spaced(slots, limit.interval_ms)
        # The first two lanes found both addresses idle and took one each in the same instant:
        # each address has a budget of its own.
        first, second = sorted(slots)[:2]
        assert {first[1], second[1]} == {a, b} and second[0] - first[0] < limit.interval_ms

        before = await redis_ms(client)
        await limiter.pause("lacnic", a, 0.6)
        await limiter.pause("lacnic", b, 0.6)
        slots.clear()
        await _send(limiter, 1, [a, b], slots)
        assert slots[0][0] >= before + 600  # no slot inside the pause, on either address
    finally:
        await client.aclose()


async def test_connection_cap(services, unique_name):
    client = aioredis.Redis.from_url(services.redis_url)
    try:
        limiter = RedisRateLimiter(client, {"ripencc": Limit(1000.0, 2)})
        active = peak = 0
        two = asyncio.Event()  # two lanes held connections at once (a fixed hold raced a busy machine)

        async def one() -> None:
            nonlocal active, peak
            async with limiter.permit("ripencc", [f"{unique_name}-x"]):
                active += 1
                peak = max(peak, active)
                if active == 2:
                    two.set()
                with contextlib.suppress(TimeoutError):  # a cap of 1 would never set it
                    await asyncio.wait_for(two.wait(), 5)
                await asyncio.sleep(0.01)  # a third lane would enter now, were the cap not kept
                active -= 1

        await asyncio.gather(*(one() for _ in range(8)))
        assert peak == 2
    finally:
        await client.aclose()


async def test_lanes_queued_for_a_connection_still_send_paced(services, unique_name):
    """Lanes that waited for a connection must not each hold a slot that passed meanwhile, or they
    all send the moment connections free up: the burst that draws a registry's 429s."""
    client = aioredis.Redis.from_url(services.redis_url)
    try:
        limit = Limit(20.0, 1)
        limiter = RedisRateLimiter(client, {"lacnic": limit})
        slots: list[tuple[float, str]] = []
        freed: list[float] = []

        async def slow() -> None:
            async with limiter.permit("lacnic", [f"{unique_name}-x"]):
                await asyncio.sleep(0.6)  # a slow answer holds the only connection
                freed.append(await redis_ms(client))  # (just before it gives the connection back)

        async def quick() -> None:
            async with limiter.permit("lacnic", [f"{unique_name}-x"]) as egress:
                slots.append((GRANTED_SLOT_MS.get(), egress))

        first = asyncio.create_task(slow())
        async with asyncio.timeout(30):  # the slow lane holds the connection before the others ask
            while not await client.exists(budget("lacnic", f"{unique_name}-x") + ":conns"):
                await asyncio.sleep(0.005)
        await asyncio.gather(first, *(quick() for _ in range(6)))
        # Each queued lane took its slot once it had the connection, never one that passed while it
        # queued, and the slots stay one interval apart (Redis's clock, the limiter's own record).
        assert len(slots) == 6 and spaced(slots, limit.interval_ms)
        assert all(t >= freed[0] for t, _ in slots), (freed, slots)
    finally:
        await client.aclose()


async def test_a_dead_holders_connection_slot_comes_back_within_its_lease(services, unique_name):
    """A process killed mid-request never gives its connection slot back; the slot is a lease its
    holder renews, so it lapses in seconds (it once lasted two minutes, and the registry went idle)."""
    client = aioredis.Redis.from_url(services.redis_url)
    try:
        live = RedisRateLimiter(client, {"lacnic": Limit(1000.0, 1)})
        seconds, micros = await client.time()  # what a holder killed mid-request leaves behind:
        now_ms = seconds * 1000 + micros // 1000
        slots = budget("lacnic", f"{unique_name}-x") + ":conns"
        await client.zadd(slots, {"dead": now_ms + RedisRateLimiter.CONN_TTL_MS})

        async def one() -> None:
            async with live.permit("lacnic", [f"{unique_name}-x"]):
                pass

        await asyncio.wait_for(one(), 40)
    finally:
        await client.aclose()


async def test_a_slot_lapsed_while_its_holder_was_frozen_is_not_sent_on(services, unique_name):
    """A process frozen past its connection slot's lease (SIGSTOP, a long GC, a VM migrated) renews
    nothing meanwhile; another process takes the lapsed slot. On waking it must not send beside that
    holder (a RIPE NCC 4th connection in a chaos run): it finds the slot gone and waits for one."""
    limits = {"ripencc": Limit(5.0, 1)}
    nat = f"{unique_name}-nat"
    client = aioredis.Redis.from_url(services.redis_url)
    spans: dict[str, tuple[float, float]] = {}

    other_holds = threading.Event()

    async def hold(limiter: RedisRateLimiter, name: str, seconds: float,
                   holding: threading.Event | None = None) -> None:
        async with limiter.permit("ripencc", [nat]):
            started = time.monotonic()
            if holding is not None:
                holding.set()
            await asyncio.sleep(seconds)
            spans[name] = (started, time.monotonic())

    def other_process() -> None:  # its own loop and connection: a second worker
        async def run() -> None:
            other = aioredis.Redis.from_url(services.redis_url)
            try:
                await hold(RedisRateLimiter(other, limits), "other", 1.0, other_holds)
            finally:
                await other.aclose()

        asyncio.run(run())

    try:
        frozen = RedisRateLimiter(client, limits)
        frozen.CONN_TTL_MS = 400
        for _ in range(5):  # its pacing slot is 1 s away: it holds its connection while it waits
            await frozen._reserve_slot("ripencc", [nat])
        first = asyncio.create_task(hold(frozen, "frozen", 0.05))
        async with asyncio.timeout(10):
            while await client.zcard(budget("ripencc", nat) + ":conns") != 1:
                await asyncio.sleep(0.005)
        other = threading.Thread(target=other_process)
        other.start()
        # The frozen process: its loop runs nothing (its 0.4 s lease lapses) until the other holds
        # the slot (a fixed 1 s freeze raced the other's start on a busy machine).
        assert other_holds.wait(30)
        await first
        other.join()
        assert spans["frozen"][0] >= spans["other"][1], spans  # never both at the registry at once
    finally:
        await client.aclose()


async def test_lanes_wait_for_their_permits_while_the_redis_pool_is_exhausted(services, unique_name):
    """More lanes asking at once than the client's pool has connections: redis-py's pool fails the
    extra commands (MaxConnectionsError, which killed a worker waking from a pause as its lanes gave
    back their slots at once). Each lane waits for its permit instead; none fails, and never more
    hold a connection slot at once than the registry allows."""
    pool = aioredis.ConnectionPool.from_url(services.redis_url, max_connections=2)
    client = aioredis.Redis(connection_pool=pool)
    limiter = RedisRateLimiter(client, {"ripencc": Limit(1000.0, 3)}, "w")
    holding = most = 0
    slots: list[tuple[float, str]] = []

    async def one() -> None:
        nonlocal holding, most
        async with limiter.permit("ripencc", [f"{unique_name}-nat"]) as egress:
            slots.append((GRANTED_SLOT_MS.get(), egress))
            holding += 1
            most = max(most, holding)
            await asyncio.sleep(0.01)
            holding -= 1

    try:
        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(20))), 60)
        assert len(slots) == 20 and spaced(slots, limiter.limits["ripencc"].interval_ms)
        assert 1 <= most <= 3
    finally:
        await client.aclose()
