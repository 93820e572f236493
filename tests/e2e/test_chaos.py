"""The chaos bench, short: a fleet under SIGKILLs, spot notices and misbehaving registries loses nothing."""

from __future__ import annotations

import json

from whoiscrawl.chaos import Chaos, chaos_bench

from .conftest import TIME_SCALE


def test_a_fleet_under_kills_and_spot_notices_delivers_every_block_of_a_calm_one(services, tmp_path):
    chaos = Chaos(kills=6, terms=2, seed=14, every_s=(0.5, 2.5))
    kafka, redis_url = services.kafka_bootstrap, services.redis_url
    figures = chaos_bench("quick", 3, TIME_SCALE, kafka, redis_url, tmp_path, chaos)
    print(json.dumps(figures))
    assert figures["finished"] and figures["no_chaos"]["finished"]
    assert figures["kills"] >= 4 and figures["terms"] >= 1  # the crawl may end before the last blows
    assert figures["faults_served"] > 0  # the registries misbehaved meanwhile
    assert figures["lost"] == 0
    assert figures["drained_in_grace"]
    # Paced under every limit; as in the local test, allow the simulator's own stalls 0.5%.
    assert figures["rate_limit_violations"] <= 0.005 * figures["lookups"]
