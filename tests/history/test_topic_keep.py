"""A fleet's history on its change-feed topic (real Kafka): kept to the crawl's retention (a new base,
the records before it deleted, at most 1.5x one generation), read past what a cache holds only, and
followed by the mirror with no restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from history_support import Days, facts_of
from serve_support import get
from typer.testing import CliRunner

from whoiscrawl import queue
from whoiscrawl.cli import app
from whoiscrawl.history import topic
from whoiscrawl.history.feed import Kafka
from whoiscrawl.history.store import Store, add
from whoiscrawl.results.source import ResultSet


def _fleet_store(days: Days, path: Path, generations: int) -> Store:
    """`generations` days of a 2,000-block map (1% changed a day) in a store, numbered as a fleet's."""
    for n in range(generations):
        if n:
            days.change()
        add(path, days.write_day(), days.dates[-1])
    store = Store.open(path)
    for n, gen in enumerate(store.generations, 1):
        gen.generation = n
    store.save()
    return store


def _publish(store: Store, kafka: Kafka, upto: int | None = None, since: int = 1) -> None:
    """Generations `since`..`upto` of `store` on the crawl's change-feed topic as the operator puts
    them (generation 1's map whole, then each one's change set)."""
    name = queue.ensure_changes_topic(kafka.bootstrap, kafka.prefix, kafka.crawl)
    for gen in store.generations[since - 1:upto]:
        queue.publish(kafka.bootstrap, name, topic.generation_messages(store, gen, {}))


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many lines each read of a change-feed topic (`queue.iter_changes_from`) took."""
    reads: list[int] = []
    real = queue.iter_changes_from

    def counting(*args: Any, **kwargs: Any) -> Iterator[tuple[int, dict[str, Any]]]:
        reads.append(0)
        for line in real(*args, **kwargs):
            reads[-1] += 1
            yield line

    monkeypatch.setattr(queue, "iter_changes_from", counting)
    return reads


def test_a_cache_reads_only_what_is_past_the_offset_it_holds(services, unique_name, tmp_path, counted):
    kafka = Kafka(services.kafka_bootstrap, unique_name, "t.")
    days = Days(tmp_path, blocks=400)
    store = _fleet_store(days, tmp_path / "local", 4)
    _publish(store, kafka, upto=3)
    cache = tmp_path / "cache"
    assert [g.generation for g in topic.sync(cache, kafka)] == [1, 2, 3]
    counted.clear()
    assert topic.sync(cache, kafka) == []  # nothing new: nothing read
    assert sum(counted) == 0
    _publish(store, kafka, since=4)
    assert [g.generation for g in topic.sync(cache, kafka)] == [4]
    fourth = sum(store.generations[3].counts.values()) + 1  # its changes and its marker
    assert sum(counted) == 2 * fourth  # found, then read again to keep: never the first map
    held = Store.open(cache)
    assert facts_of(held.records(held.generations[-1])) == facts_of(ResultSet(days.maps[3]).latest())


def test_the_history_is_kept_to_the_crawls_retention_on_the_topic(services, unique_name, tmp_path,
                                                                  monkeypatch, counted):
    """14 generations on the topic, the crawl keeping 7: the topic's history begins at the oldest
    kept (its map whole), the records before it gone; a date before it is refused; at most 1.5x
    one generation's bytes on the topic; a reader up to date passes over the new base unread."""
    bootstrap = services.kafka_bootstrap
    days = Days(tmp_path)
    store = _fleet_store(days, tmp_path / "local", 14)
    kafka, one = Kafka(bootstrap, unique_name, "t."), Kafka(bootstrap, f"{unique_name}.one", "t.")
    _publish(store, one, upto=1)  # generation 1 alone: what one generation takes on a topic
    _publish(store, kafka)
    name = queue.changes_topic("t.", unique_name)
    one_bytes = queue.topic_bytes(bootstrap, queue.changes_topic("t.", one.crawl))[1]
    all_bytes = queue.topic_bytes(bootstrap, name)[1]
    reader = tmp_path / "reader"
    assert len(topic.sync(reader, kafka)) == 14  # a reader up to date before the prune

    done = topic.rebase(tmp_path / "operator", kafka, 8)
    assert (done["generation"], done["date"]) == (8, "2026-12-08") and done["published"] > 0
    low, _ = queue.changes_bounds(bootstrap, "t.", unique_name)
    assert done["start"] == low > 0
    first = queue.change_at(bootstrap, "t.", unique_name, offset=low)
    assert first is not None
    assert (first["generation"], first["n"], first["base"], first["rebase"]) == (8, 0, True, True)
    kept_bytes = queue.topic_bytes(bootstrap, name)[1]
    print(json.dumps({"generations_on_topic": 14, "bytes_one": one_bytes, "bytes_fourteen": all_bytes,
                      "kept": 7, "bytes_kept": kept_bytes, "ratio_kept": round(kept_bytes / one_bytes, 3),
                      "ratio_before": round(all_bytes / one_bytes, 3)}))
    assert kept_bytes <= 1.5 * one_bytes
    assert topic.rebase(tmp_path / "operator", kafka, 8)["published"] == 0  # once

    counted.clear()
    assert topic.sync(reader, kafka) == []  # the reader's cache pruned as the topic was ...
    assert sum(counted) == 0  # ... without reading the new base's map
    assert len(topic.sync(tmp_path / "fresh", kafka)) == 7  # a reader that begins after the prune
    for path in (reader, tmp_path / "fresh"):
        held = Store.open(path)
        assert [g.generation for g in held.generations] == list(range(8, 15))
        assert held.generations[0].kind == "full"
        for gen, map_file in zip(held.generations, days.maps[7:], strict=True):
            assert facts_of(held.records(gen)) == facts_of(ResultSet(map_file).latest()), (path, gen.date)

    monkeypatch.setenv("WHOISCRAWL_HISTORY_CACHE", str(tmp_path / "cli"))
    args = ["--kafka-bootstrap", bootstrap, "--topic-prefix", "t.", "--history", f"topic:{unique_name}"]
    early = CliRunner().invoke(app, ["lookup", *args, "--at", "2026-12-07", "90.0.0.1"])
    assert early.exit_code == 2
    assert "before the first kept generation, 2026-12-08" in " ".join(early.output.split())


