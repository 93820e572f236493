"""Redis restarted empty in the middle of a fleet crawl: the workers rebuild the store from the
topics and the crawl delivers every block of a calm one."""

from __future__ import annotations

import functools
import json

from whoiscrawl.chaos import Chaos, chaos_bench, owned_services
from whoiscrawl.dev.services import restart_redis

from .conftest import TIME_SCALE


def test_a_fleet_whose_redis_lost_everything_mid_crawl_rebuilds_it_and_loses_no_block(
        services, tmp_path):
    with owned_services(names=("redis",)) as own:  # a Redis of its own: this test restarts it
        chaos = Chaos(kills=0, terms=0, registry_faults=False, broker_restarts=0,
                      restart_redis=functools.partial(restart_redis, own), redis_after_blocks=2000)
        figures = chaos_bench("quick", 2, TIME_SCALE, services.kafka_bootstrap, own.redis_url, tmp_path,
                              chaos)
    print(json.dumps(figures))
    assert figures["finished"] and figures["no_chaos"]["finished"]
    assert (figures["kills"], figures["terms"]) == (0, 0)  # the Redis loss alone
    assert figures["redis_losses"] == 1 and len(figures["redis_recovery_s"]) == 1  # it went on
    assert figures["lost"] == 0
