"""Serving a real crawl: lookup, the MMDB (read by maxminddb and libmaxminddb's mmdblookup) and the RDAP
server give the results' most specific network and holder, and the simulator's truth's, at every truth
network's first, middle and last address and just outside it (nested networks, gaps), and in
special-purpose space: on `quick` (the session's calm crawl), and on `standard` (slow)."""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import maxminddb
import numpy as np
import pytest
from aiohttp import ClientSession, TCPConnector
from aiohttp.test_utils import TestServer
from typer.testing import CliRunner

from whoiscrawl.bench.common import simulator
from whoiscrawl.bench.serve import most_specific
from whoiscrawl.cli import app
from whoiscrawl.ipv4 import ip_int, ip_str
from whoiscrawl.results.source import ResultSet
from whoiscrawl.results.summary import holder_of
from whoiscrawl.serve.index import load_or_build
from whoiscrawl.serve.server import MapServer
from whoiscrawl.sim import scenarios
from whoiscrawl.sim.score import truth_records

from ..conftest import calm_crawl_cmd
from .conftest import COVERAGE_FLOOR

SPECIAL = ["0.0.0.1", "10.1.2.3", "100.64.0.1", "127.0.0.1", "169.254.1.1", "172.16.5.5", "192.168.1.1",
           "198.18.0.1", "224.0.0.1", "240.0.0.1", "255.255.255.255"]
STANDARD_TIME_SCALE = 1000.0  # standard's crawl is bound by CPU, not by the registries' limits, at this

Answer = tuple[str, str] | None  # (handle, holder) of the most specific network, None: no network


@dataclass(frozen=True)
class Probes:
    """The addresses a served map is asked about, and what each must answer."""

    results: Path
    addrs: list[str]  # sorted by address
    want: dict[str, Answer]  # the results' most specific network, by brute force over their records
    truth_share: float  # of the probes, those the crawl answers with the truth's own network


def answers_of(docs: list[dict], probes: np.ndarray) -> list[Answer]:
    """The most specific of `docs` (records with start and end addresses) at each probe."""
    first = np.array([ip_int(d["start_address"]) for d in docs], np.int64)
    last = np.array([ip_int(d["end_address"]) for d in docs], np.int64)
    return [None if n < 0 else (docs[n]["handle"], holder_of(docs[n]))
            for n in most_specific(first, last, probes).tolist()]


