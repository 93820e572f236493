"""A scheduled WhoisCrawl on a real control plane: its next generation starts when its slot comes.

The chart's operator (namespaced RBAC) and real workers crawl two small ranges of `quick` once
from the simulator's published files (RIPE NCC's from its dump, ARIN's live); the world then moves
a day on (the simulator's churn, 20% of the networks, so the ranges change), and with
`schedule: "* * * * *"` (suspended until the day moved) the next slot starts generation 2, into
data of its own, as a refresh of generation 1 (ARIN's networks carried, not asked again, so
generation 2 makes fewer lookups); when it completes, its change feed against generation 1 is on
the crawl's change-feed topic and equals the truth's difference of the two days in those ranges;
generation 1's data (the one complete map) is kept while generation 2 runs and pruned once it
completes and its feed is out (`history.keep: 1`), and the feed's history with it: the topic then
begins with generation 2's map whole (a rebase), the records before deleted, as a consumer following
the topic sees; deleting the crawl deletes what generation 2 kept and the feed. No sleeps: each step
waits on the crawl's status.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from opsupport_api import until
from typer.testing import CliRunner
from whoiscrawl.operator.builders import crawl_id
from whoiscrawl.operator.spec import parse_spec
from whoiscrawl.operator.status import parse_time

from whoiscrawl import queue
from whoiscrawl.bench.common import Simulator, simulator
from whoiscrawl.bench.refresh import advance
from whoiscrawl.cli import app
from whoiscrawl.ipv4 import ip_int, ip_str
from whoiscrawl.results.diff import FIELDS, KINDS, classify
from whoiscrawl.sim import scenarios
from whoiscrawl.sim.churn import Churn
from whoiscrawl.sim.score import truth_records
from whoiscrawl.store import Progress
from whoiscrawl.store.redis_admin import RedisCrawlAdmin

from .conftest import WC, K8s
from .test_operator import audit_events, condition, crawl_doc, drop_data, forbidden, operator_release

pytestmark = [pytest.mark.timeout(420), pytest.mark.slow, pytest.mark.services]


RANGES = ["193.0.0.0/20", "24.0.0.0/20"]  # RIPE NCC's from its dump, ARIN's live
CHURN = "0.2"  # of the networks a day: the two /20s change (11 changes, all RIPE NCC's, on day 1)
FILES_SHOW_AT_ARIN = ("transferred", "moved")  # ARIN's changes its statistics show (it has no dump)


@pytest.fixture
def churning_sim(tmp_path: Path) -> Iterator[Simulator]:
    """`quick` on a simulator of its own: this test moves its world a day on (the session's stays)."""
    with simulator("quick", 100.0, tmp_path / "requests.jsonl", extra=["--churn", CHURN]) as sim:
        yield sim


def truth_map(on: int) -> list[dict[str, Any]]:
    """The simulator's truth on day `on` in RANGES (the findable networks), as the classifier reads maps."""
    spans = [(ip_int(c.split("/")[0]), ip_int(c.split("/")[0]) + (1 << (32 - int(c.split("/")[1]))) - 1)
             for c in RANGES]
    scen = scenarios.get("quick", None, on, Churn.parse(CHURN))
    out = []
    for doc in truth_records(scen):
        first, last = ip_int(doc["start_address"]), ip_int(doc["end_address"])
        if any(a <= first and last <= b for a, b in spans):
            out.append(doc | {"_first": first, "_last": last, "source": "rdap"})
    return out


def truth_difference(day: int) -> tuple[Counter[tuple[str, ...]], list[tuple[int, int]]]:
    """What changed from day-1 to `day` in RANGES, by the one classifier over the days' truths,
    less ARIN's changes no published file shows (docs/refresh.md); and the spans of those."""
    hidden = [(c.first, c.last) for c in scenarios.get("quick", None, day, Churn.parse(CHURN)).changes()
              if c.registry == "arin" and c.kind not in FILES_SHOW_AT_ARIN]
    return kinds([c.to_dict() for c in classify(truth_map(day - 1), truth_map(day))], hidden), hidden


def kinds(changes: list[dict[str, Any]], hidden: list[tuple[int, int]]) -> Counter[tuple[str, ...]]:
    """Each change as (kind, registry, range, fields changed), outside the `hidden` spans."""
    out: Counter[tuple[str, ...]] = Counter()
    for c in changes:
        first, last = ip_int(c["start_address"]), ip_int(c["end_address"])
        if not any(a <= last and first <= b for a, b in hidden):
            out[c.get("change") or c["kind"], c["registry"], c["start_address"], c["end_address"],
                *sorted(c.get("fields", {}))] += 1
    return out


def schedule_of(k8s: K8s, namespace: str, crawl: str) -> dict[str, Any]:
    return ((k8s.api.get(*WC, namespace, crawl) or {}).get("status") or {}).get("schedule") or {}


def answers(services: Any, prefix: str, *where: str) -> list[dict[str, Any]]:
    """`whoiscrawl lookup --json` of the first address of each block of the truth in RANGES (both
    days), from a map (`topic:CRAWL`) or a history (`--history topic:CRAWL --at T`): the network
    each falls in and what the one classifier compares of it (`results.diff.FIELDS`; a generation
    kept as changes keeps the rest as of the generation in which the block last changed)."""
    where = where if where[0].startswith("--") else (where[0],)
    addresses = sorted({ip_str(r["_first"]) for r in truth_map(0) + truth_map(1)})
    args = ["lookup", *(["--history", where[1], "--at", where[3]] if where[0] == "--history" else [where[0]]),
            "--json", "--kafka-bootstrap", services.kafka_bootstrap, "--topic-prefix", prefix, *addresses]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return [{k: sorted(v) if isinstance(v, list) else v for k, v in d.items() if k in COMPARED}
            for d in map(json.loads, result.stdout.splitlines())]


COMPARED = ("address", "found", "error", "network", *FIELDS)


@contextlib.contextmanager
def following(bootstrap: str, topic: str) -> Iterator[list[dict[str, Any]]]:
    """Every line published on `topic` (from its start) while the block runs, as a consumer of the
    feed reads them: a real consumer polled in a thread (the topic may be created meanwhile)."""
    seen: list[dict[str, Any]] = []
    stop = threading.Event()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"follow-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "topic.metadata.refresh.interval.ms": 1000})
    consumer.subscribe([topic])

    def run() -> None:
        while not stop.is_set():
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None and msg.value():
                seen.append(json.loads(msg.value() or b"{}"))

    thread = threading.Thread(target=run, name="feed-follower", daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(30)
        consumer.close()


def status_start_of(last: dict[str, Any]) -> str:
    """Generation 1's time on the feed: its start, to the second (`generations.feed_day`)."""
    when = parse_time(last["startTime"])
    assert when is not None
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_scheduled_crawl_starts_its_next_generation_when_its_slot_comes(
        k8s: K8s, crd: dict, shared_pool: str, services: Any, churning_sim: Simulator, namespace: str,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    crawl = f"n{uuid.uuid4().hex[:6]}"
    doc = crawl_doc(crawl, services, churning_sim, shared_pool)
    doc["spec"] |= {"ranges": RANGES, "schedule": "* * * * *", "suspend": True,
                    "history": {"keep": 1},
                    "sources": {"filesBase": churning_sim.files_base, "acceptDumpTerms": "all"}}
    prefix = parse_spec(doc["spec"]).kafka.queue_prefix
    first, second = crawl_id(namespace, crawl), crawl_id(namespace, crawl, 2)
    try:
        with (operator_release(k8s, tmp_path, [namespace], shared_pool, [namespace]) as release,
              following(services.kafka_bootstrap, queue.changes_topic(prefix, first)) as seen):
            k8s.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(doc))
            try:
                until(lambda: condition(k8s, namespace, crawl, "Completed") == ("True", "AllShardsDone"),
                      150, "generation 1 Completed")
                maps = [answers(services, prefix, f"topic:{first}")]  # generation 1's map, as it is
                assert advance(churning_sim) > 0  # the registries' next day, before generation 2 reads it
                k8s.kubectl("patch", "wc", crawl, "-n", namespace, "--type=merge", "-p",
                            '{"spec": {"suspend": false}}')
                began = until(lambda: schedule_of(k8s, namespace, crawl).get("generation") == 2
                              and schedule_of(k8s, namespace, crawl), 90, "generation 2 started")
                # generation 1's map is still there while generation 2 runs
                while_running = RedisCrawlAdmin(services.redis_url, first).progress()
                until(lambda: condition(k8s, namespace, crawl, "Completed") == ("True", "AllShardsDone"),
                      150, "generation 2 Completed")
                maps.append(answers(services, prefix, f"topic:{second}"))  # generation 2's
                until(lambda: schedule_of(k8s, namespace, crawl).get("generations") == [2], 60,
                      "generation 1 pruned once generation 2 completed and its feed was out")
                until(lambda: any(d.get("rebase") and d["kind"] == "generation" for d in seen), 60,
                      "the feed's history begun again at generation 2 (its map whole)")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{k8s.api.get(*WC, namespace, crawl)}\n"
                                     f"{release.kubelet.tail()}") from None
            feed = [d for d in seen if not d.get("rebase")]  # as published before the prune
            rebase = [d for d in seen if d.get("rebase")]
            on_topic = list(queue.iter_changes(services.kafka_bootstrap, prefix, first))
            # generation 1's data gone: the history read off the change feed answers for 2, not 1
            times = [d["time"] for d in feed if d["kind"] == "generation"]
            monkeypatch.setenv("WHOISCRAWL_HISTORY_CACHE", str(tmp_path / "history"))
            as_of = answers(services, prefix, "--history", f"topic:{first}", "--at", times[1])
            pruned_away = CliRunner().invoke(app, [
                "lookup", "--history", f"topic:{first}", "--at", times[0], "--kafka-bootstrap",
                services.kafka_bootstrap, "--topic-prefix", prefix, "193.0.0.1"])
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
            feed_topic = queue.changes_topic(prefix, first)
            until(lambda: feed_topic not in AdminClient({"bootstrap.servers": services.kafka_bootstrap})
                  .list_topics(timeout=10).topics, 30, "the change-feed topic deleted with the crawl")
            refused = forbidden(audit_events(k8s.cluster.audit_log, release.user))
    finally:
        drop_data(services, prefix, first)
        drop_data(services, prefix, second)
        with contextlib.suppress(Exception):
            queue.delete_topics(services.kafka_bootstrap, prefix, first, changes=True)

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
    # Generation 2's change feed against generation 1: on the crawl's change-feed topic, once, whole
    # (its marker last), and what the truth says changed between the two days in these ranges.
    print(f"feed {feed}")
    base = [d for d in feed if d["generation"] == 1]  # generation 1's map whole: the history's first
    *lines, marker = feed[len(base):]
    assert base[-1]["kind"] == "generation" and base[-1]["base"] and base[-1]["changes"] == len(base) - 1
    assert {d["kind"] for d in base[:-1]} == {"added"} and all("record" in d for d in base[:-1])
    assert [d["kind"] for d in feed].count("generation") == 2 and marker["kind"] == "generation"
    assert marker["generation"] == 2 and marker["changes"] == len(lines) > 0
    assert [d["n"] for d in lines] == list(range(len(lines))) and {d["generation"] for d in lines} == {2}
    truth, hidden = truth_difference(1)
    assert kinds(lines, hidden) == truth, (kinds(lines, hidden), truth)
    counted = Counter(d["kind"] for d in lines)
    published = status["schedule"]["changes"]
    assert published["generation"] == 2 and published["topic"] == feed_topic
    assert published["base"] == 2  # generation 1 pruned: the feed's history begins at 2
    assert published["counts"] == marker["counts"] == {k: counted[k] for k in KINDS}
    assert "ChangesPublished" in reasons
    # The prune's rebase: generation 2's map whole (every block added with its record, the marker
    # `base` and `rebase`), and the topic holds only it now: the records before were deleted.
    *again, closing = rebase
    assert {d["generation"] for d in rebase} == {2} and {d["kind"] for d in again} == {"added"}
    assert closing["kind"] == "generation" and closing["base"] and closing["changes"] == len(again) > 0
    assert again[0]["n"] == 0 and again[0]["segment"] == len(rebase) and all("record" in d for d in again)
    assert on_topic == rebase and "HistoryPruned" in reasons
    # After pruning, `lookup --history topic:CRAWL --at T` answers as generation 2's map did (its
    # time its slot); generation 1's time (its start) is before the first kept generation.
    assert times == [status_start_of(last), began["lastScheduleTime"]], times
    assert as_of == maps[1] and maps[0] != maps[1]
    assert pruned_away.exit_code == 2, pruned_away.output
    assert f"before the first kept generation, {times[1]}" in " ".join(pruned_away.output.split())
