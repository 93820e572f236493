"""The chaos bench, short: a fleet under SIGKILLs, spot notices, a broker restart, Redis restarted
with its data lost and misbehaving registries loses nothing."""

from __future__ import annotations

import functools
import json

import pytest

from whoiscrawl.bench.chaos import Chaos, ChaosPlan, chaos_run, owned_services
from whoiscrawl.dev.services import restart_kafka, restart_redis

from .conftest import RATE_LIMITED_SHARE, TIME_SCALE

pytestmark = pytest.mark.slow  # a fleet crawl of `quick` under chaos, against the session's calm one


def test_a_fleet_under_kills_spot_notices_and_lost_services_delivers_every_block_of_a_calm_one(
        tmp_path, calm_quick):
    with owned_services() as own:  # a broker and a Redis of its own: this test restarts them
        chaos = Chaos(kills=6, terms=2, seed=14, every_s=(0.5, 2.5),
                      restart_broker=functools.partial(restart_kafka, own),
                      restart_redis=functools.partial(restart_redis, own))
        # The calm crawl is the session's (calm_quick): the same blocks as a calm fleet's, crawled once.
        figures, found = chaos_run(ChaosPlan("quick", 3, TIME_SCALE), own.kafka_bootstrap, own.redis_url,
                                   tmp_path, chaos, calm_quick.blocks)
    lost = calm_quick.blocks - found
    print(json.dumps({**figures, "lost": len(lost), "kills": chaos.killed, "terms": chaos.termed,
                      "drains": chaos.drains, "recoveries": [chaos.recoveries, chaos.redis_recoveries]}))
    assert figures["finished"]
    assert chaos.killed >= 4 and chaos.termed >= 1  # the crawl may end before the last blows
    assert chaos.restarted == 1 and len(chaos.recoveries) == 1  # the broker came back, the crawl went on
    assert chaos.redis_lost == 1 and len(chaos.redis_recoveries) == 1  # rebuilt, went on
    assert figures["faults_served"] > 0  # the registries misbehaved meanwhile
    assert not lost, (sorted(lost)[:10], figures["lost_blocks"])  # each with its trail: evidence.json
    assert figures["unbacked_blocks"] == 0  # the store logged no block the results lack
    assert figures["unread_blocks"] == 0  # and the export read every block on the topic
    # each worker logged the blocks it kept (for a lost block's trail)
    assert any(" acknowledged" in log.read_text() for log in tmp_path.glob("worker-*.log"))
    assert chaos.drained_in_grace
    assert figures["rate_limit_violations"] <= RATE_LIMITED_SHARE * figures["lookups"]
