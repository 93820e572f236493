"""Refresh by difference against the simulator's changing world: each day's refreshed map is that
day's truth wherever the files tell, for a small share of the first crawl's requests; bad input
is refused before anything is written."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import re
from pathlib import Path

import pytest

from whoiscrawl.ipv4 import ip_int, ip_str
from whoiscrawl.local import LocalCrawl, Seeding
from whoiscrawl.rates import Limit
from whoiscrawl.records import NetworkRecord
from whoiscrawl.refresh import Refresh, RefreshError, change_set_path
from whoiscrawl.rirs import BY_ID, REGISTRIES
from whoiscrawl.settings import CrawlSettings
from whoiscrawl.sim.churn import Change
from whoiscrawl.sim.scenarios import Scenario
from whoiscrawl.sim.score import score, truth_records
from whoiscrawl.sim.server import Simulator
from whoiscrawl.sources import manifest
from whoiscrawl.sources.difference import PROVENANCE
from whoiscrawl.sources.dumps import UNRESOLVED
from whoiscrawl.sources.stats import read_path
from whoiscrawl.space import fetch_bootstrap

from .conftest import StartSim
from .test_sources_crawl import many_inetnums, publish
from .test_sources_crawl import mirror as mirror  # a fixture

DUMPED = ("ripencc", "apnic", "lacnic", "afrinic")  # registries whose dumps tell every change
FILES_SHOW_AT_ARIN = ("transferred", "moved")  # ARIN's changes its statistics show (it has no dump)


async def job(sim: Simulator, out: Path, ranges: list[str] | None = None) -> LocalCrawl:
    """A crawl (or refresh) of the simulator's scenario from its published files, as the demo runs it."""
    info = sim.info()
    limits = {r: Limit(float(v["rate_per_s"]), v.get("max_connections")) for r, v in info["limits"].items()}
    bootstrap = await fetch_bootstrap(sim.bootstrap_url)
    settings = CrawlSettings(whois_servers=dict.fromkeys(REGISTRIES, info["whois"]),
                             files_base=sim.files_base, sources=frozenset({"stats", "dumps", "live"}),
                             accept_dump_terms=frozenset(REGISTRIES), verify=0.001, fill_redacted=True)
    return LocalCrawl(ranges or list(sim.scenario.ranges), out, bootstrap, limits, settings)


def requests(sim: Simulator) -> int:
    """Requests the registries were sent so far (RDAP, WHOIS, listings; not file downloads)."""
    sim.log.flush()
    return sum(1 for line in sim.log.path.read_text().splitlines() if json.loads(line)["protocol"] != "file")


def hidden(changes: list[Change]) -> list[tuple[int, int]]:
    """Spans of ARIN changes no published file shows (ARIN has no dump; its statistics show only
    a delegation's transfer)."""
    return [(c.first, c.last) for c in changes if c.registry == "arin" and c.kind not in FILES_SHOW_AT_ARIN]


@pytest.mark.slow
async def test_each_days_refresh_is_that_days_truth_for_a_few_percent_of_the_requests(
        start_sim: StartSim, tmp_path: Path) -> None:
    sim = await start_sim(time_scale=100)
    previous = tmp_path / "day0.jsonl"
    first = await (await job(sim, previous)).run()
    assert first["complete"]
    first_requests, unseen = requests(sim), []
    assert score(sim.scenario, previous)["recall"] == 1.0
    for day in (1, 2, 3):
        sim.advance(1)
        unseen += hidden(sim.scenario.changes())
        if day == 1:
            resumed = await _interrupted_and_resumed(sim, previous, tmp_path / "day1-resumed.jsonl")
        before, out = requests(sim), tmp_path / f"day{day}.jsonl"
        summary = await Refresh(await job(sim, out), previous).run()
        cost = requests(sim) - before
        assert cost <= 0.1 * first_requests, (day, cost, first_requests)
        figures = score(sim.scenario, out)
        for registry in DUMPED:  # what the dumps tell is that day's truth
            assert figures["recall_by_registry"][registry]["recall"] == 1.0, (day, registry)
            assert figures["field_accuracy"][registry]["holder"] == 1.0, (day, registry)
            assert figures["field_accuracy"][registry]["country"] == 1.0, (day, registry)
        _arin_differs_only_where_no_file_tells(sim, out, unseen)
        if day == 1:  # a refresh interrupted in its walk and resumed ends with the same map and feed
            assert _map(resumed) == _map(out)
            assert sorted(change_set_path(resumed).read_text().splitlines()) == sorted(
                change_set_path(out).read_text().splitlines())
        assert not [line for line in out.read_text().splitlines()  # the fill's handles stay staged
                    if UNRESOLVED in (json.loads(line).get("raw") or {})]
        counted = sum(summary["changes"][kind] for kind in ("added", "removed", "changed", "transferred"))
        assert counted == len(change_set_path(out).read_text().splitlines()) > 0
        previous = out


