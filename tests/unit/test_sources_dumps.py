"""Bulk dumps read into records: the four registries' shapes, joins by key, and broken or cut-off files."""

from __future__ import annotations

import asyncio
import gzip
import multiprocessing
import os
import tracemalloc
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whoiscrawl import ipv4, rirs
from whoiscrawl.local import FileSink, LocalCrawl
from whoiscrawl.records import NetworkRecord
from whoiscrawl.refresh import Refresh
from whoiscrawl.settings import CrawlSettings
from whoiscrawl.sources import digest, dumps, rpsl, seed
from whoiscrawl.sources.difference import Previous
from whoiscrawl.sources.published import RegistryDump
from whoiscrawl.space import Bootstrap, Scope

PUBLISHED = Path(__file__).parent.parent / "data" / "published"


def _paths(registry: str) -> list[Path]:
    return [Path(rirs.published_at(u, str(PUBLISHED))) for u in rirs.BY_ID[registry].dump_urls]


def _read(
    registry: str, paths: list[Path] | None = None
) -> tuple[dumps.DumpReport, dict[str, NetworkRecord]]:
    report, records = dumps.read_registry(registry, paths or _paths(registry), "42", "2026-12-06")
    return report, {r.handle: r for r in records}


def test_ripe_split_files_join_organisation_and_abuse_role():
    report, found = _read("ripencc")
    ncc = found["193.0.0.0 - 193.0.7.255"]
    assert ncc.registrant == "Réseaux IP Européens Network Coordination Centre (RIPE NCC)"  # UTF-8
    assert (ncc.country, ncc.type, ncc.abuse_emails) == ("NL", "ALLOCATED PA", ["abuse@ripe.net"])
    assert (ncc.source, ncc.serial, ncc.observed_at) == ("dump", "42", "2026-12-06")
    assert ncc.cidrs == ["193.0.0.0/21"]
    de = found["193.0.8.0 - 193.0.10.255"]  # no abuse-c of its own: its organisation's
    assert de.abuse_emails == ["abuse@example.de"] and de.registrant == "Example Networks GmbH"
    assert de.cidrs == ["193.0.8.0/23", "193.0.10.0/24"]
    assert found["193.0.9.0 - 193.0.9.255"].registrant is None  # neither organisation nor descr
    # the object with a line that is no attribute, and the one whose range is no range: skipped, named
    assert report.skipped == 2 and report.records == 3 and report.complete
    assert any("no `attribute: value`" in s for s in report.skipped_named)
    named = [s for s in report.skipped_named if "ripe.db.inetnum.gz, object at line" in s]
    assert any("'not an address range'" in s for s in named)
    # the broken object's span is known (the crawl asks there live); the bad range's is not
    assert report.holes == [(0xC1001000, 0xC1001FFF)] and report.unplaced == 1


def test_apnic_abuse_from_role_else_irt():
    _, found = _read("apnic")
    labs = found["1.0.0.0 - 1.0.0.255"]
    assert (labs.registrant, labs.abuse_emails) == ("APNIC Research and Development", ["helpdesk@apnic.net"])
    fj = found["1.0.1.0 - 1.0.3.255"]  # no organisation: its descr; no abuse-c: its IRT's mailbox
    assert (fj.registrant, fj.abuse_emails) == ("China Telecom", ["anti-spam@chinatelecom.cn"])


def test_afrinic_single_file_parent_and_cut_off_object():
    _, found = _read("afrinic")
    cust = found["196.11.240.0 - 196.11.247.255"]
    assert cust.parent_handle == "196.11.0.0 - 196.11.255.255"
    assert cust.abuse_emails == ["abuse@customer.example.za"]  # from its remarks, as AFRINIC writes it
    top = found["196.11.0.0 - 196.11.255.255"]
    assert (top.registrant, top.abuse_emails) == ("Example South Africa (Pty) Ltd", ["abuse@example.co.za"])
    assert "196.12.0.0 - 196.12.7.255" in found  # complete gzip: the last object ends with the file


