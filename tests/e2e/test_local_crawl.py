"""`whoiscrawl crawl` against the simulator: complete at /24, polite, and resumable after Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from netaddr import IPAddress

from whoiscrawl.bench.common import simulator
from whoiscrawl.space import Scope, parse_ranges

from ..conftest import CalmCrawl, calm_crawl_cmd
from .conftest import COVERAGE_FLOOR, GRID_COVERAGE_FLOOR, RATE_LIMITED_SHARE, TIME_SCALE, score

pytestmark = pytest.mark.slow  # crawls of `quick`



def crawl_cmd(sim, out: Path, *extra: str) -> list[str]:
    return calm_crawl_cmd(sim.bootstrap_url, sim.whois, sim.rate_limits_arg(), sim.ranges, out, *extra)


def test_local_sweep_finds_every_block_at_resolution(calm_quick: CalmCrawl):
    """The session's calm crawl of `quick` (tests/conftest.py), judged against the truth."""
    summary, out, log, ranges = calm_quick.summary, calm_quick.results, calm_quick.requests, calm_quick.ranges
    assert summary["complete"] and summary["errors"] == 0
    # Leaves fetched twice: only when one spans shards whose walks start at the same moment (the
    # free-space placeholder over 102.0/16 spans 16 shards). Measured 48 of 6,574 lookups; 18-21 of
    # ~1,900 once ARIN's subtrees were listed whole (2026-12-07): a count the shards' boundaries set,
    # which fewer lookups do not shrink, so the share doubled with nothing repeated more.
    assert summary["wasted"] <= 0.02 * summary["lookups"]
    figures = score(out, str(log))
    assert figures["recall_resolution"] == 1.0
    assert figures["address_coverage"] >= COVERAGE_FLOOR
    # Listings find children without a lookup each: fewer lookups than blocks (measured 0.43).
    assert figures["lookups_per_block"] < 1.0
    # Every registry that lists children, by RDAP relation search (RIPE NCC, ARIN) or WHOIS -m
    # (APNIC, AFRINIC), has them all found, ARIN's 52,000 children of 12/8 included; LACNIC lists
    # none, so its networks below the grid are found only where a grid point falls in them.
    recall = {reg: f["recall"] for reg, f in figures["recall_by_registry"].items()}
    assert all(recall[reg] >= 0.99 for reg in ("arin", "ripencc", "apnic", "afrinic")), recall
    listed = {(e["registry"], e["protocol"]) for e in map(json.loads, log.open()) if e["protocol"] != "rdap"}
    # (RDAP: a parent's whole subtree by one rdap-bottom, its children by rdap-down where that is too long)
    wanted = {("afrinic", "whois-m"), ("apnic", "whois-m"), ("ripencc", "rdap-bottom"),
              ("arin", "rdap-bottom")}
    assert wanted <= listed
    assert not any(reg in ("apnic", "afrinic", "lacnic") and p.startswith("rdap-") for reg, p in listed)
    # ... and keep only those inside the crawled ranges, though a parent straddling a range's
    # edge lists its children on both sides. (The few extra blocks the scorer sees are networks
    # inside the ranges that their children cover entirely: real, but no address's answer.)
    scope = Scope.of((int(r.first), int(r.last)) for r in parse_ranges(ranges).iter_ipranges())
    kept = [json.loads(line) for line in out.open()]
    spans = [(int(IPAddress(r["start_address"])), int(IPAddress(r["end_address"]))) for r in kept]
    assert all(scope.overlaps(first, last) for first, last in spans)
    assert figures["blocks_extra"] <= 0.001 * len(kept)
    assert figures["rate_limited"] <= RATE_LIMITED_SHARE * figures["lookups"]
    # The simulator also counts re-answers of allocations that turn out to have no children: the
    # price of proving their /24s empty where no listing says so, at LACNIC (measured 1.3% of
    # lookups on quick; 4.4% with the grid alone).
    assert figures["wasted_lookups"] <= 0.04 * figures["lookups"]
    # That price has a floor no complete crawl escapes (a grid cell per empty /24 of a childless
    # LACNIC allocation: 25 on quick); the sweep wastes little beyond it (measured 8 more).
    assert 0 < figures["wasted_floor"] <= figures["wasted_lookups"]
    assert figures["wasted_lookups"] - figures["wasted_floor"] <= 0.01 * figures["lookups"]


def test_the_grid_alone_still_finds_every_block_at_resolution_with_more_lookups(tmp_path):
    """--no-list-children: what a crawl gets from registries that list no children."""
    log = tmp_path / "requests.jsonl"
    out = tmp_path / "out.jsonl"
    with simulator("quick", TIME_SCALE, log) as sim:
        done = subprocess.run(
            crawl_cmd(sim, out, "--no-list-children"), capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-2000:]
    figures = score(out, str(log))
    assert figures["recall_resolution"] == 1.0
    assert GRID_COVERAGE_FLOOR <= figures["address_coverage"] < COVERAGE_FLOOR
    assert figures["outcomes"].get("ok", 0) > 0
    listings = sum(1 for line in log.open() if '"protocol":"rdap-down"' in line or '"whois-m"' in line
                   or '"protocol":"rdap-bottom"' in line)
    assert listings == 0
    # Proving gaps empty one grid cell at a time: well over one lookup a block (measured 2.3).
    assert figures["lookups_per_block"] > 1.5


def test_sample_stays_the_2016_method(tmp_path):
    """--strategy sample probes its fixed addresses only: no listings, and small blocks stay unfound."""
    log = tmp_path / "requests.jsonl"
    out = tmp_path / "out.jsonl"
    with simulator("quick", TIME_SCALE, log) as sim:
        done = subprocess.run(
            crawl_cmd(sim, out, "--strategy", "sample"), capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-2000:]
    assert not any('"protocol":"rdap-down"' in line or '"protocol":"rdap-bottom"' in line
                   for line in log.open())
    figures = score(out, str(log))
    assert 0 < figures["recall_resolution"] < 1.0
    assert figures["address_coverage"] < GRID_COVERAGE_FLOOR


def test_interrupted_crawl_resumes_without_losing_or_repeating(tmp_path):
    log = tmp_path / "requests.jsonl"
    out = tmp_path / "out.jsonl"
    with simulator("quick", TIME_SCALE, log) as sim:
        proc = subprocess.Popen(
            crawl_cmd(sim, out),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 200_000):
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err[-2000:]
        assert "--resume" in err
        first_part = sum(1 for _ in out.open())

        again = subprocess.run(crawl_cmd(sim, out), capture_output=True, text=True, timeout=60)
        assert again.returncode == 2 and "--resume" in again.stderr  # never overwrites silently

        done = subprocess.run(crawl_cmd(sim, out, "--resume"), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert summary["resumed"] and summary["complete"]
    lines = [json.loads(line) for line in out.open()]
    assert len(lines) > first_part
    figures = score(out, str(log))
    assert figures["recall_resolution"] == 1.0
    assert figures["address_coverage"] >= COVERAGE_FLOOR
    # Resuming repeats at most the lookups in flight at the interrupt, on top of the shard-boundary
    # repeats above (2% of lookups, see the sweep above): the crawler's own count of leaves
    # fetched again.
    assert summary["wasted"] <= 0.02 * summary["lookups"]
