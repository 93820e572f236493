"""What the simulated registries publish: delegation statistics and RPSL dumps, served at the
catalogue's URLs, made from the same world as the RDAP and WHOIS answers, and spoiled on request."""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import zlib
from collections import Counter
from dataclasses import replace

import aiohttp
import pytest

from whoiscrawl import rirs
from whoiscrawl.ipv4 import ip_int, ip_str
from whoiscrawl.records import NetworkRecord
from whoiscrawl.registry.contacts import entity_name, unnamed_holder
from whoiscrawl.registry.rdap import RdapParser
from whoiscrawl.registry.whois import lookup_query, parse_whois, query
from whoiscrawl.sim import data, published
from whoiscrawl.sim.data import REG_INDEX
from whoiscrawl.sim.dumps import lacnic_short
from whoiscrawl.sim.faults import Faults
from whoiscrawl.sim.model import MODEL_VERSION, World, world_for
from whoiscrawl.sim.score import compared
from whoiscrawl.sources import seed
from whoiscrawl.sources.fetch import FetchError
from whoiscrawl.sources.fetch import fetch as fetch_file
from whoiscrawl.sources.published import fetch_dumps

Obj = list[tuple[str, str]]
DUMPED = ("ripencc", "apnic", "afrinic", "lacnic")


async def fetch(sim, url: str) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession(auto_decompress=False) as s, \
            s.get(rirs.published_at(url, sim.files_base)) as r:
        return r.status, dict(r.headers), await r.read()


def rpsl(text: str) -> list[Obj]:
    """Objects of a dump: blank-line separated, `key: value` lines, `#` comments skipped."""
    out: list[Obj] = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines = [ln for ln in block.splitlines() if ln and not ln.startswith("#")]
        if lines:
            out.append([(k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines)])
    return out


def first(obj: Obj, key: str) -> str | None:
    return next((v for k, v in obj if k == key), None)


async def dump_objects(sim, registry: str) -> dict[str, list[Obj]]:
    """Every dump file of a registry, fetched over HTTP and parsed, by file name."""
    encoding = "latin-1" if registry == "lacnic" else "utf-8"
    out = {}
    for url in rirs.BY_ID[registry].dump_urls:
        status, _, body = await fetch(sim, url)
        assert status == 200, url
        out[url.rsplit("/", 1)[-1]] = rpsl(gzip.decompress(body).decode(encoding))
    return out


async def test_every_catalogued_file_is_served_at_its_real_path_as_bytes(start_sim):
    sim = await start_sim(limits=False)
    for item in published.catalogue():
        status, headers, body = await fetch(sim, item.url)
        assert status == 200 and body, item.url
        assert "Content-Encoding" not in headers, "a .gz is sent as the download servers send it: bytes"
        if item.name.endswith(".gz"):
            assert body[:2] == b"\x1f\x8b"
    status, _, _ = await fetch(sim, "https://ftp.ripe.net/ripe/dbase/split/ripe.db.person.gz")
    assert status == 404  # persons are never published
    sim.log.flush()
    lines = sim.log.path.read_text().splitlines()
    logged = Counter(line.split('"protocol":"')[1].split('"')[0] for line in lines)
    assert logged["file"] == len(published.catalogue()) + 1