def test_lacnic_latin1_crlf_short_cidrs_owner():
    _, found = _read("lacnic")
    br = found["200.160.0.0/20"]
    assert br.registrant == "Núcleo de Informação e Coordenação do Ponto BR"
    # LACNIC's RDAP names a network by its holder (200.57.141.161: "Triara.com, S.A. de C.V.", the
    # `owner:` of its WHOIS); the dump has no netname, so the map's name is the `owner:` too
    assert (br.name, br.type, br.country) == (br.registrant, "ALLOCATED", "BR")
    assert br.registration_date == "19980101"
    cust = found["200.160.2.0/23"]
    assert cust.parent_handle == "200.160.0.0/20" and cust.type == "REASSIGNED"
    assert found["200.3.0.0/22"].registrant == "Ejemplo Argentina S.A."


def test_a_truncated_gzip_keeps_what_was_whole_and_names_the_file(tmp_path: Path):
    whole = _paths("afrinic")[0].read_bytes()
    cut = tmp_path / "afrinic.db.gz"
    cut.write_bytes(whole[: len(whole) * 3 // 4])
    report, found = _read("afrinic", [cut])
    assert not report.complete
    assert report.problems and "afrinic.db.gz, line" in report.problems[0]
    assert "ends early" in report.problems[0]
    assert len(found) < 3  # what came before the cut, each object whole
    assert all(r.start_address and r.end_address for r in found.values())


def test_a_file_that_is_not_gzip_is_refused_by_name(tmp_path: Path):
    bad = tmp_path / "lacnic.db.gz"
    bad.write_bytes(b"inetnum: 200.3.0/22\n")
    with pytest.raises(dumps.DumpError, match=r"lacnic\.db\.gz: cannot be read"):
        _read("lacnic", [bad])


def test_objects_cut_off_at_the_end_of_a_short_read():
    class Lines(list[str]):
        complete = False

    read = list(rpsl.objects(Lines(["inetnum: 1.0.0.0 - 1.0.0.255\n", "status: ASSIGNED PA\n", "\n",
                                    "inetnum: 1.0.1.0 - 1.0.1.255\n", "netna"])))
    assert isinstance(read[0], rpsl.RpslObject) and read[0].first("status") == "ASSIGNED PA"
    assert isinstance(read[1], rpsl.Broken) and "cut off" in read[1].reason and read[1].line == 4


def test_continuations_and_comments():
    text = ["# banner\n", "% lacnic comment\r\n", "inetnum: 5.183.80/22\r\n", "descr: one\r\n", "+ two\r\n",
            "\tthree\r\n", "# inside\r\n", "source: RIPE # Filtered\r\n"]
    (obj,) = rpsl.objects(text)
    assert isinstance(obj, rpsl.RpslObject)
    assert obj.first("descr") == "one\ntwo\nthree" and obj.first("source") == "RIPE"
    assert rpsl.parse_range(obj.key) == (0x05B75000, 0x05B753FF)


def test_gzip_roundtrip_of_a_written_dump(tmp_path: Path):
    """A dump written here the way the registries write it reads back field for field."""
    path = tmp_path / "ripe.db.inetnum.gz"
    path.write_bytes(gzip.compress(b"inetnum: 10.0.0.0 - 10.0.0.255\nnetname: X\ncountry: zz\n"))
    _, found = _read("ripencc", [path])
    assert found["10.0.0.0 - 10.0.0.255"].country is None


def _staged(tmp_path: Path, inetnums: list[str]) -> dict[str, NetworkRecord]:
    path = tmp_path / "ripe.db.inetnum.gz"
    path.write_bytes(gzip.compress("\n".join(inetnums).encode()))
    staged = seed.staged_path(tmp_path, "ripencc")  # as a crawl stages it: compressed
    seed.stage(RegistryDump("ripencc", [path], "1", None), None, staged)
    with seed.open_staged(staged) as fh:
        return {r.handle: r for r in map(NetworkRecord.from_own_json, fh)}


def test_a_staged_network_names_its_closest_holder_as_parent_whatever_the_dumps_order(tmp_path: Path):
    # RIPE NCC's inetnums name no parent; RDAP's `parentHandle` is the closest network holding one.
    # A dump need not list parents first; a broken object between a network and its holder leaves
    # the network's parent unnamed rather than named wrong.
    found = _staged(tmp_path, [
        "inetnum: 10.0.1.0 - 10.0.1.127\nstatus: ASSIGNED PA\n",  # before its holders
        "inetnum: 10.0.1.0 - 10.0.1.255\nstatus: SUB-ALLOCATED PA\n",
        "inetnum: 10.0.0.0 - 10.0.255.255\nstatus: ALLOCATED PA\n",
        "inetnum: 10.0.8.0 - 10.0.8.255\nstatus: ASSIGNED PA\n",  # inside the broken one below
        "inetnum: 10.0.8.0 - 10.0.15.255\nthis line breaks the object\n",
        "inetnum: 10.0.1.0 - 10.0.1.127\nstatus: ASSIGNED PA\n",  # given twice: not its own parent
    ])
    assert found["10.0.1.0 - 10.0.1.127"].parent_handle == "10.0.1.0 - 10.0.1.255"
    assert found["10.0.1.0 - 10.0.1.255"].parent_handle == "10.0.0.0 - 10.0.255.255"
    assert found["10.0.0.0 - 10.0.255.255"].parent_handle is None
    assert found["10.0.8.0 - 10.0.8.255"].parent_handle is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ripe.db.inetnum.gz", "ripencc.records.jsonl.gz"]
    # an object whose span cannot be read could hold any of them: no parent is named from the dump
    found = _staged(tmp_path, ["inetnum: 10.0.1.0 - 10.0.1.255\n", "inetnum: 10.0.0.0 - 10.0.255.255\n",
                               "inetnum: not a range\n"])
    assert found["10.0.1.0 - 10.0.1.255"].parent_handle is None


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(st.characters(codec=None, categories=None)), st.just('x","parent_handle":null,"y')),
       st.one_of(st.none(), st.text(max_size=8)), st.booleans(), st.sampled_from(["ripencc", "lacnic"]))
