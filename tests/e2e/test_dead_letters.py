"""A fleet worker keeps what it cannot read on the crawl's dead-letter topic (real Kafka, Redis and
worker processes) and goes on: the simulator's broken answers for one /24, and a work message that
is no shard. Every broken answer the simulator served is a letter; the crawl completes."""

from __future__ import annotations

import json
import os
import random
import re
import time
import urllib.request
from urllib.parse import unquote

import pytest
import yaml
from confluent_kafka import Producer
from netaddr import IPAddress, IPNetwork

from whoiscrawl import queue
from whoiscrawl.bench.common import simulator
from whoiscrawl.bench.fleet import Fleet
from whoiscrawl.dev.services import free_port
from whoiscrawl.publish import publish_plan
from whoiscrawl.space import plan_crawl
from whoiscrawl.store.redis_admin import RedisCrawlAdmin

from .conftest import TIME_SCALE

# A broken address is given up on after the crawl's failure pauses (2 + 10 + 30 s): over a minute.
pytestmark = pytest.mark.slow
BROKEN = "186.0.3.0/24"  # a network of its own in `quick` (186.0.0.0/23 is one block)


def _scraped(port: int) -> dict[tuple[str, str], float]:
    """whoiscrawl_dead_letters_total by (kind, registry) from a worker's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    found = re.findall(r'^whoiscrawl_dead_letters_total\{kind="(\w+)",registry="(\w+)"\} (\S+)$', text, re.M)
    return {(kind, registry): float(value) for kind, registry, value in found}


def test_a_worker_keeps_what_it_cannot_read_on_the_dead_letter_topic_and_goes_on(services, tmp_path):
    spec, log = tmp_path / "faults.yaml", tmp_path / "requests.jsonl"
    spec.write_text(yaml.safe_dump({"lacnic": {"malformed": 1.0, "ranges": [BROKEN]}}))
    crawl = f"dead-{os.getpid()}-{random.randrange(1 << 30):x}"
    kafka, prefix, port = services.kafka_bootstrap, "whoiscrawl.", free_port()
    admin = RedisCrawlAdmin(services.redis_url, crawl)
    try:
        with simulator("quick", TIME_SCALE, log, faults=spec) as sim:
            # One partition: a message that is no shard, then the plan's shards behind it.
            queue.ensure_topics(kafka, prefix, crawl, partitions=1)
            producer = Producer({"bootstrap.servers": kafka})
            producer.produce(queue.topic_names(prefix, crawl)[0], value=b"\x00not a shard")
            assert producer.flush(30) == 0
            plan = plan_crawl(crawl=crawl, ranges=["186.0.2.0/23"], strategy="sweep", resolution=24)
            publish_plan(plan, bootstrap=kafka, prefix=prefix, store=admin, partitions=1)
            fleet = Fleet(crawl, kafka, services.redis_url, sim, tmp_path, workers=1, metrics_port=port)
            try:
                fleet.start(1)
                deadline = time.monotonic() + 300
                while (progress := admin.progress()).shards_done < len(plan.shards):
                    assert time.monotonic() < deadline and fleet.procs[0].poll() is None, progress
                    time.sleep(0.5)
                scraped = _scraped(port)
            finally:
                fleet.stop()
        letters = list(queue.iter_dead_letters(kafka, prefix, crawl))
    finally:
        queue.delete_topics(kafka, prefix, crawl)
        admin.delete_crawl()
    served = [e for e in map(json.loads, log.read_text().splitlines()) if e["outcome"] == "fault"]
    answers = [letter for letter in letters if letter.kind == "answer"]
    [work] = [letter for letter in letters if letter.kind == "work"]
    assert work.raw() == b"\x00not a shard" and "not JSON" in work.reason
    assert progress.errors >= 1  # the broken address was given up on and counted, as before
    assert len(answers) == len(served) > 0
    assert scraped == {("answer", "lacnic"): len(answers), ("work", "none"): 1.0}
    for letter in answers:
        assert letter.registry == "lacnic" and letter.reason and letter.raw()
        asked = re.search(r"186\.0\.\d+\.\d+", unquote(letter.asked))
        assert asked and IPAddress(asked.group()) in IPNetwork(BROKEN), letter.asked