async def test_statistics_are_the_worlds_delegations_with_each_registrys_quirks(start_sim, world: World):
    sim = await start_sim(limits=False)
    odd: list[list[str]] = []  # values that are no power of two (768, 3072 ...)
    for r in rirs.CATALOGUE:
        _, _, body = await fetch(sim, r.stats_url)
        _, _, md5 = await fetch(sim, r.stats_url + ".md5")
        name = r.stats_url.rsplit("/", 1)[-1]
        digest = hashlib.md5(body).hexdigest()
        assert md5.decode() == (f"{digest}  {name}\n" if r.id == "arin" else f"MD5 ({name}) = {digest}\n")
        lines = body.decode().splitlines()
        assert lines[0].startswith("#") is (r.id == "apnic")  # APNIC's banner
        rows = [ln.split("|") for ln in lines if not ln.startswith("#")]
        version, summaries = rows[0], [f for f in rows[1:] if f[-1] == "summary"]
        records = [f for f in rows[1 + len(summaries):]]
        assert version[1] == r.id and int(version[3]) == sum(int(f[4]) for f in summaries) == len(records)
        ipv4 = [f for f in records if f[2] == "ipv4"]
        assert len(ipv4) == int(next(f[4] for f in summaries if f[2] == "ipv4"))
        free = [f for f in ipv4 if f[6] in ("available", "reserved")]
        assert free and all(len(f) == (7 if r.id == "ripencc" else 8) for f in free)
        assert all(f[1] == ("ZZ" if r.id == "afrinic" else "") for f in free)
        if r.id == "arin":
            assert all(re.fullmatch(r"[0-9a-f]{32}", f[7]) for f in ipv4 if f not in free)
        odd += [f for f in ipv4 if int(f[4]) & (int(f[4]) - 1)]
        # The world's delegations, exactly: its top objects of this registry.
        held = {(ip_int(f[3]), int(f[4]), f[1]) for f in ipv4 if f[6] in ("allocated", "assigned")}
        tops = {(world.start[i], world.end[i] - world.start[i] + 1, world.ccs[world.cc[i]])
                for i in range(len(world)) if world.depth[i] == 0 and world.typ[i]
                and world.reg[i] == REG_INDEX[r.id]}
        assert held == tops
    assert odd


async def answers(sim, world: World, registry: str, i: int) -> tuple[object, object]:
    """What the registry's RDAP and WHOIS say of object i, asked for an address it answers."""
    address = next(a for a, _b, obj in world.segments(world.start[i], world.end[i]) if obj == i)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{sim.base_url(registry)}ip/{ip_str(address)}") as r:
            doc = await r.json(content_type=None)
        rdap = RdapParser().parse(doc, address, registry)
        if (nameless := unnamed_holder(doc)) is not None:  # named by its entity, as the client asks
            async with s.get(f"{sim.base_url(registry)}entity/{nameless.handle}") as r:
                name = entity_name(await r.json(content_type=None), nameless.handle)
            rdap = replace(rdap, registrant=name)
    host, port = sim.info()["whois"].rsplit(":", 1)
    body = await query(host, int(port), lookup_query(address, registry) + "\r\n", None, 60)
    return rdap, parse_whois(body.decode("utf-8", "replace"), address, registry)


