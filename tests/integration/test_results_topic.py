"""summary and export read a crawl's compacted results topic like a file: deduplicated, latest wins."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
from typer.testing import CliRunner

from whoiscrawl import queue
from whoiscrawl.cli import app
from whoiscrawl.records import NetworkRecord

OLD = NetworkRecord("ripencc", "193.0.1.0 - 193.0.1.255", "193.0.1.0", "193.0.1.255", ["193.0.1.0/24"],
                    registrant="Old Holder", country="NL")
NEW = NetworkRecord("ripencc", "193.0.1.0 - 193.0.1.255", "193.0.1.0", "193.0.1.255", ["193.0.1.0/24"],
                    registrant="New Holder", country="NL")
PARENT = NetworkRecord("ripencc", "193.0.0.0 - 193.0.255.255", "193.0.0.0", "193.0.255.255",
                       ["193.0.0.0/16"], type="ALLOCATED PA", registrant="Parent LIR", country="NL")


async def test_summary_and_export_of_a_results_topic(services, unique_name, tmp_path):
    queue.ensure_topics(services.kafka_bootstrap, "t.", unique_name, partitions=3)
    sink = queue.KafkaSink(services.kafka_bootstrap, "t.", unique_name)
    for record in (OLD, PARENT, NEW):  # one key twice: compaction has not run yet
        await sink.emit(record)
    assert sink.close() == 0
    kafka = ["--kafka-bootstrap", services.kafka_bootstrap, "--topic-prefix", "t."]
    runner = CliRunner()
    result = runner.invoke(app, ["summary", f"topic:{unique_name}", "--scope", "193.0.0.0/16", "--json",
                                 *kafka])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert (doc["records"], doc["blocks"], doc["coverage"]) == (3, 2, 1.0)
    assert {h["holder"] for h in doc["top_holders"]} == {"Parent LIR", "New Holder"}

    out = tmp_path / "out.parquet"
    result = runner.invoke(app, ["export", f"topic:{unique_name}", "--out", str(out), *kafka])
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out).to_pylist()
    assert sorted(r["registrant"] for r in rows) == ["New Holder", "Parent LIR"]

    result = runner.invoke(app, ["summary", f"topic:{unique_name}"], env={"WHOISCRAWL_KAFKA_BOOTSTRAP": None})
    assert result.exit_code == 2 and "--kafka-bootstrap" in result.output
