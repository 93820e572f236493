"""Serving a real crawl of `quick`: lookup, the RDAP server and the MMDB give the results' most specific
network and holder at every truth network's edges, inside nested networks, in gaps and in special space."""

from __future__ import annotations

import json
import random
from pathlib import Path

import maxminddb
import numpy as np
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from typer.testing import CliRunner

from whoiscrawl.cli import app
from whoiscrawl.ipv4 import ip_int, ip_str
from whoiscrawl.results.source import ResultSet
from whoiscrawl.results.summary import holder_of
from whoiscrawl.serve.index import load_or_build
from whoiscrawl.serve.server import MapServer
from whoiscrawl.sim import scenarios
from whoiscrawl.sim.score import truth_records

SPECIAL = ["0.0.0.1", "10.1.2.3", "100.64.0.1", "127.0.0.1", "169.254.1.1", "172.16.5.5", "192.168.1.1",
           "198.18.0.1", "224.0.0.1", "240.0.0.1", "255.255.255.255"]


@pytest.fixture(scope="module")
def expected(quick_results: Path) -> tuple[list[str], dict[str, tuple[str, str] | None], list[dict]]:
    """Probe addresses and, for each, the results' most specific network (handle, holder), found by
    brute force over the results' latest records (not through the index)."""
    docs = list(ResultSet(quick_results).latest())
    first = np.array([d["_first"] for d in docs], np.int64)
    last = np.array([d["_last"] for d in docs], np.int64)
    size = last - first
    truth = list(truth_records(scenarios.get("quick")))
    probes: set[int] = {ip_int(a) for a in SPECIAL}
    for t in truth:  # every truth network's edges, middle, and the addresses just outside it
        f, la = ip_int(t["start_address"]), ip_int(t["end_address"])
        probes |= {f, la, (f + la) // 2, max(f - 1, 0), min(la + 1, 0xFFFFFFFF)}
    want: dict[str, tuple[str, str] | None] = {}
    for address in sorted(probes):
        holding = np.flatnonzero((first <= address) & (address <= last))
        best = docs[holding[np.argmin(size[holding])]] if len(holding) else None
        want[ip_str(address)] = (best["handle"], holder_of(best)) if best else None
    return sorted(want), want, truth


def test_lookup_agrees_with_the_results_and_the_truth(quick_results: Path, expected, tmp_path: Path):
    addrs, want, truth = expected
    (tmp_path / "probes.txt").write_text("\n".join(addrs) + "\n")
    result = CliRunner().invoke(app, ["lookup", str(quick_results), "--from", str(tmp_path / "probes.txt"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    got = {d["address"]: (d["handle"], d["holder"]) if d["found"] else None
           for d in map(json.loads, result.stdout.splitlines())}
    assert got == want
    assert all(got[a] is None for a in SPECIAL)
    assert len(addrs) > 20_000 and sum(v is None for v in got.values()) > len(SPECIAL) + 20  # and gaps
    # Where the crawl found a truth network, its own first and last address answer it (or a child
    # that starts or ends there: nested networks sharing an edge).
    found = {t["handle"] for t in truth} & {v[0] for v in got.values() if v}
    for t in truth:
        if t["handle"] in found and t["leaf"]:
            assert got[t["start_address"]][0] == got[t["end_address"]][0] == t["handle"]


async def test_the_rdap_server_agrees_with_the_results(quick_results: Path, expected):
    addrs, want, _ = expected
    index, _ = load_or_build(quick_results)
    server = TestServer(MapServer(index).app(), host="127.0.0.1")
    await server.start_server()
    sample = random.Random(9).sample(addrs, 1500) + SPECIAL
    try:
        async with ClientSession() as session:
            for address in sample:
                async with session.get(server.make_url(f"/ip/{address}")) as resp:
                    doc = await resp.json(content_type=None)
                if want[address] is None:
                    assert resp.status == 404 and doc["errorCode"] == 404, address
                    continue
                entities = doc["entities"]
                registrants = [e["vcardArray"][1][1][3] for e in entities if e["roles"] == ["registrant"]]
                holder = registrants[0] if registrants else doc.get("name") or doc["handle"]
                assert resp.status == 200 and (doc["handle"], holder) == want[address], address
    finally:
        await server.close()


def test_the_mmdb_agrees_with_the_results(quick_results: Path, expected, tmp_path: Path):
    addrs, want, _ = expected
    out = tmp_path / "quick.mmdb"
    result = CliRunner().invoke(app, ["export", str(quick_results), "--format", "mmdb", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with maxminddb.open_database(str(out)) as reader:
        for address in addrs:
            got = reader.get(address)
            assert (None if got is None else (got["handle"], got["holder"])) == want[address], address
