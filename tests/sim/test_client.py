"""The registry client against the simulator: the WHOIS fallback is async, retried and bound."""

from __future__ import annotations

import json

from whoiscrawl.ratelimit import MemoryRateLimiter
from whoiscrawl.rates import Limit
from whoiscrawl.registry import Egress, RegistryClient
from whoiscrawl.sim.model import World, ip_int
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