def test_a_parent_written_into_a_staged_line_is_the_record_written_with_it(
        name: str, parent: str | None, raw: bool, registry: str):
    # `seed.with_parent` writes the parent into a staged line rather than reading it and writing it
    # again: the same bytes, whatever text comes before the key (a name holding the key itself) or
    # after it (`raw`), on both of `to_json`'s paths (orjson, json.dumps); a parent named is kept.
    nested = {"parent_handle": None} if raw else None
    record = NetworkRecord(registry, "h", "193.0.0.0", "193.0.7.255", ["193.0.0.0/21"], name=name,
                           registrant=name, parent_handle=parent, raw=nested)
    handle = dumps.handle_of(registry, 0x0A000000, 0x0A0000FF if registry == "lacnic" else 0x0A00017F)
    want = replace(record, parent_handle=handle if parent is None else parent).to_json().decode() + "\n"
    assert seed.with_parent(record.to_json().decode() + "\n", handle) == want


def _ripe_split(where: Path, networks: int) -> list[Path]:
    """A RIPE NCC split dump of `networks` /24s, each with an organisation and an abuse role of its
    own (as the simulator's `full` has: as many organisations and roles as inetnums)."""
    where.mkdir()
    texts: dict[str, list[str]] = {"organisation": [], "role": [], "inetnum": []}
    for n in range(networks):
        texts["organisation"].append(f"organisation: ORG-N{n}-RIPE\norg-name: Holder {n}\ncountry: nl\n"
                                     f"abuse-c: AR{n}-RIPE\nremarks: * THIS OBJECT IS MODIFIED\n")
        texts["role"].append(f"role: Abuse {n}\nabuse-mailbox: abuse{n}@example.nl\nnic-hdl: AR{n}-RIPE\n")
        first = 0x0A000000 + (n << 8)
        texts["inetnum"].append(f"inetnum: {ipv4.ip_str(first)} - {ipv4.ip_str(first + 255)}\n"
                                f"netname: NET-{n}\norg: ORG-N{n}-RIPE\nstatus: ASSIGNED PA\n")
    paths = []
    for kind in ("organisation", "role", "inetnum"):
        paths.append(where / f"ripe.db.{kind}.gz")
        paths[-1].write_bytes(gzip.compress("\n".join(texts[kind]).encode(), compresslevel=1))
    return paths


