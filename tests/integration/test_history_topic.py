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
