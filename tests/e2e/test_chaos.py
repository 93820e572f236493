"""The chaos bench, short: a fleet under SIGKILLs, spot notices, a broker restart, Redis restarted
with its data lost and misbehaving registries loses nothing."""

from __future__ import annotations

import functools
import json

import pytest

from whoiscrawl.chaos import Chaos, chaos_bench, owned_services
from whoiscrawl.dev.services import restart_kafka, restart_redis

from .conftest import RATE_LIMITED_SHARE, TIME_SCALE

pytestmark = pytest.mark.slow  # two fleet crawls of `quick`: a calm one and one under chaos


def test_a_fleet_under_kills_spot_notices_and_lost_services_delivers_every_block_of_a_calm_one(
        tmp_path):
    with owned_services() as own:  # a broker and a Redis of its own: this test restarts them
        chaos = Chaos(kills=6, terms=2, seed=14, every_s=(0.5, 2.5),
                      restart_broker=functools.partial(restart_kafka, own),
                      restart_redis=functools.partial(restart_redis, own))
        figures = chaos_bench("quick", 3, TIME_SCALE, own.kafka_bootstrap, own.redis_url, tmp_path, chaos)
    print(json.dumps(figures))
    assert figures["finished"] and figures["no_chaos"]["finished"]
    assert figures["kills"] >= 4 and figures["terms"] >= 1  # the crawl may end before the last blows
    assert figures["broker_restarts"] == 1 and len(figures["broker_recovery_s"]) == 1  # it went on
    assert figures["redis_losses"] == 1 and len(figures["redis_recovery_s"]) == 1  # rebuilt, went on
    assert figures["faults_served"] > 0  # the registries misbehaved meanwhile
    assert figures["lost"] == 0
    assert figures["drained_in_grace"]
    assert figures["rate_limit_violations"] <= RATE_LIMITED_SHARE * figures["lookups"]
