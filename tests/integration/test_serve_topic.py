"""Serving a crawl's results topic: lookup reads it like a file, and the server's reloader follows it."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from whoiscrawl import queue
from whoiscrawl.cli import app
from whoiscrawl.records import NetworkRecord
from whoiscrawl.serve.server import topic_reloader

PARENT = NetworkRecord("ripencc", "NET-193-0", "193.0.0.0", "193.0.255.255", ["193.0.0.0/16"],
                       registrant="Parent LIR", country="NL")
CHILD = NetworkRecord("ripencc", "NET-193-0-1", "193.0.1.0", "193.0.1.255", ["193.0.1.0/24"],
                      registrant="Old Holder", country="NL")
CHANGED = NetworkRecord("ripencc", "NET-193-0-1", "193.0.1.0", "193.0.1.255", ["193.0.1.0/24"],
                        registrant="New Holder", country="NL")


async def test_lookup_and_the_servers_reloader_follow_a_results_topic(services, unique_name):
    queue.ensure_topics(services.kafka_bootstrap, "t.", unique_name, partitions=3)
    sink = queue.KafkaSink(services.kafka_bootstrap, "t.", unique_name)
    for record in (PARENT, CHILD):
        await sink.emit(record)
    kafka = ["--kafka-bootstrap", services.kafka_bootstrap, "--topic-prefix", "t."]
    result = CliRunner().invoke(app, ["lookup", f"topic:{unique_name}", "193.0.1.7", "193.0.2.1", "--json",
                                      *kafka])
    assert result.exit_code == 0, result.output
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(d["handle"], d["holder"]) for d in docs] == [("NET-193-0-1", "Old Holder"),
                                                          ("NET-193-0", "Parent LIR")]

    reload = topic_reloader(f"topic:{unique_name}", services.kafka_bootstrap, "t.")
    first = reload()
    assert first is not None and len(first) == 2
    assert reload() is None  # nothing new on the topic
    await sink.emit(CHANGED)
    assert sink.close() == 0
    again = reload()
    assert again is not None
    net = int(again.lookup(np.array([0xC1000107], np.uint32))[0])
    assert again.value(net, "holder") == "New Holder"
