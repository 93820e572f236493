"""The registry client against the simulator: the WHOIS fallback is async, retried and bound; 429 pauses."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import unquote

import aiohttp

from whoiscrawl.ipv4 import ip_int
from whoiscrawl.ratelimit import MemoryRateLimiter
from whoiscrawl.rates import Limit
from whoiscrawl.registry import Egress, RegistryClient
from whoiscrawl.sim.model import World
from whoiscrawl.space import Bootstrap


async def test_whois_answers_when_rdap_fails_from_the_egress_it_was_charged_to(
    start_sim, world: World, find_address
):
    sim = await start_sim(time_scale=1000)
    addr, obj = find_address("afrinic")
    # RDAP at a port nobody listens on: every attempt fails, and the client asks WHOIS instead.
    dead = Bootstrap.from_document({"services": [[[f"{addr.split('.')[0]}.0.0.0/8"],
                                                  ["http://127.0.0.1:1/afrinic/rdap/"]]]})
    client = RegistryClient(
        dead, MemoryRateLimiter({"afrinic": Limit(500.0)}), [Egress("second", bind="127.0.0.2")],
        whois_servers={"afrinic": f"127.0.0.1:{sim.whois_port}"}, backoff=0.001,
    )
    try:
        result = await client.lookup(ip_int(addr))
    finally:
        await client.close()
    assert result.record is not None and result.record.source == "whois"
    assert result.record.handle == world.handle(obj) and result.registry == "afrinic"
    assert result.lookups == client.attempts + 1  # four RDAP attempts, then one WHOIS query
    sim.log.flush()
    logged = [json.loads(line) for line in sim.log.path.open()]
    assert [(e["protocol"], e["source"]) for e in logged] == [("whois", "127.0.0.2")]
    # Its children are listed all the same, by the registry's WHOIS (before: not at all, and the
    # grid missed those smaller than a cell).
    assert result.down_url is not None and result.down_url.startswith(f"whois://127.0.0.1:{sim.whois_port}/")
    assert "-m" in unquote(result.down_url)


async def test_a_registry_answers_help_while_it_is_up_and_not_while_it_is_down(start_sim):
    sim = await start_sim(time_scale=1000, faults={"lacnic": {"http_5xx": 1.0, "protocols": ["rdap"]},
                                                   "apnic": {"malformed": 1.0, "ranges": ["1.0.0.0/16"]}})
    async with aiohttp.ClientSession() as session, session.get(sim.bootstrap_url) as resp:
        bootstrap = Bootstrap.from_document(await resp.json(content_type=None))
    limits = {r: Limit(500.0) for r in ("lacnic", "apnic")}
    client = RegistryClient(bootstrap, MemoryRateLimiter(limits), backoff=0.001)
    try:
        assert not await client.answering("lacnic")  # its RDAP is down
        assert await client.answering("apnic")  # one range's answers are broken, not the registry
    finally:
        await client.close()
    sim.log.flush()
    logged = [(e["registry"], e["protocol"], e["outcome"]) for e in map(json.loads, sim.log.path.open())]
    assert logged.count(("lacnic", "help", "fault")) == client.attempts
    assert logged.count(("apnic", "help", "ok")) == 1


class NotingPauses(MemoryRateLimiter):
    """The limiter, noting each pause the client asks of it (seconds)."""

    def __init__(self, limits: dict[str, Limit]) -> None:
        super().__init__(limits)
        self.pauses: list[float] = []

    async def pause(self, registry: str, egress: str, seconds: float) -> None:
        self.pauses.append(seconds)
        await super().pause(registry, egress, seconds)


async def test_a_429_without_retry_after_pauses_by_the_registry_s_pace_and_doubles(start_sim, find_address):
    """RIPE NCC's 429s say not how long: the first pause is 20 intervals of its budget (here about 40
    ms; 2 s at the real 10/s), and doubles while the refusals go on, instead of a fixed 5 s."""
    sim = await start_sim(faults={"ripencc": {"storm": {"period_s": 1000, "duration_s": 0.5}}})
    addr, _ = find_address("ripencc")
    async with aiohttp.ClientSession() as session, session.get(sim.bootstrap_url) as resp:
        bootstrap = Bootstrap.from_document(await resp.json(content_type=None))
    limiter = NotingPauses({"ripencc": Limit(500.0)})
    client = RegistryClient(bootstrap, limiter)
    try:
        result = await client.lookup(ip_int(addr))
    finally:
        await client.close()
    assert result.record is not None and result.rate_limited >= 3
    first = client._unsaid_pause("ripencc", 1)
    assert first == 20 * Limit(500.0).interval_ms / 1000 and client._unsaid_pause("ripencc", 3) == 4 * first
    # The pauses the client asked of its limiter (its own record, not the wall clock): 20 intervals,
    # then twice as long for each refusal more, never a fixed 5 s.
    assert limiter.pauses == [first * 2**k for k in range(len(limiter.pauses))], limiter.pauses
    assert len(limiter.pauses) == result.rate_limited


async def test_a_lookup_cancelled_mid_request_keeps_its_connection_until_the_registry_answered(
    start_sim, find_address
):
    """RIPE NCC serves 3 requests per address at once and goes on serving one whose client went
    away. A lane cancelled while its request is at the registry (a revocation, a drain's end) must
    not hand its connection slot to the next lookup before the answer is in: that 4th is a 429."""
    sim = await start_sim(latency=True, faults={"ripencc": {"latency": {"median_ms": 400, "sigma": 0.01}}})
    addr, _ = find_address("ripencc")
    async with aiohttp.ClientSession() as session, session.get(sim.bootstrap_url) as resp:
        bootstrap = Bootstrap.from_document(await resp.json(content_type=None))
    client = RegistryClient(bootstrap, MemoryRateLimiter({"ripencc": Limit(500.0, max_connections=3)}))
    try:
        first = [asyncio.create_task(client.lookup(ip_int(addr))) for _ in range(3)]
        # All three at the registry: the simulator holds their connection slots (its own count).
        async with asyncio.timeout(30):
            while sum(st.inflight for (reg, _), st in sim.limiter.states.items() if reg == "ripencc") < 3:
                await asyncio.sleep(0.005)
        for task in first:
            task.cancel()
        results = await asyncio.gather(*(client.lookup(ip_int(addr)) for _ in range(3)))
    finally:
        await client.close()
    assert all(task.cancelled() for task in first)
    assert [r.rate_limited for r in results] == [0, 0, 0]
    sim.log.flush()
    outcomes = [json.loads(line)["outcome"] for line in sim.log.path.open()]
    assert outcomes.count("ok") == 6 and "rate_limited" not in outcomes
