"""`whoiscrawl plan --estimate` and projected_real_hours: requests over the registries' real limits."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from whoiscrawl.cli import app
from whoiscrawl.ipv4 import ip_int
from whoiscrawl.rates import projected_real_hours
from whoiscrawl.records import NetworkRecord
from whoiscrawl.sources import dumps, seed
from whoiscrawl.space import Scope

PUBLISHED = Path(__file__).parent.parent / "data" / "published"


def test_real_hours_use_the_published_limits_not_the_simulators():
    doc = projected_real_hours({"lacnic": 6000, "ripencc": 36000}, egresses=1)
    # LACNIC: 10 a minute -> 6,000 requests are 10 hours; RIPE NCC: 10 a second -> 1 hour
    assert doc["by_registry"]["lacnic"]["projected_real_hours"] == 10.0
    assert doc["by_registry"]["ripencc"]["projected_real_hours"] == 1.0
    assert (doc["slowest_registry"], doc["projected_real_hours"]) == ("lacnic", 10.0)
    halved = projected_real_hours({"lacnic": 6000}, egresses=2)
    assert halved["projected_real_hours"] == 5.0
    # 144,000 requests at 600 an hour are 240 hours: ten addresses bring them under a day
    assert projected_real_hours({"lacnic": 144_000}, deadline_hours=24)["egress_addresses_for_24h"] == 10


def _estimate(*args: str) -> dict:
    result = CliRunner().invoke(app, ["plan", *args, "--estimate", "--json", "--files-base", str(PUBLISHED)])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def test_plan_estimate_live_walks_the_grid_and_a_dump_leaves_only_the_freshness_check():
    live = _estimate("200.160.0.0/19", "--sources", "live")
    assert live["by_registry"]["lacnic"]["requests"] == 32  # a /19 is 32 /24 cells: LACNIC lists nothing
    assert live["by_registry"]["lacnic"]["projected_real_hours"] == round(32 / (10 / 60) / 3600, 2)
    files = _estimate("200.160.0.0/19", "--verify", "1", "--no-fill-redacted")
    lacnic = files["by_registry"]["lacnic"]
    assert (lacnic["from_dump"], lacnic["delegations"], lacnic["requests"]) == (1, 1, 1)


def test_plan_estimate_counts_the_fills_lookups_from_the_dump():
    """LACNIC's dump leaves abuse addresses out: the fill asks each contact once, and a network
    naming none itself. The bundled dump, in 200.160.0.0/19: 200.160/20 names NIB (one entity
    lookup), 200.160.2.0/23 names no contact (asked itself); the freshness sample adds one."""
    lacnic = _estimate("200.160.0.0/19", "--verify", "1")["by_registry"]["lacnic"]
    assert (lacnic["fill_lookups"], lacnic["requests"]) == (2, 1 + 2)
    assert lacnic["projected_real_hours"] == round(3 / (10 / 60) / 3600, 2)
    ripe = _estimate("193.0.0.0/21", "--verify", "1")["by_registry"]["ripencc"]
    assert ripe["fill_lookups"] == 0  # its dump has its roles' mailboxes: nothing to fill


def _dumped(first: str, last: str, handle: str | None, **fields: Any) -> NetworkRecord:
    record = NetworkRecord("lacnic", first, first, last, [first], registrant="Holder", country="BR",
                           source="dump", raw={dumps.UNRESOLVED: [handle]} if handle else None)
    return dataclasses.replace(record, **fields)


def test_the_fill_is_counted_one_lookup_per_contact_not_per_network():
    records = [_dumped("200.0.0.0", "200.0.0.255", "ABC1"), _dumped("200.0.1.0", "200.0.1.255", "abc1"),
               _dumped("200.0.2.0", "200.0.2.255", "XYZ9"),
               _dumped("200.0.3.0", "200.0.3.255", None),  # names no contact: asked itself
               _dumped("200.0.4.0", "200.0.4.255", None, abuse_emails=["a@b.example"]),  # nothing lacking
               _dumped("201.0.0.0", "201.0.0.255", "OUT7")]  # outside the scope
    assert seed.fill_count(records, Scope.of([(ip_int("200.0.0.0"), ip_int("200.0.255.255"))])) == 3


def test_plan_estimate_skips_free_space_the_statistics_list():
    # 193.0.11.0/24 is reserved and 193.0.12.0/22 available in the RIPE NCC's statistics
    live = _estimate("193.0.8.0/21", "--sources", "live")
    stats = _estimate("193.0.8.0/21", "--sources", "stats,live")
    assert live["by_registry"]["ripencc"]["grid_cells"] == 8
    assert stats["by_registry"]["ripencc"]["grid_cells"] == 8 - 1 - 4


def test_publishing_still_needs_its_services():
    result = CliRunner().invoke(app, ["plan", "10.0.0.0/8"])
    assert result.exit_code == 2 and "needs --crawl, --kafka-bootstrap and --redis-url" in result.output


@pytest.mark.parametrize("sources", ["live", "stats,dumps,live"])
def test_the_table_names_the_largest(sources: str):
    result = CliRunner().invoke(app, ["plan", "200.160.0.0/19", "--estimate", "--sources", sources,
                                      "--files-base", str(PUBLISHED)])
    assert result.exit_code == 0 and "largest: lacnic" in result.output


def test_a_bench_run_projects_its_answered_requests_onto_the_real_limits():
    from whoiscrawl.bench.fleet import real_time

    # the simulator ran LACNIC 100x faster; its 600 answered requests still take an hour for real
    figures = {"utilization": {"lacnic": {"answered": 600, "allowed_per_s": 16.67, "sources": 2},
                               "arin": {"answered": 36_000, "allowed_per_s": 1000.0, "sources": 2}}}
    doc = real_time(figures, egress=2)
    assert doc["by_registry"]["lacnic"]["projected_real_hours"] == 0.5
    assert doc["by_registry"]["arin"]["projected_real_hours"] == 0.5
    assert doc["egress_addresses"] == 2


def test_plan_estimate_leaves_no_files_behind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the files it reads go
    assert _estimate("200.160.0.0/19")["by_registry"]["lacnic"]["requests"] > 0
    assert list(tmp_path.iterdir()) == []