async def _interrupted_and_resumed(sim: Simulator, previous: Path, out: Path) -> Path:
    """A refresh stopped (as Ctrl-C stops it) once its walk of the changed delegations wrote its
    first record, then resumed; the map it ends with."""
    stopped = await job(sim, out)
    walk = out.with_name(out.name + ".walk.jsonl")

    async def stop_in_the_walk() -> None:
        while not (walk.exists() and walk.stat().st_size):
            await asyncio.sleep(0)
        stopped.stopping.set()

    stopper = asyncio.create_task(stop_in_the_walk())
    first = await Refresh(stopped, previous).run()
    await stopper
    assert not first["complete"] and not manifest.path_of(out).exists()
    again = await job(sim, out)
    again.resume = True
    assert (await Refresh(again, previous).run())["complete"]
    return out


def _map(path: Path) -> dict[tuple[str, str, str], dict[str, object]]:
    """A map's latest record of each block, without where and when it was read."""
    latest = {}
    for line in path.read_text().splitlines():
        doc = json.loads(line)
        latest[doc["registry"], doc["start_address"], doc["end_address"]] = {
            k: v for k, v in doc.items() if k not in PROVENANCE}
        for filled in doc.get("filled", {}).values():  # when a field was filled is provenance too
            filled.pop("observed_at")
    return latest


def _arin_differs_only_where_no_file_tells(sim: Simulator, out: Path, unseen: list[tuple[int, int]]) -> None:
    """Every ARIN network of the truth the map lacks, or holds with another holder or abuse
    address, lies where an ARIN change no file shows was made (so a fresh crawl alone would see it)."""
    found = {}
    for line in out.read_text().splitlines():
        doc = json.loads(line)
        found[doc["registry"], ip_int(doc["start_address"]), ip_int(doc["end_address"])] = doc
    for rec in truth_records(sim.scenario):
        if rec["registry"] != "arin":
            continue
        first, last = ip_int(rec["start_address"]), ip_int(rec["end_address"])
        doc = found.get(("arin", first, last))
        if doc is not None and doc["registrant"] == rec["registrant"]:
            continue
        assert any(a <= last and first <= b for a, b in unseen), (rec["start_address"], rec["end_address"])


async def previous_map(maps: Path, scope: list[str], serials: dict[str, dict[str, str]]) -> Path:
    """A previous map of one record, with its manifest (what a crawl beside it was made from)."""
    maps.mkdir(exist_ok=True)
    path = maps / "previous.jsonl"
    path.write_text(json.dumps({"schema": 1, "registry": "ripencc", "handle": "193.0.0.0 - 193.0.7.255",
                                "start_address": "193.0.0.0", "end_address": "193.0.7.255",
                                "cidrs": ["193.0.0.0/21"]}) + "\n")
    manifest.Manifest(scope=scope, serials=serials).write(path)
    return path


def untouched(previous: Path, before: bytes, out: Path) -> None:
    """The previous map as it was, and nothing else beside it: no new map, no downloads."""
    assert previous.read_bytes() == before and not out.exists()
    beside = sorted(p.name for p in previous.parent.iterdir())
    assert beside == [previous.name, manifest.path_of(previous).name]


async def test_a_refresh_whose_files_went_backwards_is_refused_and_writes_nothing(
        start_sim: StartSim, tmp_path: Path) -> None:
    sim = await start_sim(latency=False, limits=False)
    new = await job(sim, tmp_path / "maps" / "new.jsonl", ["193.0.0.0/16"])
    serial = sim.files.path(sim.files.items["ftp.ripe.net/ripe/dbase/RIPE.CURRENTSERIAL"]).read_text()
    ahead = str(int(serial) + 1)
    previous = await previous_map(tmp_path / "maps", ["193.0.0.0/16"], {"ripencc": {"dump": ahead}})
    before = previous.read_bytes()
    refused = f"ripencc dump serial {int(serial)} is older than the previous map's {ahead}: the files went"
    with pytest.raises(RefreshError, match=refused):
        await Refresh(new, previous).run()
    untouched(previous, before, new.out)


