"""The circuit breaker holds off a failing registry, then sends one probe and closes when it is answered."""

from __future__ import annotations

import asyncio

from whoiscrawl.registry.breaker import CircuitBreaker


def tripped(cooldown: float = 0.05) -> CircuitBreaker:
    breaker = CircuitBreaker(base_cooldown=cooldown)
    for _ in range(breaker.min_failures):
        breaker.failure()
    assert breaker.is_open
    return breaker


async def test_one_probe_goes_when_the_cooldown_ends_and_its_answer_closes_the_circuit():
    breaker = tripped()
    waiting = [asyncio.create_task(breaker.wait()) for _ in range(5)]
    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    assert [t.result() for t in done] == [True]  # the probe alone; the others wait for its answer
    for _ in range(5):  # the cooldown is over: the others wake, and wait for the probe's answer
        await asyncio.sleep(0)
    assert sum(t.done() for t in waiting) == 1 and breaker.is_open
    breaker.probed(True)  # the registry is back
    assert not breaker.is_open
    assert sorted(await asyncio.gather(*waiting)) == [False, False, False, False, True]
    breaker.failure()  # the outage's failures are forgotten: one more does not trip it again
    assert not breaker.is_open and await breaker.wait() is False


async def test_a_failed_probe_holds_off_again_for_longer_and_an_unsettled_one_lets_the_next_probe():
    breaker = tripped(cooldown=0.05)
    assert await breaker.wait() is True
    breaker.probed(False)  # still down: twice the cooldown
    assert breaker.is_open
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await breaker.wait() is True
    assert loop.time() - started >= 0.09
    breaker.probed(None)  # a 429 or a cancelled request: no news, the next request probes
    assert await asyncio.wait_for(breaker.wait(), 1) is True