def probes_of(results: Path, scenario: str) -> Probes:
    """Every truth network's first, middle and last address and the addresses just outside it, and
    special-purpose space; what the results answer there. The results must answer what the truth
    does, counting only the truth networks the crawl found (a network below the grid in a registry
    that lists no children may be missed: its parent answers there, as in the truth without it)."""
    truth = list(truth_records(scenarios.get(scenario)))
    spans: set[int] = {ip_int(a) for a in SPECIAL}
    for t in truth:
        f, la = ip_int(t["start_address"]), ip_int(t["end_address"])
        spans |= {f, la, (f + la) // 2, max(f - 1, 0), min(la + 1, 0xFFFFFFFF)}
    probes = np.array(sorted(spans), np.int64)
    docs = list(ResultSet(results).latest())
    want = answers_of(docs, probes)
    found = {(d["start_address"], d["end_address"]) for d in docs}
    truth_found = answers_of([t for t in truth if (t["start_address"], t["end_address"]) in found], probes)
    wrong = [(ip_str(p), w, t) for p, w, t in zip(probes.tolist(), want, truth_found, strict=True) if w != t]
    assert not wrong, f"{len(wrong)} probes where the results and the truth disagree, e.g. {wrong[:5]}"
    own = answers_of(truth, probes)
    addrs = [ip_str(p) for p in probes.tolist()]
    return Probes(results, addrs, dict(zip(addrs, want, strict=True)),
                  sum(w == o for w, o in zip(want, own, strict=True)) / len(addrs))


def check_probes(probes: Probes) -> None:
    """The probes reach what they must: special space answers nothing, gaps are probed."""
    assert all(probes.want[a] is None for a in SPECIAL)
    assert len(probes.addrs) > 20_000 and sum(v is None for v in probes.want.values()) > len(SPECIAL) + 20
    assert probes.truth_share >= COVERAGE_FLOOR


def check_lookup(probes: Probes, tmp_path: Path) -> None:
    """`whoiscrawl lookup --from FILE --json` answers the results' most specific network everywhere."""
    (tmp_path / "probes.txt").write_text("\n".join(probes.addrs) + "\n")
    result = CliRunner().invoke(app, ["lookup", str(probes.results), "--from", str(tmp_path / "probes.txt"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    got = {d["address"]: (d["handle"], d["holder"]) if d["found"] else None
           for d in map(json.loads, result.stdout.splitlines())}
    wrong = [(a, got.get(a), w) for a, w in probes.want.items() if got.get(a) != w]
    assert not wrong and len(got) == len(probes.addrs), f"{len(wrong)} wrong, e.g. {wrong[:5]}"


def check_mmdb(probes: Probes, tmp_path: Path, mmdblookups: int) -> None:
    """`export --format mmdb` read back by maxminddb at every probe, by mmdblookup at a sample."""
    out = tmp_path / "map.mmdb"
    result = CliRunner().invoke(app, ["export", str(probes.results), "--format", "mmdb", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with maxminddb.open_database(str(out)) as reader:
        docs: dict[str, Any] = {a: reader.get(a) for a in probes.addrs}
    got = {a: None if d is None else (d["handle"], d["holder"]) for a, d in docs.items()}
    wrong = [(a, got[a], w) for a, w in probes.want.items() if got[a] != w]
    assert not wrong, f"{len(wrong)} wrong, e.g. {wrong[:5]}"
    mmdblookup = shutil.which("mmdblookup")
    assert mmdblookup, "mmdblookup is missing: scripts/setup.sh installs Debian's mmdb-bin"
    for address in random.Random(5).sample(probes.addrs, mmdblookups) + SPECIAL:
        done = subprocess.run([mmdblookup, "--file", str(out), "--ip", address],
                              capture_output=True, text=True, timeout=30)
        if probes.want[address] is None:
            assert "Could not find an entry" in done.stdout + done.stderr, (address, done.stdout)
        else:
            fields = dict(re.findall(r'"(handle|holder)": \n +"(.*)" <utf8_string>', done.stdout))
            assert (fields.get("handle"), fields.get("holder")) == probes.want[address], address


async def check_rdap(probes: Probes, sample: int, connections: int = 8) -> None:
    """The RDAP server over HTTP: `GET /ip/<address>` of a sample names the network and holder (the
    registrant entity's vCard fn, else the network's name, else its handle), 404 where none holds it."""
    index, _ = load_or_build(probes.results)
    server = TestServer(MapServer(index).app(), host="127.0.0.1")
    await server.start_server()
    wrong: list[tuple[str, int, Answer, Answer]] = []

    async def ask(session: ClientSession, addresses: Iterator[str]) -> None:
        for address in addresses:
            async with session.get(server.make_url(f"/ip/{address}")) as resp:
                doc = await resp.json(content_type=None)
            want = probes.want[address]
            if resp.status == 404 and doc["errorCode"] == 404:
                got: Answer = None
            else:
                fns = [e["vcardArray"][1][1][3] for e in doc.get("entities", [])
                       if e["roles"] == ["registrant"]]
                got = (doc["handle"], fns[0] if fns else doc.get("name") or doc["handle"])
            if got != want or resp.status not in (200, 404):
                wrong.append((address, resp.status, got, want))

    picked = iter(random.Random(9).sample(probes.addrs, sample) + SPECIAL)
    try:
        async with ClientSession(connector=TCPConnector(limit=connections)) as session:
            await asyncio.gather(*(ask(session, picked) for _ in range(connections)))
    finally:
        await server.close()
    assert not wrong, f"{len(wrong)} wrong, e.g. {wrong[:5]}"


@pytest.fixture(scope="module")
def quick_probes(quick_results: Path) -> Probes:
    return probes_of(quick_results, "quick")


def test_lookup_agrees_with_the_results_and_the_truth(quick_probes: Probes, tmp_path: Path):
    check_probes(quick_probes)
    check_lookup(quick_probes, tmp_path)


async def test_the_rdap_server_agrees_with_the_results(quick_probes: Probes):
    await check_rdap(quick_probes, 1500)


def test_the_mmdb_agrees_with_the_results(quick_probes: Probes, tmp_path: Path):
    check_mmdb(quick_probes, tmp_path, 200)


@pytest.mark.slow
async def test_standard_served_three_ways_agrees_with_the_results_and_the_truth(tmp_path: Path):
    """A live crawl of `standard` (115,000 networks, about 440,000 probes): the same checks."""
    out, log = tmp_path / "results.jsonl", tmp_path / "requests.jsonl"
    with simulator("standard", STANDARD_TIME_SCALE, log) as sim:
        cmd = calm_crawl_cmd(sim.bootstrap_url, sim.whois, sim.rate_limits_arg(), sim.ranges, out)
        done = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["complete"]
    probes = await asyncio.to_thread(probes_of, out, "standard")
    check_probes(probes)
    check_lookup(probes, tmp_path)
    check_mmdb(probes, tmp_path, 500)
    await check_rdap(probes, 10_000)