async def test_a_refresh_of_another_scope_is_refused_and_writes_nothing(
        start_sim: StartSim, tmp_path: Path) -> None:
    sim = await start_sim(latency=False, limits=False)
    new = await job(sim, tmp_path / "maps" / "new.jsonl", ["193.0.0.0/16"])
    previous = await previous_map(tmp_path / "maps", ["193.0.0.0/15"], {})
    before = previous.read_bytes()
    with pytest.raises(RefreshError, match=re.escape("maps 193.0.0.0/15, not 193.0.0.0/16")):
        await Refresh(new, previous).run()
    untouched(previous, before, new.out)
    new.out = previous
    with pytest.raises(RefreshError, match="is the map being refreshed"):
        await Refresh(new, previous).run()
    new.out = tmp_path / "maps" / "unfinished.jsonl"
    new.out.write_text("{}\n")
    with pytest.raises(RefreshError, match="holds an unfinished refresh: add --resume to finish it"):
        await Refresh(new, previous).run()
    new.out.unlink()
    manifest.path_of(previous).unlink()
    new.out = tmp_path / "maps" / "new.jsonl"
    with pytest.raises(RefreshError, match=re.escape("has no previous.jsonl.map.json beside it")):
        await Refresh(new, previous).run()


async def test_a_registry_whose_new_statistics_are_unusable_keeps_its_networks(
        start_sim: StartSim, tmp_path: Path) -> None:
    sim = await start_sim(latency=False, limits=False, faults={"files": {"arin": ["record_count"]}})
    w, at = sim.world, ip_int("24.0.0.0")
    kept = w.lookup(at)
    while w.parent[kept] >= 0:  # the delegation itself
        kept = w.parent[kept]
    previous = tmp_path / "maps" / "previous.jsonl"
    previous.parent.mkdir()
    record = NetworkRecord(registry="arin", handle=w.handle(kept), start_address=ip_str(w.start[kept]),
                           end_address=ip_str(w.end[kept]), cidrs=["24.0.0.0/12"],
                           registrant="Kept From Before")
    previous.write_bytes(record.to_json() + b"\n")
    sound = sim.files.sound(sim.files.items["ftp.arin.net/pub/stats/arin/delegated-arin-extended-latest"])
    rows = [manifest.row_of(d) for d in read_path(sound)[1]
            if d.first <= w.end[kept] and w.start[kept] <= d.last]
    manifest.Manifest(scope=["24.0.0.0/16"], rows=rows).write(previous)  # as the crawl before read them
    new = await job(sim, tmp_path / "maps" / "new.jsonl", ["24.0.0.0/16"])
    new.settings = dataclasses.replace(new.settings, verify=0.0)
    summary = await Refresh(new, previous).run()
    assert any("arin statistics not used" in note for note in summary["notes"])
    assert summary["walked"] == [] and summary["counts"]["arin_kept"] == 1
    written = [json.loads(line) for line in new.out.read_text().splitlines()]
    assert [r["registrant"] for r in written if r["registry"] == "arin"] == ["Kept From Before"]


async def test_a_refresh_whose_sources_leave_out_the_dumps_reads_none(
        start_sim: StartSim, tmp_path: Path) -> None:
    # `--sources stats,live` (the options are the crawl's, docs/refresh.md): every dump was read
    # whole all the same, and a map of the statistics and live answers became one of the dumps (the
    # previous RIPE NCC network compared with RIPE NCC's dump), at most of the refresh's time.
    sim = await start_sim(latency=False, limits=False)
    kept = ("ripencc", "193.0.0.0", "193.0.7.255")
    previous = tmp_path / "maps" / "previous.jsonl"
    previous.parent.mkdir()
    record = NetworkRecord(registry="ripencc", handle="193.0.0.0 - 193.0.7.255", start_address=kept[1],
                           end_address=kept[2], cidrs=["193.0.0.0/21"])
    previous.write_bytes(record.to_json() + b"\n")
    sound = sim.files.sound(sim.files.items[BY_ID["ripencc"].stats_url.split("://", 1)[1]])
    first, last = ip_int(kept[1]), ip_int(kept[2])
    rows = [manifest.row_of(d) for d in read_path(sound)[1] if d.first <= last and first <= d.last]
    manifest.Manifest(scope=["193.0.0.0/21"], rows=rows).write(previous)  # as the crawl before read them
    new = await job(sim, tmp_path / "maps" / "new.jsonl", ["193.0.0.0/21"])
    new.settings = dataclasses.replace(new.settings, sources=frozenset({"stats", "live"}), verify=0.0)
    summary = await Refresh(new, previous).run()
    assert summary["complete"] and summary["walked"] == [] and summary["counts"]["ripencc_kept"] == 1
    assert set(_map(new.out)) == {kept}
    sim.log.flush()
    dumps = {url.split("://", 1)[1] for r in REGISTRIES for url in BY_ID[r].dump_urls}
    fetched = [json.loads(line)["address"] for line in sim.log.path.read_text().splitlines()]
    assert not [path for path in fetched if any(path.endswith(d) for d in dumps)]


