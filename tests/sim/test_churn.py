"""The simulated world changes by day: every kind of change, deterministic, laminar, at the rates set."""

from __future__ import annotations

import datetime
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from whoiscrawl.ipv4 import ip_str
from whoiscrawl.sim import churn, render, scenarios
from whoiscrawl.sim import stats as sim_stats
from whoiscrawl.sim.model import World
from whoiscrawl.sim.scenarios import Scenario
from whoiscrawl.sources import stats
from whoiscrawl.sources.stats import read_path

from .conftest import StartSim


def facts(s: Scenario) -> dict[tuple[str, int, int], tuple[str, str, str | None]]:
    """Each findable network of a day: (registry, first, last) -> (holder, abuse e-mail, country)."""
    w = s.world()
    out = {}
    for i in s.truth():
        _h, holder, _a, abuse = render.contacts(w, i)
        out[w.registry(i), w.start[i], w.end[i]] = (holder, abuse, render.country(w, i))
    return out


def test_each_day_changes_over_one_percent_of_the_networks_with_every_kind(quick: Scenario) -> None:
    for day in (1, 2):
        before, after = facts(quick.on_day(day - 1)), facts(quick.on_day(day))
        both = before.keys() & after.keys()
        differ = len(before.keys() ^ after.keys()) + sum(before[k] != after[k] for k in both)
        assert differ / len(before) >= 0.01, (day, differ, len(before))
        kinds = Counter(c.kind for c in quick.on_day(day).changes())
        assert set(kinds) == set(churn.KINDS), kinds


def test_every_network_that_changed_lies_in_a_change_of_the_day(quick: Scenario) -> None:
    for day in (1, 2):
        before, after = facts(quick.on_day(day - 1)), facts(quick.on_day(day))
        spans = [(c.first, c.last) for c in quick.on_day(day).changes()]
        both = before.keys() & after.keys()
        differ = (before.keys() ^ after.keys()) | {k for k in both if before[k] != after[k]}
        for _registry, first, last in differ:
            assert any(a <= last and first <= b for a, b in spans), (day, ip_str(first), ip_str(last))


def test_a_day_is_the_same_every_time_it_is_made(quick: Scenario) -> None:
    base = quick.world()
    one, log_one = churn.advance(base, 1, churn.Churn(), quick.intervals)
    two, log_two = churn.advance(base, 1, churn.Churn(), quick.intervals)
    assert log_one == log_two
    assert (one.start, one.end, one.org, one.reg) == (two.start, two.end, two.org, two.reg)
    assert (one.names, one.abuse) == (two.names, two.abuse)
    assert len(base) == len(quick.on_day(0).world())  # the day before is left as it was


def test_the_changed_world_stays_a_hierarchy(quick: Scenario) -> None:
    w = quick.on_day(3).world()
    _laminar(w)


def _laminar(w: World) -> None:
    """Every object inside its parent one level deeper, siblings apart, the index answering each."""
    last_child_end: dict[int, int] = {}
    for i in range(len(w)):
        p = w.parent[i]
        if p >= 0:
            assert w.start[p] <= w.start[i] and w.end[i] <= w.end[p] and w.depth[i] == w.depth[p] + 1, i
            assert w.start[i] > last_child_end.get(p, -1), (ip_str(w.start[i]), "overlaps a sibling")
            last_child_end[p] = w.end[i]
        assert w.lookup(w.start[i]) >= i or w.nchildren[i], i


def test_the_statistics_of_a_day_carry_its_serial_date_and_moved_delegations(
        quick: Scenario, tmp_path: Path) -> None:
    day = quick.on_day(2)
    moved = [c for c in day.changes() + quick.on_day(1).changes() if c.kind == "moved"]
    assert moved
    serials: dict[tuple[str, ...] | tuple[str, int] | tuple[str, int, str], str] = {}
    for d in (0, 2):
        for registry in ("ripencc", "arin", "apnic"):
            path = tmp_path / f"{registry}-{d}"
            path.write_text("\n".join(sim_stats.lines(registry, 0, quick.on_day(d).world(), d)) + "\n")
            header, rows = read_path(path)  # the crawler's own parser takes it
            serials[registry, d] = header.serial
            serials[registry, d, "end"] = header.end_date
            if d == 2:
                starts = {r.first for r in rows}
                assert all(c.first in starts for c in moved if c.registry == registry)
    assert int(serials["ripencc", 2]) == int(serials["ripencc", 0]) + 2 * 86_400  # unix seconds
    assert int(serials["arin", 2]) == int(serials["arin", 0]) + 2 * 86_400_000  # milliseconds
    for what in ("serial", "end"):  # dates (APNIC's serial the day after its end date, as its files have it)
        key: tuple[str, ...] = ("apnic",) if what == "serial" else ("apnic", "end")
        was = serials[(key[0], 0, *key[1:])]
        now = serials[(key[0], 2, *key[1:])]
        later = datetime.datetime.strptime(was, "%Y%m%d") + datetime.timedelta(days=2)
        assert now == later.strftime("%Y%m%d")


def test_churn_rates_parse_and_refuse_what_is_not_one() -> None:
    assert churn.Churn.parse("added=0.01").added == 0.01
    assert abs(sum(vars(churn.Churn.parse("0.05")).values()) - 0.05) < 1e-9
    with pytest.raises(ValueError, match="--churn"):
        churn.Churn.parse("sideways=1")


async def test_the_simulator_advances_and_answers_as_the_new_day(start_sim: StartSim) -> None:
    sim = await start_sim(latency=False, limits=False)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{sim.root}/sim/advance?days=1") as resp:
            doc = await resp.json()
        assert doc["day"] == 1 and doc["changes"] == [c.to_dict() for c in sim.scenario.changes()]
        renamed = next(c for c in sim.scenario.changes() if c.kind == "renamed")
        w = sim.world  # an address the renamed network answers itself (not a child of it)
        at = next(a for a, _b, o in w.segments(renamed.first, renamed.last)
                  if (w.start[o], w.end[o]) == (renamed.first, renamed.last))
        async with http.get(f"{sim.base_url(renamed.registry)}ip/{ip_str(at)}") as resp:
            assert renamed.detail in await resp.text()
        async with http.post(f"{sim.root}/sim/advance?days=-1") as resp:
            assert resp.status == 400
    assert scenarios.get("quick", day=1).world() is sim.world


def test_the_statistics_parser_sees_a_moved_delegations_new_registry(quick: Scenario, tmp_path: Path) -> None:
    moved = next(c for c in quick.on_day(1).changes() if c.kind == "moved")
    was = moved.detail.removeprefix("from ")
    for registry, present in ((moved.registry, True), (was, False)):
        path = tmp_path / registry
        path.write_text("\n".join(sim_stats.lines(registry, 0, quick.on_day(1).world(), 1)) + "\n")
        rows = stats.read_path(path)[1]
        assert any(r.first == moved.first for r in rows) is present, (registry, ip_str(moved.first))
