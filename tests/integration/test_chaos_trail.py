"""The chaos bench's evidence: a block the store logged that the results lack is found, with its trail."""

from __future__ import annotations

import json

import redis

from whoiscrawl import queue
from whoiscrawl.bench.trail import Sources, evidence, unbacked
from whoiscrawl.blocks import encode_block
from whoiscrawl.ipv4 import ip_int
from whoiscrawl.keys import Keys
from whoiscrawl.records import NetworkRecord
from whoiscrawl.store.redis_admin import RedisCrawlAdmin
from whoiscrawl.strategy import Answer

DELIVERED = NetworkRecord("lacnic", "192.12.112.0/24", "192.12.112.0", "192.12.112.255", ["192.12.112.0/24"])
PARENT = (ip_int("192.12.112.0"), ip_int("192.12.115.255"))  # logged, never delivered


async def test_a_logged_block_missing_from_the_results_is_unbacked_and_trailed(services, unique_name,
                                                                               tmp_path):
    queue.ensure_topics(services.kafka_bootstrap, "whoiscrawl.", unique_name, partitions=2)
    sink = queue.KafkaSink(services.kafka_bootstrap, "whoiscrawl.", unique_name)
    client = redis.Redis.from_url(services.redis_url)
    try:
        await sink.emit(DELIVERED)
        assert sink.close() == 0
        for answer in (Answer(*PARENT, False), Answer(DELIVERED.first, DELIVERED.last, True)):
            client.xadd(Keys(unique_name).blocks, {"b": encode_block(answer)})
        asked = [("192.12.113.0", "192.12.112.0/22", "ok"), ("192.12.113.0", None, "fault"),
                 ("192.12.112.0", "192.12.112.0/24", "ok"), ("8.8.8.8", "LVLT", "ok")]
        (tmp_path / "requests.jsonl").write_text("".join(
            json.dumps({"t": 100.0 + i, "source": "127.0.10.1", "registry": "lacnic", "address": a,
                        "protocol": "rdap", "status": 200, "handle": h, "outcome": o}) + "\n"
            for i, (a, h, o) in enumerate(asked)))
        (tmp_path / "worker-0.log").write_text("x WARNING dropping the probe of 192.12.113.0\nx INFO other\n")
        (tmp_path / "worker-1.log").write_text("x INFO taking shards\n")
        timeline = [(90.0, "broker-restart", ""), (99.0, "sigstop", "worker-1 for 37s"),
                    (101.5, "started", "worker-2"), (500.0, "late", "")]

        sources = Sources.read(services.kafka_bootstrap, services.redis_url, unique_name, tmp_path, timeline)
        assert unbacked(sources) == [PARENT]  # the /24 was delivered; the /22 only logged
        out = tmp_path / "evidence.json"
        [summary] = evidence({"unbacked": unbacked(sources)}, sources, out)
    finally:
        queue.delete_topics(services.kafka_bootstrap, "whoiscrawl.", unique_name)
        RedisCrawlAdmin(services.redis_url, unique_name).delete_crawl()
        client.close()

    assert summary["block"] == "192.12.112.0 - 192.12.115.255" and summary["kind"] == "unbacked"
    assert summary["answered"] == 2 and summary["first_answered"] == 100.0  # the fault is no answer
    assert summary["logged"] is not None and summary["on_topic"] == [] and summary["holders_on_topic"] == 0
    [trail] = json.loads(out.read_text())
    assert [r["address"] for r in trail["requests"]] == ["192.12.113.0", "192.12.113.0", "192.12.112.0"]
    assert [e["event"] for e in trail["chaos"]] == ["broker-restart", "sigstop", "started"]  # not "late"
    # who could have asked: the registries see one source address for the whole fleet
    assert [r["running"] for r in trail["requests"]] == [["worker-0"], ["worker-0"], ["worker-0", "worker-2"]]
    assert trail["worker_logs"] == ["worker-0: x WARNING dropping the probe of 192.12.113.0"]
    assert [e["leaf"] for e in trail["block_log"]] == [False]  # its own entry; the /24 inside it is no holder