def _peak_reading(paths: list[Path], workdir: Path, digest_to: Path | None = None) -> tuple[int, int]:
    """The dump read through under tracemalloc (its digest written to `digest_to`): the peak of
    Python's allocations while reading it, and the records it gave, each a network of its own (the
    dump's ranges ascend; the last record's joins checked)."""
    tracemalloc.start()
    try:
        report, records = dumps.read_registry("ripencc", paths, "1", None, workdir, digest_to)
        count, last = 0, None
        for record in records:
            assert last is None or record.first > last.first  # no network twice
            count, last = count + 1, record
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert last is not None and last.registrant == f"Holder {count - 1}" and last.country == "NL"
    assert last.abuse_emails == [f"abuse{count - 1}@example.nl"]
    assert report.records == count and report.complete
    return peak, count


def test_reading_a_dump_holds_no_more_memory_for_ten_times_the_objects(tmp_path: Path):
    """Organisations and roles are as many as inetnums in `full` (5.9M in RIPE NCC's): held in
    dicts they took the crawler past 4.5 GB while staging it. Counted in bytes, not seconds: the
    peak of Python's allocations reading 10x the objects stays within a small constant of the
    smaller dump's (held in memory, 3,600 more objects' contacts are ~2 MB), and every network
    gives one record."""
    small, big = _ripe_split(tmp_path / "small", 400), _ripe_split(tmp_path / "big", 4_000)
    peak_small, count_small = _peak_reading(small, tmp_path)
    peak_big, count_big = _peak_reading(big, tmp_path)
    assert (count_small, count_big) == (400, 4_000)
    assert peak_big < peak_small + 256 * 1024, (peak_small, peak_big)
    assert not list(tmp_path.glob("dump-contacts-*"))  # the index on disk is gone once read through


def test_a_read_keeping_its_digest_holds_no_more_memory_for_ten_times_the_objects(tmp_path: Path):
    """The digest a read keeps (a text's hash, contact keys and span; a contact text's rows) was
    held in arrays until the read ended: ~500 bytes an inetnum here (its organisation and role
    included), ~240 on `standard`'s RIPE NCC dump, and RIPE NCC's staging in `full` past 1.3 GB.
    Now it is spooled to disk as it is read: counted in bytes, not seconds, the peak of Python's
    allocations (commit included) grows by less than 32 bytes an object from 1,000 networks to
    10,000 (the spools' buffers filling up to their fixed size), and the digest is whole."""
    peaks = []
    for n in (1_000, 10_000):
        kept = tmp_path / str(n) / "ripencc.digest.npz"
        peak, count = _peak_reading(_ripe_split(tmp_path / str(n), n), tmp_path, kept)
        got = digest.Digest.load(kept)
        assert count == n and len(got.networks.hashes) == n and len(got.contacts.hashes) == 2 * n
        assert got.firsts[-1] == 0x0A000000 + ((n - 1) << 8)
        assert got.rows.rows(2 * n - 1)[0][1] == f"AR{n - 1}-RIPE"  # the last role's row
        assert [p.name for p in kept.parent.iterdir() if p.name.startswith(".")] == []  # spools removed
        peaks.append(peak)
    per_object = (peaks[1] - peaks[0]) / 9_000
    assert per_object < 32, (peaks, per_object)


def test_a_handle_given_twice_is_the_later_object(tmp_path: Path):
    paths = _ripe_split(tmp_path / "dump", 2)
    again = b"\norganisation: ORG-N1-RIPE\norg-name: Renamed\n"
    paths[0].write_bytes(gzip.compress(gzip.decompress(paths[0].read_bytes()) + again))
    _, found = _read("ripencc", paths)
    assert found["10.0.1.0 - 10.0.1.255"].registrant == "Renamed"
    assert found["10.0.0.0 - 10.0.0.255"].registrant == "Holder 0"


