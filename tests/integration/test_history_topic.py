"""`history add topic:CRAWL` keeps a fleet crawl's results topic as a dated generation, like a file."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner
from whoiscrawl.operator.backend import BackendError, LiveBackend, Target

from whoiscrawl import queue
from whoiscrawl.cli import app
from whoiscrawl.history import feed
from whoiscrawl.history.store import HistoryError
from whoiscrawl.records import NetworkRecord


def _net(cidr: str, first: str, last: str, **fields: str) -> NetworkRecord:
    return NetworkRecord("ripencc", f"{first} - {last}", first, last, [cidr], country="NL", **fields)


async def test_generations_of_a_results_topic(services, unique_name, tmp_path):
    queue.ensure_topics(services.kafka_bootstrap, "t.", unique_name, partitions=3)
    sink = queue.KafkaSink(services.kafka_bootstrap, "t.", unique_name)
    for record in (_net("193.0.0.0/16", "193.0.0.0", "193.0.255.255", registrant="Parent LIR"),
                   _net("193.0.1.0/24", "193.0.1.0", "193.0.1.255", registrant="Old Holder")):
        await sink.emit(record)
    assert sink.close() == 0
    kafka = ["--kafka-bootstrap", services.kafka_bootstrap, "--topic-prefix", "t."]
    store = str(tmp_path / "store")
    runner = CliRunner()
    first = runner.invoke(app, ["history", "add", f"topic:{unique_name}", "--date", "2026-12-01",
                                "--store", store, *kafka])
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["blocks"] == 2

    sink = queue.KafkaSink(services.kafka_bootstrap, "t.", unique_name)  # the next day's refresh
    await sink.emit(_net("193.0.1.0/24", "193.0.1.0", "193.0.1.255", registrant="New Holder"))
    assert sink.close() == 0
    second = runner.invoke(app, ["history", "add", f"topic:{unique_name}", "--date", "2026-12-02",
                                 "--store", store, *kafka])
    assert second.exit_code == 0, second.output
    assert json.loads(second.output)["counts"] == {"added": 0, "removed": 0, "changed": 0, "transferred": 1}
    feed = runner.invoke(app, ["changes", "--since", "2026-12-01", "--history", store])
    (line,) = map(json.loads, feed.output.splitlines())
    assert (line["kind"], line["from"]["holder"], line["to"]["holder"]) == ("transferred", "Old Holder",
                                                                             "New Holder")


def _add(runner: CliRunner, store: str, day: str, holder: str, tmp_path) -> None:
    path = tmp_path / f"{day}.jsonl"
    record = _net("193.0.1.0/24", "193.0.1.0", "193.0.1.255", registrant=holder)
    path.write_text(record.to_json().decode() + "\n")
    result = runner.invoke(app, ["history", "add", str(path), "--date", day, "--store", store])
    assert result.exit_code == 0, result.output


def test_the_feed_on_a_topic_once_in_order_a_generation_cut_short_again_whole(services, unique_name,
                                                                             tmp_path):
    runner, store = CliRunner(), str(tmp_path / "store")
    for day, holder in (("2026-12-01", "A"), ("2026-12-02", "B"), ("2026-12-03", "C")):
        _add(runner, store, day, holder, tmp_path)
    kafka = ["--kafka-bootstrap", services.kafka_bootstrap, "--topic-prefix", "t."]
    publish = ["changes", "--since", "2026-12-01", "--history", store, "--publish", unique_name, *kafka]

    def on_topic() -> list[tuple[str, str, str | None]]:
        return [(d["date"], d["kind"], d.get("to", {}).get("holder"))
                for d in queue.iter_changes(services.kafka_bootstrap, "t.", unique_name)]

    first = runner.invoke(app, publish)
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["published"] == 4  # two changes, two markers
    assert json.loads(runner.invoke(app, publish).output)["published"] == 0  # all on the topic already
    _add(runner, store, "2026-12-04", "D", tmp_path)
    topic = queue.changes_topic("t.", unique_name)
    queue.publish(services.kafka_bootstrap, topic, [(b"k", json.dumps(  # a publisher died mid-generation
        {"date": "2026-12-04", "kind": "transferred", "to": {"holder": "D"}}).encode())])
    again = json.loads(runner.invoke(app, publish).output)
    assert (again["generations"], again["published"]) == (["2026-12-04"], 2)
    ns = [d.get("n") for d in queue.iter_changes(services.kafka_bootstrap, "t.", unique_name)]
    assert ns == [0, None, 0, None, None, 0, None]  # the generation published again begins at 0
    assert on_topic() == [("2026-12-02", "transferred", "B"), ("2026-12-02", "generation", None),
                          ("2026-12-03", "transferred", "C"), ("2026-12-03", "generation", None),
                          ("2026-12-04", "transferred", "D"),  # the one cut short ...
                          ("2026-12-04", "transferred", "D"), ("2026-12-04", "generation", None)]  # ... whole


async def _generation(bootstrap: str, crawl: str, *records: NetworkRecord) -> None:
    queue.ensure_topics(bootstrap, "t.", crawl, partitions=3)
    sink = queue.KafkaSink(bootstrap, "t.", crawl)
    for record in records:
        await sink.emit(record)
    assert sink.close() == 0


async def test_a_fleet_generations_feed_once_whole_and_again_whole_when_cut_short(services, unique_name):
    """`publish_generation` (the operator's): generation 2's map against generation 1's, each a
    crawl's results topic, on the crawl's change-feed topic; not again once there; cut short, again."""
    bootstrap, g1, g2 = services.kafka_bootstrap, unique_name, f"{unique_name}.g2"
    parent = _net("193.0.0.0/16", "193.0.0.0", "193.0.255.255", registrant="Parent LIR")
    held = ("193.0.1.0/24", "193.0.1.0", "193.0.1.255")
    await _generation(bootstrap, g1, parent, _net(*held, registrant="Old"))
    await _generation(bootstrap, g2, parent, _net(*held, registrant="New"),
                      _net("193.0.2.0/24", "193.0.2.0", "193.0.2.255", registrant="Newcomer"))
    kafka = feed.Kafka(bootstrap, unique_name, "t.")
    first = feed.publish_generation(kafka, 2, "2026-12-07", g1, g2)
    counts = {"added": 1, "removed": 0, "changed": 0, "transferred": 1}
    assert (first["published"], first["counts"], first["already_on_topic"]) == (3, counts, False)
    again = feed.publish_generation(kafka, 2, "2026-12-07", g1, g2)  # an operator restarted before its status
    assert (again["published"], again["counts"], again["already_on_topic"]) == (0, counts, True)
    topic = queue.changes_topic("t.", unique_name)
    queue.publish(bootstrap, topic, [(b"k", json.dumps(  # generation 3's publisher died mid-way
        {"date": "2026-12-08", "kind": "added", "generation": 3, "n": 0}).encode())])
    third = feed.publish_generation(kafka, 3, "2026-12-08", g2, g2)  # unchanged: its marker alone
    assert (third["published"], third["already_on_topic"]) == (1, False)
    on_topic = [(d["generation"], d["kind"], d.get("n"))
                for d in queue.iter_changes(bootstrap, "t.", unique_name)]
    assert on_topic == [(2, "transferred", 0), (2, "added", 1), (2, "generation", None),
                        (3, "added", 0), (3, "generation", None)]
    with pytest.raises(HistoryError, match="holds no record"):  # the previous generation's data gone
        feed.publish_generation(kafka, 4, "2026-12-09", f"{unique_name}.gone", g2)


async def test_the_operators_backend_publishes_a_feed_off_the_pass(services, unique_name):
    """A pass that starts a feed it cannot wait for gets None, and a later one its answer (or its
    error), so a large map's never holds a pass; the publish itself is `publish_generation`'s."""
    bootstrap, g1, g2 = services.kafka_bootstrap, unique_name, f"{unique_name}.g2"
    await _generation(bootstrap, g1, _net("193.0.1.0/24", "193.0.1.0", "193.0.1.255", registrant="Old"))
    await _generation(bootstrap, g2, _net("193.0.1.0/24", "193.0.1.0", "193.0.1.255", registrant="New"))
    backend = LiveBackend(feed_wait_seconds=0)
    before, after = (Target(crawl=c, bootstrap=bootstrap, prefix="t.", redis_url="") for c in (g1, g2))
    assert backend.publish_changes(before, after, unique_name, 2, "2026-12-07") is None  # started
    backend.feed_wait_seconds = 30  # the next pass finds the same job (waiting on it, here) ...
    done = backend.publish_changes(before, after, unique_name, 2, "2026-12-07")
    assert done is not None and (done["published"], done["already_on_topic"]) == (2, False)  # ... once
    assert done["counts"]["transferred"] == 1
    gone = Target(crawl=f"{unique_name}.gone", bootstrap=bootstrap, prefix="t.", redis_url="")
    with pytest.raises(BackendError, match="holds no record"):  # its error, at the call that finds it done
        backend.publish_changes(gone, after, unique_name, 3, "2026-12-08")


async def test_a_fleets_history_is_read_off_its_change_feed_after_its_generations_are_gone(
        services, unique_name, tmp_path, monkeypatch):
    """The operator's feeds (generation 1 whole, then each one's changes with their records) are a
    history: once every generation's results topic is gone (pruned), `lookup --history
    topic:CRAWL --at TIME` still answers as each generation's map did, and a generation cut short
    and published again counts once."""
    bootstrap, crawls = services.kafka_bootstrap, [unique_name, f"{unique_name}.g2", f"{unique_name}.g3"]
    parent = _net("193.0.0.0/16", "193.0.0.0", "193.0.255.255", registrant="Parent LIR")
    held = ("193.0.1.0/24", "193.0.1.0", "193.0.1.255")
    newcomer = _net("193.0.2.0/24", "193.0.2.0", "193.0.2.255", registrant="Nu")
    await _generation(bootstrap, crawls[0], parent, _net(*held, registrant="Old"))
    await _generation(bootstrap, crawls[1], parent, _net(*held, registrant="New"), newcomer)
    await _generation(bootstrap, crawls[2], parent, _net(*held, registrant="New"))
    kafka = feed.Kafka(bootstrap, unique_name, "t.")
    times = ["2026-12-07T10:00:00Z", "2026-12-07T10:01:00Z", "2026-12-07T10:02:00Z"]
    assert feed.publish_generation(kafka, 1, times[0], None, crawls[0])["base"] is True
    feed.publish_generation(kafka, 2, times[1], crawls[0], crawls[1])
    queue.publish(bootstrap, queue.changes_topic("t.", unique_name), [(b"k", json.dumps(  # cut short
        {"date": "2026-12-07", "kind": "removed", "generation": 3, "n": 0}).encode())])
    feed.publish_generation(kafka, 3, times[2], crawls[1], crawls[2])
    for crawl in crawls:  # every generation pruned: its results topic gone
        queue.delete_topics(bootstrap, "t.", crawl)
    monkeypatch.setenv("WHOISCRAWL_HISTORY_CACHE", str(tmp_path / "cache"))
    runner = CliRunner()
    kafka_args = ["--kafka-bootstrap", bootstrap, "--topic-prefix", "t.", "--history", f"topic:{unique_name}"]

    def holders(at: str) -> list[str | None]:
        result = runner.invoke(app, ["lookup", *kafka_args, "--at", at, "--json", "193.0.1.5", "193.0.2.5"])
        assert result.exit_code == 0, result.output
        return [d.get("holder") for d in map(json.loads, result.stdout.splitlines())]

    assert holders("2026-12-07T10:00:30Z") == ["Old", "Parent LIR"]  # generation 1's map
    assert holders(times[1]) == ["New", "Nu"]  # generation 2's
    assert holders("2026-12-07") == ["New", "Parent LIR"]  # the end of the day: generation 3's
    early = runner.invoke(app, ["lookup", *kafka_args, "--at", "2026-12-06", "193.0.1.5"])
    assert early.exit_code == 2 and "before the first kept generation" in early.output
    changes = runner.invoke(app, ["changes", *kafka_args, "--since", times[0]])
    assert [(d["date"], d["kind"]) for d in map(json.loads, changes.stdout.splitlines())] == [
        (times[1], "transferred"), (times[1], "added"), (times[2], "removed")]  # hierarchy order
    cached = next((tmp_path / "cache").glob("*/*"))  # the store the topic was read into
    listed = runner.invoke(app, ["history", "list", "--json", "--store", str(cached)])
    assert [(d["date"], d["kind"], d["blocks"]) for d in map(json.loads, listed.output.splitlines())] == [
        (times[0], "full", 2), (times[1], "changes", 3), (times[2], "changes", 2)]


async def test_the_operators_backend_keeps_the_feeds_history_to_a_generation(services, unique_name, tmp_path):
    """`LiveBackend.keep_history` (off the pass, as a feed): the topic's history begins at the
    generation asked, its map whole, the records before deleted; asked again, nothing more."""
    bootstrap, g1, g2 = services.kafka_bootstrap, unique_name, f"{unique_name}.g2"
    await _generation(bootstrap, g1, _net("193.0.1.0/24", "193.0.1.0", "193.0.1.255", registrant="Old"))
    await _generation(bootstrap, g2, _net("193.0.1.0/24", "193.0.1.0", "193.0.1.255", registrant="New"),
                      _net("193.0.2.0/24", "193.0.2.0", "193.0.2.255", registrant="Nu"))
    kafka = feed.Kafka(bootstrap, unique_name, "t.")
    feed.publish_generation(kafka, 1, "2026-12-07T10:00:00Z", None, g1)
    feed.publish_generation(kafka, 2, "2026-12-07T10:01:00Z", g1, g2)
    backend = LiveBackend(feed_wait_seconds=30)
    backend.history_cache = tmp_path / "operator"
    t = Target(crawl=g1, bootstrap=bootstrap, prefix="t.", redis_url="")
    done = backend.keep_history(t, unique_name, 2)
    assert done is not None and (done["generation"], done["date"]) == (2, "2026-12-07T10:01:00Z")
    on_topic = list(queue.iter_changes(bootstrap, "t.", unique_name))
    assert [(d["generation"], d["kind"], d.get("base"), d.get("rebase")) for d in on_topic] == [
        (2, "added", True, True), (2, "added", True, True), (2, "generation", True, True)]
    assert on_topic[0]["n"] == 0 and on_topic[0]["segment"] == 3
    assert queue.changes_bounds(bootstrap, "t.", unique_name)[0] == done["start"] > 0
    again = backend.keep_history(t, unique_name, 2)
    assert again is not None and again["published"] == 0
    assert feed.publish_generation(kafka, 2, "2026-12-07T10:01:00Z", g1, g2)["already_on_topic"]