async def test_a_refresh_stopped_while_reading_a_dump_stops_there_and_resumes_to_the_same_map(
        start_sim: StartSim, tmp_path: Path, mirror: tuple[Path, str]) -> None:
    # Ctrl-C (the refresh's task cancelled) once it has taken the first of a dump's networks: it
    # stops within `Seeding.TURN` of them, not after the dump's last; no manifest is written, and the
    # resume ends with the map of a refresh never stopped
    root, base = mirror
    count = 3 * Seeding.TURN
    publish(root, BY_ID["lacnic"].dump_urls[0], many_inetnums(count))
    sim = await start_sim(latency=False, limits=False)
    previous = tmp_path / "maps" / "previous.jsonl"  # one network, gone from the new dump
    previous.parent.mkdir()
    gone = NetworkRecord(registry="lacnic", handle="186.8.0.0/16", start_address="186.8.0.0",
                         end_address="186.8.255.255", cidrs=["186.8.0.0/16"], registrant="Gone Since")
    previous.write_bytes(gone.to_json() + b"\n")
    manifest.Manifest(scope=["186.0.0.0/12"]).write(previous)

    async def refresh(out: Path, resume: bool = False) -> Refresh:
        new = await job(sim, out, ["186.0.0.0/12"])
        new.settings = dataclasses.replace(new.settings, files_base=base, verify=0.0, fill_redacted=False,
                                           sources=frozenset({"stats", "dumps"}))
        new.resume = resume
        return Refresh(new, previous)

    out = tmp_path / "maps" / "stopped.jsonl"
    stopped = await refresh(out)
    running = asyncio.create_task(stopped.run())
    async with asyncio.timeout(60):
        while not stopped.counts["lacnic_added"] and not running.done():
            await asyncio.sleep(0)  # a turn as soon as the refresh gives one
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert 0 < stopped.counts["lacnic_added"] < count  # the stop took effect part way
    assert gc.get_freeze_count() == 0  # what the refresh kept from the collector's passes is back in them
    assert not manifest.path_of(out).exists()
    resumed = await (await refresh(out, resume=True)).run()
    assert resumed["complete"] and resumed["counts"]["lacnic_added"] == count
    assert resumed["changes"]["added"] == count and resumed["changes"]["removed"] == 1
    whole = tmp_path / "maps" / "whole.jsonl"
    assert (await (await refresh(whole)).run())["complete"]
    assert _map(out) == _map(whole) and len(_map(out)) == count
    assert sorted(change_set_path(out).read_text().splitlines()) == sorted(
        change_set_path(whole).read_text().splitlines())


async def test_a_change_of_a_delegation_in_special_purpose_space_is_seen_on_refresh(
        start_sim: StartSim, tmp_path: Path) -> None:
    # ARIN's AS112 block 192.175.48.0/24, special-purpose yet an `assigned` row of ARIN's statistics,
    # is transferred to another holder on day 1 (its row re-dated). A crawl asks it, but the map's
    # manifest left its row out (its scope was the crawlable space, special-purpose space cut out),
    # so the refresh never compared it and kept the previous holder.
    as112 = Scenario("as112", ["192.175.48.0/24"])  # what the day's changes touch: AS112 alone
    sim = await start_sim(time_scale=100, scenario=as112)
    ranges, block = ["192.175.48.0/22"], ("arin", "192.175.48.0", "192.175.48.255")

    async def stats_live(out: Path) -> LocalCrawl:  # ARIN has no dump: what it shows is its statistics
        crawl = await job(sim, out, ranges)
        crawl.settings = dataclasses.replace(crawl.settings, sources=frozenset({"stats", "live"}))
        return crawl

    previous = tmp_path / "day0.jsonl"
    assert (await (await stats_live(previous)).run())["complete"]
    sim.advance(1)
    assert [(c.kind, ip_str(c.first)) for c in sim.scenario.changes()] == [("transferred", "192.175.48.0")]
    out = tmp_path / "day1.jsonl"
    summary = await Refresh(await stats_live(out), previous).run()
    assert summary["complete"] and summary["counts"]["delegations_changed"] == 2  # its row then and now
    [now] = [r for r in truth_records(sim.scenario) if r["start_address"] == block[1]]
    before, after = _map(previous)[block], _map(out)[block]
    assert before["registrant"] != now["registrant"] == after["registrant"]
    assert summary["changes"]["transferred"] + summary["changes"]["changed"] >= 1