def test_a_crawls_staging_is_compressed_and_reads_back_line_for_line(tmp_path: Path):
    """A dump staged where a crawl stages it (`staged_path`) is gzip-compressed (a fleet loader's
    disk is its pod's scratch volume): its lines are those staged uncompressed, one for one, when
    they were read aside (`fetched_at`), in a fraction of the bytes."""
    dump = RegistryDump("ripencc", _ripe_split(tmp_path / "dump", 2_000), "1", "2026-12-07")
    plain, packed = tmp_path / "plain.jsonl", seed.staged_path(tmp_path, "ripencc")
    for staged in (plain, packed):
        seed.stage(dump, None, staged)
    with seed.open_staged(packed) as fh, plain.open(encoding="utf-8") as fp:
        lines = [[replace(NetworkRecord.from_own_json(line), fetched_at="") for line in f] for f in (fh, fp)]
    assert lines[0] == lines[1] and len(lines[0]) == 2_000
    assert packed.stat().st_size * 5 < plain.stat().st_size, (packed.stat().st_size, plain.stat().st_size)


async def test_staging_runs_apart_and_the_loop_keeps_turning(tmp_path: Path):
    """Staging RIPE NCC's dump of `full` is minutes of CPU: run on the loop's thread it froze the
    local crawl (no Ctrl-C, no progress) and the fleet's leases. A task counting its turns while
    a dump is staged has turned before the staging is done; counted, not timed."""
    paths = _ripe_split(tmp_path / "dump", 2_000)
    turns = 0

    async def turning() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    ticker = asyncio.create_task(turning())
    staged = tmp_path / "ripencc.records.jsonl"
    report = await seed.stage_apart(RegistryDump("ripencc", paths, "1", "2026-12-07"), None, staged)
    seen = turns
    ticker.cancel()
    assert seen > 0
    assert report.records == 2_000 and report.complete
    assert len(staged.read_text().splitlines()) == 2_000
    assert report.rss_mb is not None and 0 < report.rss_mb[0] <= report.rss_mb[1]  # the process's own


async def test_a_staging_stopped_part_way_leaves_nothing_and_stages_again(tmp_path: Path):
    """Ctrl-C while a dump is staged: its process stopped (not left to read on for minutes), its
    contacts' index removed; staged again (a resume), every record is there."""
    paths = _ripe_split(tmp_path / "dump", 20_000)
    dump, work = RegistryDump("ripencc", paths, "1", "2026-12-07"), tmp_path / "work"
    work.mkdir()
    others = set(multiprocessing.active_children())  # other tests' processes (the RDAP parse pool's)
    staging = asyncio.create_task(seed.stage_apart(dump, None, work / "ripencc.records.jsonl"))
    while not list(work.glob("dump-contacts-*")) and not staging.done():
        await asyncio.sleep(0.01)  # until the staging process is reading the dump
    assert not staging.done()
    staging.cancel()
    with pytest.raises(asyncio.CancelledError):
        await staging
    assert set(multiprocessing.active_children()) <= others
    assert not list(work.glob("dump-contacts-*"))
    report = await seed.stage_apart(dump, None, work / "ripencc.records.jsonl")
    assert report.records == 20_000 and report.complete
    assert len((work / "ripencc.records.jsonl").read_text().splitlines()) == 20_000


async def test_a_refresh_reads_a_dump_in_no_more_memory_for_ten_times_the_networks(tmp_path: Path):
    """The refresh held every record of a new dump in a list (RIPE NCC's 5.96M in `full`): now it
    stages the dump as a crawl does and streams the staged file. Counted in bytes, not seconds:
    the peak of the refresh's own allocations for 10x the networks stays within a small constant."""
    peaks = []
    for n in (400, 4_000):
        paths = _ripe_split(tmp_path / str(n), n)
        out = tmp_path / str(n) / "new.jsonl"
        job = LocalCrawl(["10.0.0.0/8"], out, Bootstrap((), (), {}), {}, CrawlSettings(fill_redacted=True))
        refresh, dump = Refresh(job, tmp_path / "old"), RegistryDump("ripencc", paths, "1", "2026-12-07")
        sink = FileSink(out)
        tracemalloc.start()
        try:
            dumped = await refresh._from_dumps([dump], Previous(), Scope.of([(0, (1 << 32) - 1)]), sink)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
            sink.close()
        assert dumped == {"ripencc"} and refresh.counts["ripencc_added"] == n and sink.count == n
        assert not refresh.recheck and not list(out.parent.glob("*.published/*.records.jsonl"))
    assert peaks[1] < peaks[0] + 256 * 1024, peaks


