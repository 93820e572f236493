"""Result sets: dedup by block (the latest record wins), addresses counted once, summary figures."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from whoiscrawl.cli import app
from whoiscrawl.records import NetworkRecord
from whoiscrawl.results.source import ResultSet
from whoiscrawl.results.summary import scope_of, summarize


def record(cidr: str, registry: str = "ripencc", **fields: object) -> NetworkRecord:
    from netaddr import IPNetwork

    net = IPNetwork(cidr)
    base = {"handle": f"{registry}-{cidr}", "country": "NL", "registrant": f"holder of {cidr}"}
    return NetworkRecord(registry=registry, start_address=str(net.network), end_address=str(net.broadcast),
                         cidrs=[cidr], **{**base, **fields})  # type: ignore[arg-type]


def write(path: Path, records: list[NetworkRecord], junk: bool = False) -> Path:
    lines = [r.to_json().decode() for r in records]
    if junk:
        lines[1:1] = ["not json", "", '{"registry": "arin"}']
    path.write_text("\n".join(lines) + "\n")
    return path


def sample(tmp_path: Path) -> Path:
    return write(tmp_path / "r.jsonl", [
        record("193.0.0.0/16", type="ALLOCATED PA", registrant="Parent LIR"),
        record("193.0.1.0/24", registrant="Old Holder"),
        record("193.0.4.0/22", country="DE", registrant="Big Customer"),
        record("193.0.1.0/24", registrant="New Holder"),  # later: wins over Old Holder
        record("12.0.0.0/8", registry="arin", country="US", registrant="AT&T", source="dump", serial="7"),
    ], junk=True)


def test_dedup_keeps_the_latest_record_of_each_block_in_hierarchy_order(tmp_path: Path):
    rs = ResultSet(sample(tmp_path), seekable=True)
    assert (rs.records, rs.blocks, rs.bad_records) == (5, 4, 2)
    nested = [(d["start_address"], d["end_address"], d["registrant"]) for d in rs.nested()]
    assert nested == [
        ("12.0.0.0", "12.255.255.255", "AT&T"),
        ("193.0.0.0", "193.0.255.255", "Parent LIR"),
        ("193.0.1.0", "193.0.1.255", "New Holder"),
        ("193.0.4.0", "193.0.7.255", "Big Customer"),
    ]
    assert [d["registrant"] for d in rs.latest()] == ["Parent LIR", "Big Customer", "New Holder", "AT&T"]


def test_each_address_counts_once_for_its_most_specific_block(tmp_path: Path):
    rs = ResultSet(sample(tmp_path), seekable=True)
    doc = summarize(rs, scope_of(["193.0.0.0/16", "12.0.0.0/9"])).to_dict()
    assert doc["scope_addresses"] == 65536 + (1 << 23)
    assert doc["addresses_covered"] == doc["scope_addresses"]  # the /8 reaches past the scope: clipped
    assert doc["by_registry"] == {"arin": {"blocks": 1, "addresses": 1 << 23},
                                  "ripencc": {"blocks": 3, "addresses": 65536}}
    holders = {h["holder"]: h["addresses"] for h in doc["top_holders"]}
    assert holders == {"AT&T": 1 << 23, "Parent LIR": 65536 - 256 - 1024, "Big Customer": 1024,
                       "New Holder": 256}
    assert doc["by_country"] == {"US": 1 << 23, "NL": 65536 - 1024, "DE": 1024}
    assert doc["by_source"] == {"dump": {"blocks": 1, "addresses": 1 << 23},
                                "rdap": {"blocks": 3, "addresses": 65536}}


def test_shares_default_to_the_allocatable_space(tmp_path: Path):
    rs = ResultSet(sample(tmp_path), seekable=True)
    doc = summarize(rs, scope_of(None)).to_dict()
    # all IPv4 less special-purpose space and the /8s IANA keeps (space.crawlable)
    assert 3_500_000_000 < doc["scope_addresses"] < 3_800_000_000
    assert doc["addresses_covered"] == (1 << 24) + 65536


def test_summary_command_table_and_json(tmp_path: Path):
    path = sample(tmp_path)
    runner = CliRunner()
    table = runner.invoke(app, ["summary", str(path), "--scope", "193.0.0.0/16"])
    assert table.exit_code == 0, table.output
    assert "unique blocks" in table.output and "Largest holders" in table.output
    assert "New Holder" in table.output and "Old Holder" not in table.output
    machine = runner.invoke(app, ["summary", str(path), "--scope", "193.0.0.0/16", "--json"])
    doc = json.loads(machine.output)
    assert doc["coverage"] == 1.0 and doc["blocks"] == 4
    missing = runner.invoke(app, ["summary", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2 and "not a results file" in missing.output
