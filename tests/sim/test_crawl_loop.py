"""The crawl loop in process against the simulator: a lane's walk, a parent's gaps, a listing, a
redirect, a failure; each compared with the simulator's truth, so a change to the loop fails here."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netaddr import IPNetwork

from whoiscrawl.local import LocalCrawl
from whoiscrawl.rates import Limit
from whoiscrawl.sim.model import World, ip_str
from whoiscrawl.space import REGISTRIES, fetch_bootstrap

Block = tuple[str, str]  # first and last address


@dataclass
class Crawled:
    doc: dict[str, Any]  # what LocalCrawl.run returned
    records: dict[Block, dict[str, Any]]
    requests: Counter[tuple[str, str, str]]  # (registry, protocol, outcome) from the simulator's log


async def crawl(start_sim, tmp_path: Path, cidr: str, faults: dict | None = None) -> Crawled:
    sim = await start_sim(time_scale=100, faults=faults)
    info = sim.info()
    limits = {r: Limit(float(v["rate_per_s"]), v.get("max_connections")) for r, v in info["limits"].items()}
    out = tmp_path / "results.jsonl"
    job = LocalCrawl([cidr], out, await fetch_bootstrap(sim.bootstrap_url), limits,
                     whois_servers=dict.fromkeys(REGISTRIES, info["whois"]))
    doc = await job.run()
    lines = out.read_text().splitlines() if out.exists() else []
    records = {(r["start_address"], r["end_address"]): r for r in map(json.loads, lines)}
    sim.log.flush()
    asked = map(json.loads, Path(info["log"]).read_text().splitlines())
    requests = Counter((r["registry"], r["protocol"], r["outcome"]) for r in asked)
    return Crawled(doc, records, requests)


def truth(world: World, cidr: str) -> dict[Block, int]:
    """Every network the simulator answers for some address of the range, by its span."""
    net = IPNetwork(cidr)
    objs = {obj for _a, _b, obj in world.segments(net.first, net.last) if obj >= 0}
    return {(ip_str(world.start[o]), ip_str(world.end[o])): o for o in objs}


def size(block: Block) -> int:
    first, last = (int.from_bytes(bytes(map(int, a.split(".")))) for a in block)
    return last - first + 1


async def test_a_lanes_walk_with_a_listing_finds_every_child_in_few_lookups(start_sim, world, tmp_path):
    # A RIPE NCC assignment with 30 children smaller than the grid: one rdap-down lists them all.
    got = await crawl(start_sim, tmp_path, "2.16.80.0/22")
    want = truth(world, "2.16.80.0/22")
    assert len(want) == 31 and got.doc["complete"]
    assert set(got.records) == set(want)
    assert got.requests[("ripencc", "rdap-down", "ok")] == 1
    assert got.doc["lookups"] < len(want) / 2  # the listing, not a probe per child
    assert all(r["registry"] == "ripencc" and r["handle"] for r in got.records.values())


async def test_a_parents_gaps_answer_the_parent_where_nothing_lists_its_children(start_sim, world, tmp_path):
    # LACNIC lists nothing: the /24 grid probes the allocation; what is under a /24 and missed by
    # every grid point stays unfound (the registry gives no way to see it).
    got = await crawl(start_sim, tmp_path, "186.0.0.0/22")
    want = truth(world, "186.0.0.0/22")
    assert got.doc["complete"] and not any(p == "rdap-down" for _r, p, _o in got.requests)
    assert set(got.records) <= set(want)
    assert {b for b in want if size(b) >= 256} <= set(got.records)
    missed = set(want) - set(got.records)
    assert missed and all(size(b) < 256 for b in missed)
    assert got.doc["lookups"] == sum(n for (_r, p, _o), n in got.requests.items() if p == "rdap")


async def test_a_redirect_is_followed_and_the_record_is_the_registry_it_led_to(start_sim, world, tmp_path):
    # 128.0/16 sits in ARIN's legacy 128/8 but is registered at the RIPE NCC.
    got = await crawl(start_sim, tmp_path, "128.0.0.0/20")
    assert got.doc["complete"] and set(got.records) == set(truth(world, "128.0.0.0/20"))
    assert got.requests[("arin", "rdap", "redirect")] > 0
    assert {r["registry"] for r in got.records.values()} == {"ripencc"}


async def test_faulty_answers_are_retried_and_lose_nothing(start_sim, world, tmp_path):
    faults = {"ripencc": {"http_5xx": 0.3, "malformed": 0.2}}
    got = await crawl(start_sim, tmp_path, "2.16.80.0/22", faults)
    assert got.requests[("ripencc", "rdap", "fault")] > 0
    assert got.doc["complete"] and got.doc["errors"] == 0
    assert set(got.records) == set(truth(world, "2.16.80.0/22"))


async def test_a_registry_failing_every_way_is_named_and_counted(start_sim, tmp_path):
    got = await crawl(start_sim, tmp_path, "186.0.0.0/24", {"lacnic": {"http_5xx": 1.0}})
    assert got.records == {} and got.doc["errors"] == 1
    (failure,) = got.doc["failures"]
    assert failure.startswith("186.0.0.0: ") and "lacnic" in failure and "503" in failure
