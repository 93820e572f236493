"""A scheduled WhoisCrawl on a real control plane: its next generation starts when its slot comes.

The chart's operator (namespaced RBAC) and real workers crawl two small ranges of `quick` once
from the simulator's published files (RIPE NCC's from its dump, ARIN's live); with
`schedule: "* * * * *"` the first slot after it completed starts generation 2, into data of its
own, as a refresh of generation 1 (the files unchanged: ARIN's networks carried, not asked again,
so generation 2 makes fewer lookups); generation 1's data (the one complete map) is kept while
generation 2 runs and pruned once it completes (`history.keep: 1`); deleting the crawl deletes what
generation 2 kept. No sleeps: each step waits on the crawl's status.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka.admin import AdminClient
from opsupport_api import until
from whoiscrawl.operator.builders import crawl_id
from whoiscrawl.operator.spec import parse_spec
from whoiscrawl.operator.status import parse_time

from whoiscrawl import queue
from whoiscrawl.bench.common import Simulator
from whoiscrawl.store import Progress
from whoiscrawl.store.redis_admin import RedisCrawlAdmin

from .conftest import WC, K8s
from .test_operator import audit_events, condition, crawl_doc, drop_data, forbidden, operator_release

pytestmark = [pytest.mark.timeout(420), pytest.mark.slow, pytest.mark.services]


def schedule_of(k8s: K8s, namespace: str, crawl: str) -> dict[str, Any]:
    return ((k8s.api.get(*WC, namespace, crawl) or {}).get("status") or {}).get("schedule") or {}


def test_a_scheduled_crawl_starts_its_next_generation_when_its_slot_comes(
        k8s: K8s, crd: dict, shared_pool: str, services: Any, quick_sim: Simulator, namespace: str,
        tmp_path: Path) -> None:
    crawl = f"n{uuid.uuid4().hex[:6]}"
    doc = crawl_doc(crawl, services, quick_sim, shared_pool)
    doc["spec"] |= {"ranges": ["193.0.0.0/20", "24.0.0.0/20"], "schedule": "* * * * *",
                    "history": {"keep": 1},
                    "sources": {"filesBase": quick_sim.files_base, "acceptDumpTerms": "all"}}
    prefix = parse_spec(doc["spec"]).kafka.queue_prefix
    first, second = crawl_id(namespace, crawl), crawl_id(namespace, crawl, 2)
    try:
        with operator_release(k8s, tmp_path, [namespace], shared_pool, [namespace]) as release:
            k8s.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(doc))
            try:
                until(lambda: condition(k8s, namespace, crawl, "Completed") == ("True", "AllShardsDone")
                      or schedule_of(k8s, namespace, crawl).get("generation") == 2, 150,
                      "generation 1 Completed")
                began = until(lambda: schedule_of(k8s, namespace, crawl).get("generation") == 2
                              and schedule_of(k8s, namespace, crawl), 90, "generation 2 started")
                # generation 1's map is still there while generation 2 runs
                while_running = RedisCrawlAdmin(services.redis_url, first).progress()
                until(lambda: condition(k8s, namespace, crawl, "Completed") == ("True", "AllShardsDone"),
                      150, "generation 2 Completed")
                until(lambda: schedule_of(k8s, namespace, crawl).get("generations") == [2], 60,
                      "generation 1 pruned once generation 2 completed")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{k8s.api.get(*WC, namespace, crawl)}\n"
                                     f"{release.kubelet.tail()}") from None
            config = k8s.api.get("v1", "configmaps", namespace, f"{crawl}-worker-config") or {}
            gen2 = RedisCrawlAdmin(services.redis_url, second).progress()
            gen1 = RedisCrawlAdmin(services.redis_url, first).progress()
            topics = set(AdminClient({"bootstrap.servers": services.kafka_bootstrap})
                         .list_topics(timeout=10).topics)
            status = (k8s.api.get(*WC, namespace, crawl) or {}).get("status") or {}
            reasons = {e.get("reason") for e in k8s.api.list("v1", "events", namespace)}
            k8s.kubectl("delete", "wc", crawl, "-n", namespace, "--timeout=120s")
            until(lambda: RedisCrawlAdmin(services.redis_url, second).progress() == Progress(), 30,
                  "generation 2's Redis keys deleted with the crawl")
            refused = forbidden(audit_events(k8s.cluster.audit_log, release.user))
    finally:
        drop_data(services, prefix, first)
        drop_data(services, prefix, second)

    last = began["lastGeneration"]
    print(f"\nschedule {began}\ngeneration 2: {gen2}")
    # The slot answered is a whole minute after the schedule was first seen (the crawl's first
    # pass) and after generation 1 completed, and generation 1's result is kept.
    slot, seen = parse_time(began["lastScheduleTime"]), parse_time(began["since"])
    done = parse_time(last["completionTime"])
    assert slot is not None and seen is not None and done is not None and slot.second == 0
    assert seen < slot <= seen + timedelta(minutes=5) and slot - done < timedelta(minutes=1)
    assert last["result"] == "Completed" and last["generation"] == 1 and last["blocks"] > 0
    # keep 1 counts completed generations: generation 1's data stayed while 2 ran, went after
    assert began["generations"] == [1, 2] and while_running.blocks > 0
    assert {"GenerationStarted", "GenerationsPruned"} <= reasons, reasons
    # Generation 2 crawled into its own data, to the end, and its workers were told so.
    assert config["data"]["WHOISCRAWL_CRAWL"] == second
    # ... as a refresh of generation 1: what the unchanged files leave as it was is carried
    assert config["data"]["WHOISCRAWL_PREVIOUS"] == first
    refresh = status.get("refresh") or {}
    print(f"refresh {refresh}\ngeneration 1 lookups {last['lookups']}, generation 2 {gen2.lookups}")
    assert refresh.get("previous") == first and not refresh.get("refused"), refresh
    assert refresh["carried"] > 0 and refresh["byRegistry"]["arin"]["carried"] > 0
    assert gen2.lookups < last["lookups"]
    assert gen2.blocks > 0 and gen2.shards_done == gen2.shards_total > 0
    assert gen1 == Progress() and not [t for t in queue.topic_names(prefix, first) if t in topics]
    assert [t for t in queue.topic_names(prefix, second) if t in topics]
    assert status["schedule"]["generation"] == 2 and status["schedule"]["nextScheduleTime"]
    assert refused == [], "the chart's RBAC refused the operator"
