"""A local crawl with the published files as sources, against the simulator: statistics and dumps
settle what they can, the walk asks live only where they say nothing, and a bad file loses nothing.

The files are written here from the simulator's world in the registries' formats, and served over
HTTP on 127.0.0.1 as a mirror of the download trees (`--files-base`)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from whoiscrawl import rirs
from whoiscrawl.ipv4 import ip_int, ip_str
from whoiscrawl.local import Seeding
from whoiscrawl.sim.model import World
from whoiscrawl.sim.render import facts
from whoiscrawl.store.memory import read_checkpoint

from .test_crawl_loop import crawl, size, truth, until_logged

LACNIC_CIDR = "186.0.0.0/22"  # LACNIC lists nothing: live, the grid misses what is under a /24


def objects_around(world: World, cidr: str) -> list[int]:
    """Every network holding an address of the range, with all its ancestors (the allocation too)."""
    found: set[int] = set()
    for obj in truth(world, cidr).values():
        while obj >= 0 and obj not in found:
            found.add(obj)
            obj = int(world.parent[obj])
    return sorted(found, key=lambda o: (world.start[o], -world.end[o]))


def lacnic_dump(
    world: World, objs: Iterable[int], rename: int | None = None, roles: bool = True,
    broken: int | None = None, handles: bool = True, unknown_contact: int | None = None,
) -> bytes:
    """LACNIC's single dump (Latin-1, CRLF, `owner:`, `parent:`) of the world's objects; `roles`:
    with the abuse contacts' mailboxes (LACNIC's own dump names the handle only); `handles`: each
    object names its `abuse-c:` (a dump redacting those too: False); `unknown_contact`: the object
    naming a contact the registry does not know; `broken`: the object with a line that is no attribute."""
    out = ["% LACNIC whois database dump", ""]
    for obj in objs:
        if world.is_placeholder(obj):
            continue
        f = facts(world, obj, "")
        holder = "Renamed Since The Dump" if obj == rename else f.org_name
        if roles:
            out += [f"role: abuse of {f.org_handle}", f"nic-hdl: {f.abuse_handle}",
                    f"abuse-mailbox: {f.abuse_email}", ""]
        out += [f"inetnum: {f.handle}"] + (["a line that is no attribute"] if obj == broken else [])
        out += [f"status: {f.type.lower()}",
                f"owner: {holder}",
                f"ownerid: {f.org_handle}", f"country: {f.country or ''}"]
        contact = "NOSUCH1" if obj == unknown_contact else f.abuse_handle
        out += [f"abuse-c: {contact}"] if handles else []
        out += [f"parent: {f.parent}"] if f.parent else []
        out += ["created: 20100101", ""]
    return gzip.compress("\r\n".join(out).encode("latin-1", errors="replace"))


def stats_file(registry: str, rows: list[tuple[int, int, str, str]]) -> str:
    """A delegation-statistics file: version line, summary, `registry|cc|ipv4|start|count|date|status|id`."""
    lines = [f"2.3|{registry}|20261206|{len(rows)}|19870101|20261206|-0300",
             f"{registry}|*|ipv4|*|{len(rows)}|summary"]
    lines += [f"{registry}|{cc}|ipv4|{ip_str(first)}|{count}|20100101|{status}|x"
              for first, count, cc, status in rows]
    return "\n".join(lines) + "\n"


def publish(root: Path, url: str, data: bytes, md5: bool = False) -> None:
    path = Path(rirs.published_at(url, str(root)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if md5:
        Path(f"{path}.md5").write_text(f"MD5 ({path.name}) = {hashlib.md5(data).hexdigest()}\n")


@pytest.fixture
async def mirror(tmp_path: Path) -> AsyncIterator[tuple[Path, str]]:
    """A directory served over HTTP on 127.0.0.1, as the registries' download trees are."""
    root = tmp_path / "published"
    root.mkdir()
    app = web.Application()
    app.router.add_static("/", root)
    async with TestServer(app, host="127.0.0.1") as server:
        yield root, str(server.make_url("/"))


def lacnic_asked(got) -> int:  # type: ignore[no-untyped-def]
    return sum(n for (r, _p, _o), n in got.requests.items() if r == "lacnic")


