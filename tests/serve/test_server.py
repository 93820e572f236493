"""`whoiscrawl serve`: RFC 9083 answers (checked against a schema written from the RFC), RFC 9910
relations, errors with their status, the batch endpoint, metrics, and whoiscrawl's own client using it."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from aiohttp.test_utils import TestServer
from serve_support import get, write_results

from whoiscrawl.ipv4 import ip_int
from whoiscrawl.ratelimit import MemoryRateLimiter
from whoiscrawl.rates import Limit
from whoiscrawl.registry import RegistryClient
from whoiscrawl.serve import lookup as lookup_mod
from whoiscrawl.serve.index import load_or_build
from whoiscrawl.serve.server import MapServer, file_reloader
from whoiscrawl.space import Bootstrap

SCHEMA = json.loads((Path(__file__).parents[1] / "data" / "rdap-rfc9083.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

# RIPE NCC's 193/8 with two levels of children and a gap, ARIN's 8/8, and an ARIN-space block
# held by RIPE NCC (transferred): asked at ARIN's base, it redirects to RIPE NCC's.
NETWORKS = [
    ("193.0.0.0", "193.0.255.255", "ripencc"),  # 0
    ("193.0.0.0", "193.0.7.255", "ripencc"),  # 1: child of 0, first address shared
    ("193.0.6.0", "193.0.6.255", "ripencc"),  # 2: grandchild
    ("193.0.16.0", "193.0.31.255", "ripencc"),  # 3: child of 0 after a gap
    ("8.0.0.0", "8.255.255.255", "arin"),  # 4
    ("8.8.8.0", "8.8.8.255", "arin"),  # 5
    ("45.0.0.0", "45.0.3.255", "ripencc"),  # 6: in ARIN's 45/8
]


@pytest.fixture
def results(tmp_path: Path) -> Path:
    spans = [(ip_int(a), ip_int(b)) for a, b, _ in NETWORKS]
    return write_results(tmp_path / "r.jsonl", spans, registries=[r for _, _, r in NETWORKS])


@pytest.fixture
async def base(results: Path) -> AsyncIterator[str]:
    index, _ = load_or_build(results)
    server = TestServer(MapServer(index, file_reloader(results), reload_s=0.05).app(), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/"))
    await server.close()


def valid(doc: Any) -> Any:
    errors = [f"{list(e.path)}: {e.message}" for e in VALIDATOR.iter_errors(doc)]
    assert not errors, errors[:3]
    return doc


async def test_ip_queries_answer_the_most_specific_network_as_rfc_9083_objects(base: str):
    cases = (("ip/193.0.6.139", "NET-2"), ("ip/193.0.0.0", "NET-1"), ("ip/193.0.8.0", "NET-0"),
             ("ip/193.0.255.255", "NET-0"), ("ip/193.0.6.0/24", "NET-2"), ("ip/193.0.0.0/20", "NET-0"),
             ("ripencc/ip/193.0.6.1", "NET-2"))
    for path, handle in cases:
        status, doc = await get(base + path)
        assert status == 200 and valid(doc)["handle"] == handle, path
    status, doc = await get(base + "ip/193.0.6.139")
    assert doc["parentHandle"] == "NET-1" and doc["country"] == "JP" and doc["startAddress"] == "193.0.6.0"
    assert doc["cidr0_cidrs"] == [{"v4prefix": "193.0.6.0", "length": 24}]
    roles = {e["roles"][0]: e for e in doc["entities"]}
    assert roles["registrant"]["vcardArray"][1][1][3] == "Holder 2"
    assert "abuse@holder2.example" in json.dumps(roles["abuse"])
    assert {e["eventAction"] for e in doc["events"]} >= {"registration", "last update of RDAP database"}


async def test_bad_queries_get_rdap_errors_with_their_status_and_the_server_serves_on(base: str):
    cases = {"ip/193.0.0.0/33": 400, "ip/300.0.0.1": 400, "ip/banana": 400, "ip/193.0.0.1/24": 400,
             "ip/2001:db8::1": 404, "ip/9.9.9.9": 404, "ip/193.0.8.0/21": 200, "nowhere": 404,
             "ips/rirSearch1/rdap-sideways/193.0.0.0/16": 400, "ips/rirSearch1/rdap-down/9.0.0.0/8": 404,
             "ips/rirSearch1/rdap-down/193.0.0.0%20-%20192.0.0.0": 400}
    for path, want in cases.items():
        status, doc = await get(base + path)
        assert status == want, (path, doc)
        if want != 200:
            assert valid(doc)["errorCode"] == want and doc["description"][0], path
    async with aiohttp.ClientSession() as session, session.put(base + "ip/193.0.0.1") as resp:
        assert resp.status == 405 and valid(await resp.json(content_type=None))["errorCode"] == 405
    assert (await get(base + "ip/193.0.6.1"))[0] == 200


async def test_relation_search_up_down_top_bottom(base: str):
    async def handles(rel: str, key: str) -> list[str]:
        status, doc = await get(f"{base}ips/rirSearch1/{rel}/{key}")
        assert status == 200, (rel, key, doc)
        valid(doc)
        return [n["handle"] for n in doc.get("ipSearchResults", [doc])]

    whole = "193.0.0.0%20-%20193.0.255.255"
    assert await handles("rdap-down", whole) == ["NET-1", "NET-3"]  # NET-0's children, not NET-2
    assert await handles("rdap-bottom", whole) == ["NET-1", "NET-2", "NET-3"]  # NET-1 is partly its own
    assert await handles("rdap-bottom", "193.0.0.0/21") == ["NET-2"]
    assert await handles("rdap-up", "193.0.6.0/24") == ["NET-1"]
    assert await handles("rdap-top", "193.0.6.0/24") == ["NET-0"]
    assert (await get(f"{base}ips/rirSearch1/rdap-up/{whole}"))[0] == 404  # a top network has no parent
    _, doc = await get(base + "ip/193.0.6.1")
    down = next(link["href"] for link in doc["links"] if link["rel"] == "rdap-down")
    assert (await get(down))[0] == 404  # a leaf: nothing below


async def test_help_bootstrap_and_a_redirect_to_the_holding_registry(base: str):
    status, doc = await get(base + "help")
    assert status == 200 and "7 networks" in json.dumps(valid(doc))
    status, boot = await get(base + "bootstrap/ipv4.json")
    bootstrap = Bootstrap.from_document(boot)
    assert bootstrap.base_url(ip_int("193.0.6.1")) == base + "ripencc/"
    assert bootstrap.base_url(ip_int("8.8.8.8")) == base + "arin/"
    async with aiohttp.ClientSession() as session, \
            session.get(base + "arin/ip/45.0.1.1", allow_redirects=False) as resp:
        assert resp.status == 301 and resp.headers["Location"] == base + "ripencc/ip/45.0.1.1"


async def test_whoiscrawls_own_client_reads_the_mirror_as_a_registry(base: str):
    async with aiohttp.ClientSession() as session, session.get(base + "bootstrap/ipv4.json") as resp:
        bootstrap = Bootstrap.from_document(await resp.json())
    limits = {r: Limit(1000.0) for r in ("ripencc", "arin", "apnic", "lacnic", "afrinic")}
    client = RegistryClient(bootstrap, MemoryRateLimiter(limits), backoff=0.001)
    try:
        result = await client.lookup(ip_int("193.0.6.139"))
        moved = await client.lookup(ip_int("45.0.2.2"))
        assert result.down_url is not None
        top = await client.lookup(ip_int("193.0.200.1"))
        assert top.down_url is not None
        listing = await client.children(top.registry, top.down_url, "NET-0")
        gap = await client.lookup(ip_int("9.9.9.9"))
    finally:
        await client.close()
    record = result.record
    assert record is not None and result.registry == "ripencc"
    assert (record.handle, record.start_address, record.end_address) == ("NET-2", "193.0.6.0", "193.0.6.255")
    assert record.registrant == "Holder 2" and record.country == "JP" and record.parent_handle == "NET-1"
    assert record.abuse_emails == ["abuse@holder2.example"]
    assert moved.registry == "ripencc" and moved.record is not None and moved.record.handle == "NET-6"
    assert listing.complete and [c.handle for c, _ in listing.children] == ["NET-1", "NET-3"]
    assert gap.record is None  # 404: no network holds it


async def test_batch_streams_an_answer_a_line_in_order(base: str, monkeypatch):
    monkeypatch.setattr(lookup_mod, "BATCH", 5)
    lines = ["193.0.6.1", "junk", "8.8.8.8", "::1", "9.9.9.9"] * 41
    async with aiohttp.ClientSession() as session, \
            session.post(base + "batch", data="\n".join(lines).encode()) as resp:
        assert resp.status == 200
        docs = [json.loads(line) for line in (await resp.text()).splitlines()]
    assert [d["address"] for d in docs] == lines
    assert [d.get("handle") for d in docs[:5]] == ["NET-2", None, "NET-5", None, None]
    assert "error" in docs[1] and "IPv6" in docs[3]["error"] and docs[4]["found"] is False


async def test_metrics_count_requests_and_show_the_index(base: str):
    await get(base + "ip/193.0.6.1")
    await get(base + "ip/1.2.3.4/40")
    async with aiohttp.ClientSession() as session, session.get(base + "metrics") as resp:
        text = await resp.text()
    assert 'whoiscrawl_serve_requests_total{route="/ip/{key}",status="200"}' in text
    assert 'whoiscrawl_serve_requests_total{route="/ip/{key}/{plen}",status="400"}' in text
    assert "whoiscrawl_serve_request_duration_seconds_bucket" in text
    assert "whoiscrawl_serve_index_networks 7.0" in text
    assert "whoiscrawl_serve_map_observed_timestamp_seconds 1.796083206e+09" in text  # 2026-12-01T00:00:06Z


async def test_a_changed_results_file_is_served_once_reindexed(base: str, results: Path):
    assert (await get(base + "ip/1.1.1.1"))[0] == 404
    with results.open("a") as fh:
        line = results.read_text().splitlines()[5]
        fh.write(line.replace("8.8.8.", "1.1.1.").replace("NET-5", "NET-NEW") + "\n")
    for _ in range(200):  # the server looks every 0.05 s; wait for the condition, at most 10 s
        status, doc = await get(base + "ip/1.1.1.1")
        if status == 200:
            break
        await asyncio.sleep(0.05)
    assert status == 200 and doc["handle"] == "NET-NEW"


def test_workers_answer_from_one_socket_and_stop_with_the_server(results: Path):
    """`serve --workers 3`: two forked workers beside the first process answer on its port; a SIGTERM
    to the server stops them all."""
    proc = subprocess.Popen([sys.executable, "-m", "whoiscrawl", "serve", str(results), "--port", "0",
                             "--reload-every", "0", "--workers", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        url = json.loads(proc.stdout.readline())["url"]
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 2
        assert _listening(int(url.rsplit(":", 1)[1].strip("/"))) == 3  # a socket each (SO_REUSEPORT)
        statuses = asyncio.run(_many(url, 60))  # over new connections, so the accepts spread
        assert statuses == [(200, "NET-2")] * 60
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert all(not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
               for pid in children)


def _listening(port: int) -> int:
    """Listening TCP sockets on a port of 127.0.0.1 (/proc/net/tcp: state 0A is LISTEN)."""
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return sum(1 for row in rows if row[1] == f"0100007F:{port:04X}" and row[3] == "0A")


async def _many(url: str, n: int) -> list[tuple[int, str]]:
    async def one() -> tuple[int, str]:
        status, doc = await get(f"{url}ip/193.0.6.139")
        return status, doc["handle"]

    return list(await asyncio.gather(*(one() for _ in range(n))))
