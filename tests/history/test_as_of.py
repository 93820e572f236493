"""The map as of a date: `lookup --at`, `export --at` and the RDAP mirror's `?at=` answer each past
day as that day's own map does, from the generation current then."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from history_support import Days
from serve_support import get
from typer.testing import CliRunner

from whoiscrawl.cli import app
from whoiscrawl.history.store import Store, add, map_at
from whoiscrawl.results.source import ResultSet
from whoiscrawl.serve.index import load_or_build
from whoiscrawl.serve.server import MapServer, history_as_of

COMPARED = ("found", "holder", "registry", "country", "abuse_emails", "start_address", "end_address")


@pytest.fixture
def week(tmp_path: Path) -> tuple[Days, Path]:
    days = Days(tmp_path, blocks=600, rate=0.03)
    for n in range(4):
        if n:
            days.change()
        add(tmp_path / "store", days.write_day(), days.dates[-1])
    return days, tmp_path / "store"


def _addresses(days: Days, folder: Path) -> Path:
    """The first address of every block any day held (removed ones too)."""
    starts = {d["start_address"] for m in days.maps for d in ResultSet(m).latest()}
    path = folder / "addresses.txt"
    path.write_text("".join(f"{a}\n" for a in sorted(starts)))
    return path


def _lookup(*args: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(app, ["lookup", *args, "--json"])
    assert result.exit_code == 0, result.output
    return [{k: d.get(k) for k in COMPARED} for d in map(json.loads, result.stdout.splitlines())]


def test_lookup_at_answers_each_day_as_that_days_map(week: tuple[Days, Path], tmp_path: Path):
    days, store = week
    addresses = _addresses(days, tmp_path)
    answers = []
    for day, map_file in zip(days.dates, days.maps, strict=True):
        answers.append(_lookup("--history", str(store), "--at", str(day), "--from", str(addresses)))
        assert answers[-1] == _lookup(str(map_file), "--from", str(addresses)), day
    assert len({json.dumps(a) for a in answers}) == len(days.dates)  # the days do differ
    later = _lookup("--history", str(store), "--at", "2027-01-01", "--from", str(addresses))
    assert later == answers[-1]  # after the newest: the newest


def test_export_at_writes_the_map_of_that_day(week: tuple[Days, Path], tmp_path: Path):
    days, store = week
    out = tmp_path / "at.jsonl"
    result = CliRunner().invoke(app, ["export", "--history", str(store), "--at", "2026-12-02",
                                      "--format", "jsonl", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(r["registry"], r["start_address"], r["registrant"]) for r in rows} == {
        (d["registry"], d["start_address"], d["registrant"]) for d in ResultSet(days.maps[1]).latest()}


def test_summary_at_sums_up_the_map_of_that_day(week: tuple[Days, Path]):
    days, store = week
    for day, map_file in zip(days.dates, days.maps, strict=True):
        at = CliRunner().invoke(app, ["summary", "--history", str(store), "--at", str(day), "--json"])
        own = CliRunner().invoke(app, ["summary", str(map_file), "--json"])
        assert at.exit_code == own.exit_code == 0, at.output
        assert json.loads(at.output) == json.loads(own.output), day


@pytest.mark.parametrize(("args", "says"), [
    (["lookup", "--history", "{store}", "--at", "2026-11-30", "90.0.0.1"],
     "2026-11-30 is before the first kept generation"),
    (["lookup", "{map}", "--at", "2026-12-02", "90.0.0.1"], "--at needs --history DIR"),
    (["lookup", "{map}", "90.0.0.1", "--history", "{store}"], "not both"),
    (["lookup", "--history", "{store}", "--at", "yesterday", "90.0.0.1"], "--at 'yesterday' is not a date"),
    (["export", "--history", "{store}", "{map}", "--out", "{map}.csv", "--format", "csv"], "not both"),
    (["export", "--out", "{map}.csv", "--format", "csv"], "give a results file, or --history DIR"),
])
def test_bad_dates_and_arguments_say_what_to_fix(week: tuple[Days, Path], args: list[str], says: str):
    days, store = week
    argv = [a.format(store=store, map=days.maps[0]) for a in args]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2 and says in result.output, result.output


@pytest.fixture
async def mirror(week: tuple[Days, Path]) -> AsyncIterator[str]:
    """The RDAP mirror of the newest generation on 127.0.0.1, answering ?at= from the store."""
    _, store = week
    newest, _ = load_or_build(map_at(Store.open(store), date.max))
    server = TestServer(MapServer(newest, as_of=history_as_of(store)).app(), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/"))
    await server.close()


def _holder(doc: dict[str, Any]) -> str | None:
    for entity in doc.get("entities", []):
        if "registrant" in entity["roles"]:
            return str(entity["vcardArray"][1][1][3])
    return None


async def test_a_mirror_without_history_refuses_at(week: tuple[Days, Path]):
    days, _ = week
    index, _ = load_or_build(days.maps[-1])
    server = TestServer(MapServer(index).app(), host="127.0.0.1")
    await server.start_server()
    try:
        status, doc = await get(f"{server.make_url('/')}ip/90.0.0.1?at=2026-12-01")
    finally:
        await server.close()
    assert status == 400 and "keeps no history" in doc["description"][0]


async def test_the_rdap_mirror_answers_at_a_date(week: tuple[Days, Path], mirror: str):
    days, _ = week
    changed = {}  # a block whose holder each day's map names differently
    maps = [{d["start_address"]: d for d in ResultSet(m).latest()} for m in days.maps]
    for start in maps[0]:
        holders = [m[start]["registrant"] if start in m else None for m in maps]
        if len(set(holders)) > 1 and all(holders):
            changed[start] = holders
    assert changed
    start, holders = next(iter(changed.items()))
    for day, want in zip(days.dates, holders, strict=True):
        status, doc = await get(f"{mirror}ip/{start}?at={day}")
        assert status == 200 and _holder(doc) == want, (day, doc)
        assert any(n["title"] == "As of" and str(day) in n["description"][0] for n in doc["notices"])
    held_by = maps[0][start]["registry"]
    asked = next(r for r in ("arin", "apnic") if r != held_by)
    async with aiohttp.ClientSession() as session, session.get(
            f"{mirror}{asked}/ip/{start}?at={days.dates[0]}", allow_redirects=False) as resp:
        assert resp.status == 301  # to the registry holding it then, still as of that date
        assert resp.headers["Location"].endswith(f"/{held_by}/ip/{start}?at={days.dates[0]}")
    status, doc = await get(f"{mirror}ip/{start}")  # no ?at: the current map
    assert status == 200 and _holder(doc) == holders[-1]
    status, doc = await get(f"{mirror}ips/rirSearch1/rdap-up/{start}%2F24?at={days.dates[0]}")
    a, b, *_ = start.split(".")
    assert status == 200 and doc["startAddress"] == f"{a}.{b}.0.0"  # its /16 parent
    assert doc["notices"][-1]["title"] == "As of"
    for query, code, says in [("at=2026-11-30", 404, "before the first kept generation, 2026-12-01"),
                              ("at=soon", 400, "not a date")]:
        status, doc = await get(f"{mirror}ip/{start}?{query}")
        assert (status, doc["errorCode"]) == (code, code) and says in doc["description"][0], doc
