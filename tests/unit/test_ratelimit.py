"""Budgets: parsing the settings, and the GCRA reservations that pace every process."""

from __future__ import annotations

import asyncio
import time

import pytest

from whoiscrawl.ratelimit import MemoryRateLimiter, gcra_reserve
from whoiscrawl.rates import DEFAULT_LIMITS, Limit, LimitError, parse_limits


@pytest.mark.parametrize(
    ("text", "registry", "rate", "conns"),
    [
        ("arin=20/s", "arin", 20.0, DEFAULT_LIMITS["arin"].max_connections),
        ("lacnic=10/m", "lacnic", 10 / 60, DEFAULT_LIMITS["lacnic"].max_connections),
        ("ripencc=8:3", "ripencc", 8.0, 3),
        ("afrinic=5000/d", "afrinic", 5000 / 86400, DEFAULT_LIMITS["afrinic"].max_connections),
        ("apnic=0", "apnic", 0.0, DEFAULT_LIMITS["apnic"].max_connections),
    ],
)
def test_parse_limits(text, registry, rate, conns):
    limits = parse_limits(text)
    assert limits[registry].rate_per_s == pytest.approx(rate)
    assert limits[registry].max_connections == conns


@pytest.mark.parametrize("bad", ["arin", "arin=fast", "ripe=10/s", "arin=10/w"])
def test_bad_limits_show_the_expected_form(bad):
    with pytest.raises(LimitError, match="REGISTRY=N"):
        parse_limits(bad)


@pytest.mark.parametrize(
    ("tat", "now", "interval", "pause", "wait", "new_tat"),
    [
        (0, 1000, 100, 0, 0, 1100),  # idle: go now
        (1100, 1000, 100, 0, 100, 1200),  # the next slot is 100 ms away
        (1100, 1000, 100, 5000, 4000, 5100),  # paused by a 429 until 5000
        (900, 1000, 100, 0, 0, 1100),  # a stale reservation does not bank a burst
    ],
)
def test_gcra_reserve(tat, now, interval, pause, wait, new_tat):
    assert gcra_reserve(tat, now, interval, pause) == (wait, new_tat)


async def test_memory_limiter_paces_and_picks_the_freest_egress():
    limiter = MemoryRateLimiter({"arin": Limit(50.0)})
    started = time.monotonic()
    used = []

    async def one() -> None:
        async with limiter.permit("arin", ["a", "b"]) as egress:
            used.append(egress)

    await asyncio.gather(*(one() for _ in range(20)))
    elapsed = time.monotonic() - started
    # 20 requests over two addresses at 50/s each (paced at 95%): ~0.2 s, not 0.4 s and not 0.
    assert 0.15 < elapsed < 0.35
    assert used.count("a") == used.count("b") == 10


async def test_a_stalled_process_does_not_burst_when_it_wakes():
    limiter = MemoryRateLimiter({"ripencc": Limit(200.0)})
    sent: list[float] = []

    async def one() -> None:
        async with limiter.permit("ripencc", ["a"]):
            sent.append(time.monotonic())

    lanes = [asyncio.create_task(one()) for _ in range(30)]
    await asyncio.sleep(0.02)
    time.sleep(0.1)  # the whole process stalls (GC, a busy core) while slots pass
    await asyncio.gather(*lanes)
    sent.sort()
    # About 20 slots passed during the stall; none of them may go out together.
    worst = max(sum(1 for t in sent if start <= t < start + 0.01) for start in sent)
    assert worst <= 4, worst