async def test_the_mirror_follows_the_history_on_its_topic(services, unique_name, tmp_path):
    """`serve --history topic:CRAWL`: a generation published while it runs is answered (newest and
    ?at=) with no restart."""
    kafka = Kafka(services.kafka_bootstrap, unique_name, "t.")
    days = Days(tmp_path, blocks=400)
    store = _fleet_store(days, tmp_path / "local", 3)
    _publish(store, kafka, upto=2)
    env = {**os.environ, "WHOISCRAWL_HISTORY_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "whoiscrawl", "serve", "--history", f"topic:{unique_name}",
                             "--kafka-bootstrap", kafka.bootstrap, "--topic-prefix", "t.", "--port", "0",
                             "--reload-every", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env)
    try:
        assert proc.stdout is not None
        url = json.loads(proc.stdout.readline())["url"]
        status, doc = await get(f"{url}ip/90.0.0.1?at=2026-12-03")
        assert status == 200 and _as_of(doc) == "2026-12-02"  # the newest held: generation 2
        _publish(store, kafka, since=3)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, doc = await get(f"{url}ip/90.0.0.1?at=2026-12-03")
            if _as_of(doc) == "2026-12-03":
                break
            time.sleep(0.2)
        assert status == 200 and _as_of(doc) == "2026-12-03"  # generation 3, no restart
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _as_of(doc: dict[str, Any]) -> str | None:
    """The generation an answer as of a date came from (its notice `As of`)."""
    for notice in doc.get("notices", []):
        if notice["title"] == "As of":
            return str(notice["description"][0]).split("map of ")[1].split(",")[0]
    return None