async def test_a_dump_settles_a_registry_that_lists_nothing(start_sim, world, tmp_path, mirror):
    root, base = mirror
    want = truth(world, LACNIC_CIDR)
    objs = objects_around(world, LACNIC_CIDR)
    publish(root, rirs.BY_ID["lacnic"].dump_urls[0], lacnic_dump(world, objs))
    live = await crawl(await start_sim(time_scale=100), tmp_path / "live", LACNIC_CIDR)
    assert set(want) - set(live.records), "the grid alone misses blocks under a /24 here"
    got = await crawl(await start_sim(time_scale=100), tmp_path / "dumps", LACNIC_CIDR,
                      sources=frozenset({"dumps", "live"}), files_base=base)
    assert got.doc["complete"] and set(want) <= set(got.records)  # recall 1.0, small blocks included
    assert lacnic_asked(got) == 0 and got.doc["lookups"] == 0
    assert got.doc["dumps"]["lacnic"]["records"] >= len(want)
    assert got.doc["blocks"] == got.doc["dumps"]["lacnic"]["in_scope"] == len(got.records)
    for block, obj in want.items():
        f, record = facts(world, obj, ""), got.records[block]
        assert (record["source"], record["registrant"], record["country"]) == ("dump", f.org_name, f.country)
        assert record["abuse_emails"] == [f.abuse_email] and record["handle"] == f.handle
    assert any(size(b) < 256 for b in want)


async def test_the_freshness_check_asks_again_and_counts_what_changed(start_sim, world, tmp_path, mirror):
    root, base = mirror
    objs = [o for o in objects_around(world, LACNIC_CIDR) if not world.is_placeholder(o)]
    renamed = objs[-1]
    publish(root, rirs.BY_ID["lacnic"].dump_urls[0], lacnic_dump(world, objs, rename=renamed))
    got = await crawl(await start_sim(time_scale=100), tmp_path, LACNIC_CIDR,
                      sources=frozenset({"dumps", "live"}), files_base=base, verify=1.0)
    fresh = got.doc["dumps"]["lacnic"]["freshness"]
    assert fresh["asked"] == len(objs) and fresh["disagreed"] == 1 and fresh["fields"] == {"registrant": 1}
    assert lacnic_asked(got) == len(objs)  # one lookup a network asked again, nothing else
    block = (ip_str(world.start[renamed]), ip_str(world.end[renamed]))
    f = facts(world, renamed, "")
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    span = f'"start_address":"{block[0]}","end_address":"{block[1]}"'
    latest = [line for line in lines if span in line][-1]
    assert '"source":"rdap"' in latest and f.org_name in latest  # the live record, written last, wins


