"""Crawls listing by what each registry offers: RIPE NCC split on Too Many Rows, ARIN `r >`, APNIC `-m`."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from whoiscrawl.bench.common import simulator
from whoiscrawl.ipv4 import ip_int
from whoiscrawl.sim import scenarios, score

from .conftest import RATE_LIMITED_SHARE, TIME_SCALE
from .test_local_crawl import crawl_cmd

pytestmark = pytest.mark.slow  # three partial crawls of `quick`

RIPE = ["2.16.0.0/16", "31.0.0.0/16", "77.0.0.0/16", "128.0.0.0/16"]  # quick's RIPE NCC ranges
ARIN = ["12.0.0.0/16", "24.0.0.0/16", "63.0.0.0/16"]
APNIC = ["1.0.0.0/16", "14.0.0.0/16", "27.0.0.0/16"]


Requests = Counter[tuple[str, str, int]]


def crawl(tmp_path: Path, ranges: list[str], *sim_args: str) -> tuple[set[str], Requests]:
    """Crawl some of quick's ranges: (handles found, (registry, protocol, status) of each request)."""
    log, out = tmp_path / "requests.jsonl", tmp_path / "out.jsonl"
    with simulator("quick", TIME_SCALE, log, extra=list(sim_args)) as sim:
        sim.info["ranges"] = ranges
        done = subprocess.run(crawl_cmd(sim, out), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["complete"]
    requests = Counter((e["registry"], e["protocol"], e["status"]) for e in map(json.loads, log.open()))
    return {json.loads(line)["handle"] for line in out.open()}, requests


def truth(registry: str, ranges: list[str]) -> set[str]:
    """The registry's findable networks in those ranges (each a /16); fails unless some of them are
    smaller than the /24 grid, which only a listing finds: `truth <= found` then proves the listing."""
    sixteens = {ip_int(r.split("/")[0]) >> 16 for r in ranges}
    rows = [r for r in score.truth_records(scenarios.get("quick"))
            if r["registry"] == registry and ip_int(r["start_address"]) >> 16 in sixteens]
    assert any(ip_int(r["end_address"]) - ip_int(r["start_address"]) < 255 for r in rows), registry
    return {r["handle"] for r in rows}


def polite(requests: Requests) -> bool:
    """No more 429s than the simulator's own stalls explain (RATE_LIMITED_SHARE, e2e/conftest.py)."""
    return sum(n for (_, _, status), n in requests.items() if status == 429) <= RATE_LIMITED_SHARE * sum(
        requests.values())


def test_ripe_listings_refused_as_too_many_rows_are_split_and_every_network_found(tmp_path):
    found, requests = crawl(tmp_path, RIPE, "--row-limit", "20")
    want = truth("ripencc", RIPE)
    assert want <= found  # recall 1.0
    # More networks than a listing of 20 rows holds: some listings were refused, and split
    assert len(want) > 20 and requests["ripencc", "rdap-bottom", 400] > 0  # a subtree, asked in parts
    assert requests["ripencc", "rdap-up", 200] > 0  # the split points moved to child edges
    assert polite(requests)


def test_arin_without_relation_search_is_listed_by_r_more(tmp_path):
    found, requests = crawl(tmp_path, ARIN, "--no-arin-relation-search")
    want = truth("arin", ARIN)
    assert want <= found
    assert requests["arin", "whois-r>", 200] > 0
    assert polite(requests)
    assert not any(reg == "arin" and proto.startswith("rdap-") for reg, proto, _ in requests)


def test_apnic_is_listed_by_whois_m(tmp_path):
    found, requests = crawl(tmp_path, APNIC)
    want = truth("apnic", APNIC)
    assert want <= found
    assert requests["apnic", "whois-m", 200] > 0
    assert polite(requests)
    assert not any(reg == "apnic" and proto.startswith("rdap-") for reg, proto, _ in requests)
    # APNIC has no personal-data quota, so no `-r`: its abuse address is in the IRT object that
    # `-r` would leave out (0.18 of the listed networks kept theirs with it).
    rows = {r["handle"]: r for r in score.truth_records(scenarios.get("quick")) if r["handle"] in want}
    got = {r["handle"]: r["abuse_emails"] for r in map(json.loads, (tmp_path / "out.jsonl").open())}
    assert {h: got[h] for h in rows} == {h: r["abuse_emails"] for h, r in rows.items()}