async def test_each_staging_is_yielded_as_soon_as_it_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A registry's dump is seeded while a bigger one listed before it still stages (in `full`
    they waited for RIPE NCC's ~40 min): the first dump here is a pipe that is written only once
    the second dump's staging was yielded; yielded in list order, that would never be."""
    monkeypatch.setattr(seed, "cores", lambda: 2)
    pipe = tmp_path / "slow" / "ripe.db.inetnum"  # a split file: read once
    pipe.parent.mkdir()
    os.mkfifo(pipe)
    slow = RegistryDump("ripencc", [pipe], "1", "2026-12-07")
    quick = RegistryDump("apnic", _ripe_split(tmp_path / "dump", 3), "1", "2026-12-07")

    def feed() -> None:
        with pipe.open("wb") as fh:
            fh.write(b"inetnum: 10.9.0.0 - 10.9.0.255\nnetname: SLOW\n")

    order = []
    async with asyncio.timeout(30):
        stagings = seed.staged_all([slow, quick], None, tmp_path / "cache")
        async for dump, _staged, report in stagings:
            order.append(dump.registry)
            assert isinstance(report, dumps.DumpReport) and report.complete
            if dump is quick:
                await asyncio.to_thread(feed)
    assert order == ["apnic", "ripencc"]


def _lacnic_blocks(path: Path, contacts: list[str]) -> Path:
    """LACNIC's dump of one /24 a contact for each of `contacts`, from 200.0.0.0."""
    out = ["% LACNIC whois database dump", ""]
    for n, contact in enumerate(contacts):
        out += [f"inetnum: 200.0.{n}/24", "status: reallocated", f"owner: Customer {n}",
                f"ownerid: BR-C{n}-LACNIC", "country: BR", f"owner-c: {contact}", f"abuse-c: {contact}",
                "created: 20100101", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress("\r\n".join(out).encode("latin-1")))
    return path


async def test_a_refresh_fills_again_a_block_whose_dump_names_another_abuse_contact(tmp_path: Path):
    """A LACNIC customer's block names its ISP's contact; the ISP replacing that contact (a new
    handle) changes nothing else of the block: the refresh must not keep the address the old contact
    gave (it did: the dump's records compared equal, the handle being kept only while staged)."""
    old_path = _lacnic_blocks(tmp_path / "old" / "lacnic.db.gz", ["ISP1", "ISP1", "OWN7"])
    old = RegistryDump("lacnic", [old_path], None, "2026-12-06")
    lines = []
    for record in dumps.read_registry("lacnic", old.paths, None, "2026-12-06")[1]:
        dumped, contact = replace(record, raw=None), str(dumps.unresolved_abuse(record))
        filled = seed.filled_by_contact(dumped, [f"noc@{contact}.example"], contact)
        lines += [dumped.to_json(), filled.to_json()]
    prev = Previous.of_lines(lines, tmp_path)
    new_path = _lacnic_blocks(tmp_path / "new" / "lacnic.db.gz", ["ISP1G1", "ISP1G1", "OWN7"])
    out = tmp_path / "new.jsonl"
    job = LocalCrawl(["200.0.0.0/16"], out, Bootstrap((), (), {}), {}, CrawlSettings(fill_redacted=True))
    refresh, sink = Refresh(job, tmp_path / "old.jsonl"), FileSink(out)
    try:
        dumped = await refresh._from_dumps([RegistryDump("lacnic", [new_path], None, "2026-12-07")], prev,
                                           Scope.of([(0, (1 << 32) - 1)]), sink)
    finally:
        sink.close()
    assert dumped == {"lacnic"}
    assert (refresh.counts["lacnic_changed"], refresh.counts["lacnic_unchanged"]) == (2, 1)
    assert sorted(dumps.unresolved_abuse(r) or "" for r in refresh.recheck) == ["ISP1G1", "ISP1G1"]
    kept = [r for r in map(NetworkRecord.from_own_json, out.read_text().splitlines()) if r.filled]
    assert [(r.start_address, r.abuse_emails) for r in kept] == [("200.0.2.0", ["noc@OWN7.example"])]