def sample(world: World, objects: list[Obj], n: int) -> list[tuple[int, Obj]]:
    """n inetnums spread over the dump, each with its world object, among those some address answers."""
    out = []
    for obj in objects[:: max(1, len(objects) // (4 * n))]:
        span = first(obj, "inetnum") or ""
        a, _, b = span.partition(" - ")
        low, high = (ip_int(a), ip_int(b)) if b else _cidr(span)
        i = world.exact(low, high)
        if any(o == i for _a, _b, o in world.segments(low, high)):
            out.append((i, obj))
    return out[:n]


def _cidr(short: str) -> tuple[int, int]:
    address, length = short.split("/")
    first_ = ip_int(".".join((address.split(".") + ["0"] * 4)[:4]))
    return first_, first_ + (1 << (32 - int(length))) - 1


@pytest.mark.parametrize("registry", DUMPED)
async def test_dumps_say_what_the_rdap_and_whois_answers_say(start_sim, world: World, registry):
    # Holder (organisation or owner), country, status and abuse mailbox of a sample of inetnums,
    # against the same world's RDAP and WHOIS answers, through the crawler's own parsers.
    sim = await start_sim(limits=False)
    files = await dump_objects(sim, registry)
    inetnums = [o for objs in files.values() for o in objs if o[0][0] == "inetnum"]
    orgs = {first(o, "organisation"): o for objs in files.values() for o in objs if o[0][0] == "organisation"}
    mailboxes = {first(o, "nic-hdl") or first(o, "irt"): first(o, "abuse-mailbox")
                 for objs in files.values() for o in objs if o[0][0] in ("role", "irt")}
    checked = 0
    for i, obj in sample(world, inetnums, 12):
        rdap, whois = await answers(sim, world, registry, i)
        holder = first(obj, "owner") if registry == "lacnic" else first(orgs[first(obj, "org")], "org-name")
        mailbox = {"ripencc": mailboxes.get(first(obj, "abuse-c") or ""),
                   "apnic": mailboxes.get(first(obj, "mnt-irt") or ""),
                   "afrinic": (first(obj, "remarks") or "").rsplit(" ", 1)[-1]}.get(registry)
        for said in (rdap, whois):
            assert said.registrant == holder, (registry, obj)
            assert said.country == first(obj, "country")
            assert (said.type or "").upper() == (first(obj, "status") or "").upper()
        assert registry == "lacnic" or rdap.abuse_emails == [mailbox]  # LACNIC's dump redacts it
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("registry", DUMPED)
async def test_a_dumped_network_names_the_parent_its_rdap_answer_names(start_sim, world: World, registry,
                                                                       tmp_path):
    # RIPE NCC's and APNIC's inetnums carry no `parent:` (nor LACNIC's, as the simulator writes
    # them); their RDAP answers do (`parentHandle`). The crawler's record of each, read from the
    # dump, names the same parent: every one against the world's, a sample against RDAP itself.
    sim = await start_sim(limits=False)
    got, _ = await fetch_dumps(sim.files_base, tmp_path, frozenset(DUMPED), [registry])
    staged = tmp_path / "staged.jsonl"
    seed.stage(got[0], None, staged)
    records = [NetworkRecord.from_own_json(line) for line in staged.read_text().splitlines()]
    objects = [world.exact(r.first, r.last) for r in records]
    want = [compared(world, i)["parent_handle"] for i in objects]
    wrong = [(r.handle, r.parent_handle, w) for r, w in zip(records, want, strict=True)
             if r.parent_handle != w]
    assert not wrong, (len(wrong), len(records), wrong[:3])
    nested = [n for n, w in enumerate(want) if w is not None]
    assert nested
    for n in nested[:: max(1, len(nested) // 8)]:
        i = objects[n]
        if any(o == i for _a, _b, o in world.segments(world.start[i], world.end[i])):
            rdap, _whois = await answers(sim, world, registry, i)
            assert records[n].parent_handle == rdap.parent_handle, records[n].handle


async def test_dump_shapes_of_each_registry(start_sim, world: World):
    sim = await start_sim(limits=False)
    ripe = await dump_objects(sim, "ripencc")
    _, _, raw = await fetch(sim, rirs.BY_ID["ripencc"].dump_urls[0])
    assert gzip.decompress(raw).decode().startswith(
        "#\n# The contents of this file are subject to \n# RIPE Database Terms and Conditions\n#\n")
    for obj in ripe["ripe.db.inetnum.gz"][:50] + ripe["ripe.db.organisation.gz"][:50]:
        remarks = [v for k, v in obj if k == "remarks"]
        assert remarks[-6] == "* THIS OBJECT IS MODIFIED" and len(remarks) >= 7
        assert all(v == "DUMY-RIPE" for k, v in obj if k in ("admin-c", "tech-c"))
        assert all(v == "unread@ripe.net" for k, v in obj if k == "e-mail")
    assert all(first(o, "abuse-mailbox") for o in ripe["ripe.db.role.gz"])  # roles only with one
    roles = ripe["ripe.db.role.gz"]
    assert all(first(o, "address") == f"Dummy address for {first(o, 'nic-hdl')}" for o in roles)
    afrinic = (await dump_objects(sim, "afrinic"))["afrinic.db.gz"]
    nested = [o for o in afrinic if o[0][0] == "inetnum" and first(o, "parent")]
    assert nested and all(world.exact(*map(ip_int, first(o, "parent").split(" - "))) >= 0 for o in nested)
    _, _, raw = await fetch(sim, rirs.BY_ID["lacnic"].dump_urls[0])
    text = gzip.decompress(raw)
    assert b"\r\n" in text and b"\n" not in text.replace(b"\r\n", b"")
    assert "ç".encode("latin-1") in text and "ç".encode() not in text  # Latin-1
    assert re.search(rb"inetnum:\s+\d+\.\d+/\d+\r\n", text), "short CIDRs"
    assert b"e-mail" not in text and b"person:" not in text


def test_lacnic_short_cidrs_drop_only_trailing_zero_octets_the_length_covers():
    assert lacnic_short("5.183.80.0/22") == "5.183.80/22"
    assert lacnic_short("24.232.0.0/16") == "24.232/16"
    assert lacnic_short("10.0.0.0/23") == "10.0.0/23"
    assert lacnic_short("200.0.0.0/8") == "200/8"
    assert lacnic_short("186.0.0.0 - 186.0.2.255") == "186.0.0.0 - 186.0.2.255"


async def test_file_faults_spoil_what_they_name_and_nothing_else(start_sim):
    faults = {"files": {"ripencc": ["truncated_gzip", "stale_serial"], "lacnic": ["wrong_encoding"],
                        "apnic": ["broken_object", "record_count"], "arin": ["md5_mismatch"]}}
    sound, sim = await start_sim(limits=False), await start_sim(limits=False, faults=faults)
    ripe, apnic, arin = rirs.BY_ID["ripencc"], rirs.BY_ID["apnic"], rirs.BY_ID["arin"]
    with pytest.raises((EOFError, zlib.error)):
        gzip.decompress((await fetch(sim, ripe.dump_urls[0]))[2])
    assert (await fetch(sim, ripe.dump_urls[1]))[2] == (await fetch(sound, ripe.dump_urls[1]))[2]
    serial, fresh = [int((await fetch(s, ripe.serial_url or ""))[2]) for s in (sim, sound)]
    assert serial < fresh
    last = rpsl(gzip.decompress((await fetch(sim, apnic.dump_urls[0]))[2]).decode())[-1]
    assert first(last, "inetnum") == "192.0.2.0 - 192.0.2"  # a range cut short
    assert any(k.startswith("netname ") for k, _ in last)  # a line without its colon
    stats = (await fetch(sim, apnic.stats_url))[2].decode().splitlines()
    rows = [ln for ln in stats if not ln.startswith("#")]
    assert int(rows[0].split("|")[3]) == len([r for r in rows[1:] if not r.endswith("summary")]) + 7
    md5 = (await fetch(sim, apnic.stats_url + ".md5"))[2].decode()
    assert hashlib.md5("\n".join(stats).encode() + b"\n").hexdigest() in md5  # that fault alone
    body, md5 = (await fetch(sim, arin.stats_url))[2], (await fetch(sim, arin.stats_url + ".md5"))[2]
    assert hashlib.md5(body).hexdigest() not in md5.decode()
    lacnic = gzip.decompress((await fetch(sim, rirs.BY_ID["lacnic"].dump_urls[0]))[2])
    assert "Telecomunicações".encode() in lacnic  # UTF-8 inside LACNIC's Latin-1 file
    assert sim.info()["file_faults"]["ripencc"] == ["stale_serial", "truncated_gzip"]


def test_file_faults_that_name_what_a_registry_does_not_publish_are_refused():
    with pytest.raises(ValueError, match=r"files\.arin: stale_serial needs a file arin does not publish"):
        Faults.from_doc({"files": {"arin": ["stale_serial"]}})
    with pytest.raises(ValueError, match="unknown fault 'gzip'"):
        Faults.from_doc({"files": {"ripencc": "gzip"}})


def test_files_are_made_once_and_kept_for_the_next_simulator(quick, world: World):
    # A restarted `sim serve` finds the scenario's files in the cache instead of making them again.
    item = next(i for i in published.catalogue() if i.name == "lacnic.db.gz")
    path = published.Files(quick, world).sound(item)
    made = path.stat().st_mtime_ns
    again = published.Files(quick, world).sound(item)
    assert again == path and again.stat().st_mtime_ns == made


def test_files_of_other_generator_versions_are_deleted_when_this_versions_are_made(quick, world: World,
                                                                                 tmp_path, monkeypatch):
    # `full`'s files are 1.2 GB: each MODEL_VERSION's used to stay in the cache for good. The first
    # file of a version deletes the scenario's files of every other version (as `world_for` does
    # worlds), days and changed worlds of this version kept, other scenarios and seeds untouched.
    monkeypatch.setenv("WHOISCRAWL_CACHE", str(tmp_path))
    files = published.Files(quick, world)
    this = files.root.name.removeprefix(f"quick-{quick.seed}-").split("-")[0]
    assert this == f"v{MODEL_VERSION}.{published.FILES_VERSION}"
    older = [f"quick-{quick.seed}-0123456789ab", f"quick-{quick.seed}-0123456789ab-day2",  # before versions
             f"quick-{quick.seed}-v{MODEL_VERSION - 1}.{published.FILES_VERSION}-0123456789ab",
             f"quick-{quick.seed}-v{MODEL_VERSION}.{published.FILES_VERSION + 1}-0123456789ab-day1"]
    kept = [f"quick-{quick.seed}-{this}-0123456789ab-day3", f"quick-{quick.seed + 10}-0123456789ab",
            f"standard-{quick.seed}-0123456789ab"]
    for name in older + kept:
        (files.root.parent / name / "ftp.ripe.net").mkdir(parents=True)
    stray = files.root.parent / f".quick-{quick.seed}-old.tmp"  # not an entry: no stem of ours
    stray.touch()
    item = next(i for i in published.catalogue() if i.kind == "serial")
    assert files.sound(item).is_file()
    assert sorted(p.name for p in files.root.parent.iterdir()) == sorted([files.root.name, stray.name, *kept])


def test_a_world_built_deletes_the_worlds_of_other_model_versions(tmp_path, monkeypatch):
    # The same rule as the published files' (`data.prune_other_versions`), for worlds: a world's
    # key hashes MODEL_VERSION, so another key of its scenario and seed is another version's.
    allocations = data.ensure_data()  # the real allocations a world is built from, in this cache too
    monkeypatch.setenv("WHOISCRAWL_CACHE", str(tmp_path))
    shutil.copytree(allocations, data.data_dir())
    worlds = tmp_path / "sim-worlds"
    worlds.mkdir()
    older, kept = worlds / "tiny-1-0123456789abcdef.bin", [worlds / "tiny-12-0123456789abcdef.bin",
                                                           worlds / "quick-1-0123456789abcdef.bin"]
    for path in (older, *kept):
        path.write_bytes(b"")
    world_for(1, ((ip_int("193.0.0.0"), ip_int("193.0.255.255")),), "tiny")
    assert sorted(worlds.iterdir()) == sorted([*kept, *worlds.glob("tiny-1-*.bin")])
    assert not older.exists() and len(list(worlds.glob("tiny-1-*.bin"))) == 1


async def test_a_dropped_download_is_asked_again_and_arrives_whole(start_sim, tmp_path):
    sim = await start_sim(limits=False, faults={"files": {"lacnic": ["dropped_download"]}})
    sound = await start_sim(limits=False)
    url = rirs.BY_ID["lacnic"].dump_urls[0]
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        with pytest.raises(FetchError, match=r"lacnic\.db\.gz") as dropped:
            await fetch_file(url, sim.files_base, tmp_path / "impatient", session, pauses=())
        assert dropped.value.transient
        assert not list((tmp_path / "impatient").rglob("*.part"))  # half a file is not left behind
        got = await fetch_file(url, sim.files_base, tmp_path / "patient", session, pauses=(0.01,))
    assert got.path.read_bytes() == (await fetch(sound, url))[2]


async def test_a_missing_file_is_not_asked_again(start_sim, tmp_path):
    sim = await start_sim(limits=False)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(FetchError, match="HTTP 404") as missing:
            await fetch_file("https://ftp.ripe.net/ripe/dbase/split/ripe.db.person.gz", sim.files_base,
                             tmp_path, session, pauses=(60.0,))
    assert not missing.value.transient
