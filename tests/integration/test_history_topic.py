"""`history add topic:CRAWL` keeps a fleet crawl's results topic as a dated generation, like a file."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from whoiscrawl import queue
from whoiscrawl.cli import app
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