async def test_a_truncated_dump_is_named_and_its_registry_crawled_live(start_sim, world, tmp_path, mirror):
    root, base = mirror
    whole = lacnic_dump(world, objects_around(world, LACNIC_CIDR))
    publish(root, rirs.BY_ID["lacnic"].dump_urls[0], whole[: len(whole) // 2])
    got = await crawl(await start_sim(time_scale=100), tmp_path, LACNIC_CIDR,
                      sources=frozenset({"dumps", "live"}), files_base=base)
    assert any("lacnic.db.gz, line" in n and "crawled live" in n for n in got.doc["notes"])
    assert got.doc["dumps"] == {} and got.doc["complete"]
    assert all(r["source"] != "dump" for r in got.records.values())
    assert {b for b in truth(world, LACNIC_CIDR) if size(b) >= 256} <= set(got.records)


async def test_statistics_skip_free_space_exactly_and_route_by_the_delegating_registry(
        start_sim, world, tmp_path, mirror):
    # 128.0/16 sits in ARIN's legacy 128/8 but is registered at the RIPE NCC: live, ARIN is asked
    # first and redirects; the RIPE NCC's statistics name it, so it is asked directly.
    root, base = mirror
    cidr = "128.0.0.0/20"
    first = 128 << 24
    ripe = stats_file("ripencc", [(first, 3072, "NL", "allocated"), (first + 3072, 1024, "", "available")])
    publish(root, rirs.BY_ID["ripencc"].stats_url, ripe.encode(), md5=True)
    publish(root, rirs.BY_ID["arin"].stats_url, b"2.3|arin|1|0|19700101|20261206|-0400\n", md5=True)
    got = await crawl(await start_sim(time_scale=100), tmp_path, cidr,
                      sources=frozenset({"stats", "live"}), files_base=base)
    assert got.doc["complete"] and not any(r == "arin" for r, _p, _o in got.requests)
    free = first + 3072
    # the available quarter was never asked for: the statistics' own record of it is all there is
    in_free = [got.records[b] for b in got.records if ip_int(b[0]) >= free]
    assert [(r["source"], r["status"], r["start_address"], r["end_address"]) for r in in_free] == [
        ("stats", ["available"], ip_str(free), ip_str(free + 1023))]
    want = {b for b in truth(world, cidr) if ip_int(b[0]) < free}
    assert want <= set(got.records)
    # the three registries with no file here: named, crawled live
    assert sum("statistics not used" in n for n in got.doc["notes"]) == 3


async def test_a_resumed_crawl_reads_no_dump_twice_and_still_asks_nothing(start_sim, world, tmp_path, mirror):
    root, base = mirror
    publish(root, rirs.BY_ID["lacnic"].dump_urls[0], lacnic_dump(world, objects_around(world, LACNIC_CIDR)))
    options = {"sources": frozenset({"dumps", "live"}), "files_base": base}
    first = await crawl(await start_sim(time_scale=100), tmp_path, LACNIC_CIDR, **options)
    lines = (tmp_path / "results.jsonl").read_text().count("\n")
    checkpoint = tmp_path / "results.jsonl.checkpoint.json"  # as if stopped before any shard was walked
    state = read_checkpoint(checkpoint)  # the snapshot with its journal applied, written back as one
    checkpoint.write_text(json.dumps({**state, "done": [], "cursors": {}}) + "\n")
    again = await crawl(await start_sim(time_scale=100), tmp_path, LACNIC_CIDR, resume=True, **options)
    assert again.doc["resumed"] and again.doc["dumps"] == {}  # seeded once, remembered by the checkpoint
    assert (tmp_path / "results.jsonl").read_text().count("\n") == lines
    assert again.doc["lookups"] == first.doc["lookups"] == 0  # the dump's parents are still leaves


async def test_fields_a_dump_leaves_out_are_asked_live(start_sim, world, tmp_path, mirror):
    root, base = mirror
    objs = [o for o in objects_around(world, LACNIC_CIDR) if not world.is_placeholder(o)]
    # no contact named either: each network is asked
    publish(root, rirs.BY_ID["lacnic"].dump_urls[0], lacnic_dump(world, objs, roles=False, handles=False))
    got = await crawl(await start_sim(time_scale=100), tmp_path, LACNIC_CIDR,
                      sources=frozenset({"dumps", "live"}), files_base=base, fill_redacted=True)
    fresh = got.doc["dumps"]["lacnic"]["freshness"]
    # a parent whose first child starts where it does is asked where it answers itself, past its
    # children (asked at its first address, the child answered and it stayed unfilled)
    parents = {int(p) for o in objs if (p := world.parent[o]) >= 0 and world.start[p] == world.start[o]}
    assert parents and fresh["asked"] == fresh["filled"] == len(objs)
    assert fresh.get("child_answered", 0) == 0
    assert fresh["fields"] == {"abuse_emails": len(objs)}
    for block, obj in truth(world, LACNIC_CIDR).items():
        assert got.records[block]["abuse_emails"] == [facts(world, obj, "").abuse_email]


async def test_abuse_contacts_a_dump_names_by_handle_are_asked_once_each(start_sim, world, tmp_path, mirror):
    # LACNIC's dump names each network's `abuse-c:` without its address; its RDAP answers the
    # contact's own entity (`entity/<handle>`): one request per contact fills every network naming it
    root, base = mirror
    cidr = "200.192.232.0/22"  # four delegations of one holder, who names one abuse contact
    objs = [o for o in objects_around(world, cidr) if not world.is_placeholder(o)]
    odd = objs[-1]  # names a contact LACNIC does not know: that network is asked itself
    publish(root, rirs.BY_ID["lacnic"].dump_urls[0],
            lacnic_dump(world, objs, roles=False, unknown_contact=odd))
    got = await crawl(await start_sim(time_scale=100), tmp_path, cidr,
                      sources=frozenset({"dumps", "live"}), files_base=base, fill_redacted=True)
    handles = {facts(world, o, "").abuse_handle for o in objs if o != odd}
    assert len(handles) < len(objs) - 1  # a contact shared by several networks
    assert got.requests[("lacnic", "entity", "ok")] == len(handles)
    fresh = got.doc["dumps"]["lacnic"]["freshness"]
    assert fresh["asked"] == fresh["filled"] == len(objs) and fresh["by_contact"] == len(objs) - 1
    assert fresh["contacts_asked"] == len(handles) + 1 and fresh["contact_unanswered"] == 1
    assert got.requests[("lacnic", "entity", "not_found")] == 1
    assert got.requests[("lacnic", "rdap", "ok")] == 1  # the odd network, asked where it answers
    assert lacnic_asked(got) == len(handles) + 2 == got.doc["lookups"]
    for block, obj in truth(world, cidr).items():
        record, f = got.records[block], facts(world, obj, "")
        assert record["abuse_emails"] == [f.abuse_email]
        assert "raw" not in record
        if obj == odd:  # asked itself: all of it the network's RDAP answer
            assert record["source"] == "rdap" and "filled" not in record
            continue
        # the dump's record (its name the holder's, as LACNIC's RDAP names it), but the one field
        # its contact's entity gave, said so
        assert (record["source"], record["name"], record["registrant"]) == ("dump", f.org_name, f.org_name)
        assert {k: {**v, "observed_at": "-"} for k, v in record["filled"].items()} == {
            "abuse_emails": {"source": "rdap", "observed_at": "-", "entity": f.abuse_handle}}


async def test_an_object_the_dump_breaks_is_found_live_inside_its_parent(start_sim, world, tmp_path, mirror):
    root, base = mirror
    want = truth(world, LACNIC_CIDR)
    objs = objects_around(world, LACNIC_CIDR)
    small = next(o for o in want.values() if world.parent[o] >= 0 and not world.nchildren[o])
    publish(root, rirs.BY_ID["lacnic"].dump_urls[0], lacnic_dump(world, objs, broken=small))
    got = await crawl(await start_sim(time_scale=100), tmp_path, LACNIC_CIDR,
                      sources=frozenset({"dumps", "live"}), files_base=base)
    assert got.doc["dumps"]["lacnic"]["skipped"] == 1, got.doc["notes"]
    assert any("a line that is no attribute" in n for n in got.doc["notes"])
    block = (ip_str(world.start[small]), ip_str(world.end[small]))
    assert got.records[block]["source"] == "rdap"  # asked live: its parent was left a parent
    assert set(want) <= set(got.records) and lacnic_asked(got) > 0


async def test_a_crawl_stopped_while_seeding_writes_nothing_twice_on_resume(start_sim, world, tmp_path):
    # Ctrl-C (the crawl's task cancelled) after the free space was written, while the dump is
    # being fetched: `--resume` writes only what the results lack
    root = tmp_path / "published"
    first = ip_int("186.0.0.0")
    lacnic = stats_file("lacnic", [(first, 1024, "BR", "allocated"), (first + 1024, 1024, "", "available")])
    publish(root, rirs.BY_ID["lacnic"].stats_url, lacnic.encode(), md5=True)
    dump_url = rirs.BY_ID["lacnic"].dump_urls[0]
    publish(root, dump_url, lacnic_dump(world, objects_around(world, LACNIC_CIDR)))
    asked, release = asyncio.Event(), asyncio.Event()

    async def stalled(request: web.Request) -> web.StreamResponse:
        asked.set()
        await release.wait()  # the first crawl is stopped meanwhile
        return web.FileResponse(Path(rirs.published_at(dump_url, str(root))))

    app = web.Application()
    app.router.add_get("/" + dump_url.split("://", 1)[1], stalled)
    app.router.add_static("/", root)
    options = {"sources": frozenset({"stats", "dumps", "live"}), "verify": 0.0}
    sim = await start_sim(time_scale=100)
    async with TestServer(app, host="127.0.0.1") as server:
        base = str(server.make_url("/"))
        first_run = crawl(sim, tmp_path / "crawl", "186.0.0.0/21", files_base=base, **options)
        stopped = asyncio.create_task(first_run)
        await asyncio.wait_for(asked.wait(), 30)
        stopped.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopped
        out = tmp_path / "crawl" / "results.jsonl"
        assert [json.loads(line)["source"] for line in out.read_text().splitlines()] == ["stats"]
        release.set()
        again = await crawl(sim, tmp_path / "crawl", "186.0.0.0/21", files_base=base, resume=True, **options)
    written = Counter((r["source"], r["start_address"], r["end_address"])
                      for r in map(json.loads, out.read_text().splitlines()))
    assert {k: n for k, n in written.items() if n > 1} == {}  # each record once
    assert again.doc["complete"] and again.doc["resumed"]
    assert sum(n for (source, *_), n in written.items() if source == "stats") == 1
    dumped = sum(n for (source, *_), n in written.items() if source == "dump")
    assert dumped == again.doc["dumps"]["lacnic"]["in_scope"] > 0


async def test_a_crawl_stopped_while_filling_goes_on_from_where_it_was(start_sim, world, tmp_path, mirror):
    # stopped once the fill asked its first contact: the resume seeds nothing again and asks only
    # what was left (and the few in flight when it stopped)
    root, base = mirror
    objs = [o for o in objects_around(world, LACNIC_CIDR) if not world.is_placeholder(o)]
    publish(root, rirs.BY_ID["lacnic"].dump_urls[0], lacnic_dump(world, objs, roles=False))
    options = {"sources": frozenset({"dumps", "live"}), "files_base": base, "fill_redacted": True,
               "verify": 0.0, "concurrency": 1}
    sim = await start_sim(time_scale=10)  # LACNIC: 100 a minute, the fill takes seconds
    stopped = asyncio.create_task(crawl(sim, tmp_path, LACNIC_CIDR, **options))
    await until_logged(sim, "lacnic", "entity", "ok", times=2)  # the first answered
    stopped.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await stopped
    again = await crawl(sim, tmp_path, LACNIC_CIDR, resume=True, **options)
    left = again.doc["dumps"]["lacnic"]["freshness"]
    assert 0 < left["asked"] < len(objs) and again.doc["dumps"].keys() == {"lacnic"}
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    seeded = Counter((r["start_address"], r["end_address"]) for r in records if not r["abuse_emails"])
    assert set(seeded.values()) == {1} and len(seeded) == len(objs)  # the dump's records once
    for block, obj in truth(world, LACNIC_CIDR).items():
        assert again.records[block]["abuse_emails"] == [facts(world, obj, "").abuse_email]
    # the ISP's contact the first network names (and blocks after the stop name again) was asked
    # before the stop, its record written: the resume knows it from the results and does not ask it
    isp = facts(world, objs[0], "").abuse_handle
    assert sum(facts(world, o, "").abuse_handle == isp for o in objs) > 2
    sim.log.flush()
    asked = [e["handle"] for e in map(json.loads, sim.log.path.read_text().splitlines())
             if (e["registry"], e["protocol"]) == ("lacnic", "entity")]
    assert asked.count(isp) == 1, asked


def many_inetnums(count: int) -> bytes:
    """LACNIC's dump of `count` /24s from 186.0.0.0, each its own network."""
    out = ["% LACNIC whois database dump", ""]
    for n in range(count):
        out += [f"inetnum: 186.{n >> 8}.{n & 255}/24", "status: assigned", f"owner: Holder {n}",
                f"ownerid: BR-H{n}", "country: BR", "created: 20100101", ""]
    return gzip.compress("\r\n".join(out).encode("latin-1"))


async def test_a_stop_while_seeding_takes_effect_before_the_dump_is_all_written(start_sim, tmp_path, mirror):
    # Ctrl-C (the crawl's task cancelled) once the first dumped record is written: the seeding
    # stops there, not after the dump's last record; the resume writes the rest, each once
    root, base = mirror
    count = 3 * Seeding.TURN
    publish(root, rirs.BY_ID["lacnic"].dump_urls[0], many_inetnums(count))
    options = {"sources": frozenset({"dumps"}), "files_base": base, "verify": 0.0}
    out = tmp_path / "results.jsonl"
    sim = await start_sim(time_scale=100)
    stopped = asyncio.create_task(crawl(sim, tmp_path, "186.0.0.0/12", **options))

    def dumped() -> int:
        lines = out.read_text().splitlines() if out.exists() else []
        return sum(json.loads(line)["source"] == "dump" for line in lines)

    async with asyncio.timeout(60):
        while not dumped() and not stopped.done():
            await asyncio.sleep(0)  # a turn as soon as the seeding gives one
    stopped.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await stopped
    assert 0 < dumped() < count  # the stop took effect part way
    again = await crawl(sim, tmp_path, "186.0.0.0/12", resume=True, **options)
    records = map(json.loads, out.read_text().splitlines())
    written = Counter((r["start_address"], r["end_address"]) for r in records)
    assert len(written) == count and set(written.values()) == {1}  # each record once
    assert again.doc["complete"] and again.doc["dumps"]["lacnic"]["in_scope"] == count


async def test_a_delegation_is_asked_for_whole_before_anything_inside_it(start_sim, world, tmp_path, mirror):
    # ARIN's 192.12.20.0/23 (a DIRECT ASSIGNMENT, 10 networks below it, one starting at its first
    # address): by its statistics' row the lane asks `ip/192.12.20.0/23`, whose most specific
    # holder is the delegation, and lists its subtree at once. Before, the probe of its first
    # address met the network below it first, and each network met so was listed on its own.
    root, base = mirror
    cidr, first = "192.12.20.0/23", ip_int("192.12.20.0")
    assert world.lookup(first) != world.exact(first, first + 511)  # a network below starts there
    publish(root, rirs.BY_ID["arin"].stats_url, stats_file("arin", [(first, 512, "US", "assigned")]).encode(),
            md5=True)
    got = await crawl(await start_sim(time_scale=100), tmp_path, cidr,
                      sources=frozenset({"stats", "live"}), files_base=base)
    assert got.doc["complete"] and set(got.records) == set(truth(world, cidr))
    asked = {(p, o): n for (r, p, o), n in got.requests.items() if r == "arin"}
    # the delegation (a second shard's lane may meet something of it before it is listed), then
    # everything below it by one listing
    assert set(asked) == {("rdap", "ok"), ("rdap-bottom", "ok")} and asked["rdap", "ok"] <= 2
    assert asked["rdap-bottom", "ok"] == 1


# Beside IANA's special-purpose ranges: ARIN's AS112 block 192.175.48.0/24 (special-purpose, yet a
# DIRECT ASSIGNMENT its statistics list), and APNIC's reserved 198.51.99.0/24 and 198.51.101.0/24 on
# either side of TEST-NET-2 198.51.100.0/24, which APNIC's statistics list reserved too.
BESIDE_SPECIAL = ["192.175.48.0/20", "198.51.96.0/20"]


async def test_special_purpose_space_is_asked_only_where_a_registry_delegated_it(start_sim, world, tmp_path):
    # `full` missed these three. The crawl left ARIN's delegation unasked (its plan drops all
    # special-purpose space), and wrote APNIC's three reserved rows as one block spanning TEST-NET-2
    # where APNIC's placeholders are the two /24s beside it.
    sim = await start_sim(time_scale=100)
    got = await crawl(sim, tmp_path, BESIDE_SPECIAL, sources=frozenset({"stats", "live"}),
                      files_base=sim.files_base)
    want = {b: o for cidr in BESIDE_SPECIAL for b, o in truth(world, cidr).items()}
    assert {("192.175.48.0", "192.175.48.255"), ("198.51.99.0", "198.51.99.255"),
            ("198.51.101.0", "198.51.101.255")} <= set(want)
    assert got.doc["complete"] and set(got.records) == set(want)
    as112 = got.records["192.175.48.0", "192.175.48.255"]
    assert (as112["registry"], as112["source"]) == ("arin", "rdap")
    for block in ("198.51.99.0", "198.51.99.255"), ("198.51.101.0", "198.51.101.255"):
        assert (got.records[block]["registry"], got.records[block]["source"]) == ("apnic", "stats")
    # no other special-purpose address was asked: TEST-NET-2 is no one's to probe
    sim.log.flush()
    asked = [json.loads(line) for line in Path(sim.info()["log"]).read_text().splitlines()]
    special = [e["address"] for e in asked if e["protocol"] != "file" and
               any(a <= ip_int(e["address"].split()[0].split("/")[0]) <= b for a, b in rirs.SPECIAL_SPANS)]
    assert special and all(a.startswith("192.175.48.") for a in special)
