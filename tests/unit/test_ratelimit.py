"""Budgets: parsing the settings, and the GCRA reservations that pace every process."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from whoiscrawl.ratelimit import GRANTED_SLOT_MS, MemoryRateLimiter, gcra_reserve
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


def spaced(slots: list[tuple[float, str]], interval_ms: float) -> bool:
    """Every egress's granted slots at least one interval apart (float rounding aside)."""
    for egress in {e for _, e in slots}:
        mine = sorted(t for t, e in slots if e == egress)
        if any(b - a < interval_ms - 1e-6 for a, b in itertools.pairwise(mine)):
            return False
    return True


async def test_memory_limiter_paces_and_picks_the_freest_egress():
    """Read from the limiter's own slots (GRANTED_SLOT_MS), not the sends' wall-clock times, which
    a busy machine shifts: paced on each address, and both addresses at work side by side."""
    limit = Limit(50.0)
    limiter = MemoryRateLimiter({"arin": limit})
    slots: list[tuple[float, str]] = []

    async def one() -> None:
        async with limiter.permit("arin", ["a", "b"]) as egress:
            slots.append((GRANTED_SLOT_MS.get(), egress))

    await asyncio.gather(*(one() for _ in range(20)))
    assert len(slots) == 20 and spaced(slots, limit.interval_ms)
    # The first two lanes found both addresses idle and took one each, in the same instant: the
    # budget is per address, so two addresses send twice as fast as one.
    first, second = sorted(slots)[:2]
    assert {first[1], second[1]} == {"a", "b"} and second[0] - first[0] < limit.interval_ms


async def test_a_stalled_process_does_not_burst_when_it_wakes():
    """Lanes whose slots passed while the whole process stood still (GC, a busy core) take fresh
    slots: none is granted a slot that lay inside the stall, so no burst when it wakes."""
    limit = Limit(200.0)
    limiter = MemoryRateLimiter({"ripencc": limit})
    slots: list[tuple[float, str]] = []

    async def one() -> None:
        async with limiter.permit("ripencc", ["a"]) as egress:
            slots.append((GRANTED_SLOT_MS.get(), egress))

    lanes = [asyncio.create_task(one()) for _ in range(30)]
    await asyncio.sleep(0.02)
    # Lanes still wait for slots (30 take 158 ms): some of those slots pass during the stall.
    assert sum(not lane.done() for lane in lanes) > 1
    stalled = time.monotonic() * 1000
    time.sleep(0.1)  # the stall itself: the event loop runs nothing meanwhile
    woke = time.monotonic() * 1000
    await asyncio.gather(*lanes)
    assert len(slots) == 30 and spaced(slots, limit.interval_ms)
    # A lane may still use a slot that passed by at most max(interval, 5 ms) when it woke (the
    # limiter's tolerance, sleep_until_slot); anything older inside the stall was given up.
    tolerance = max(limit.interval_ms, 5.0)
    granted_in_stall = [t for t, _ in slots if stalled <= t < woke - tolerance]
    assert granted_in_stall == [], granted_in_stall
