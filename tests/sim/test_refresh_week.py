"""A week of the simulator's changing world, refreshed a day at a time and kept as history: each
day's map is that day's truth, each day's change feed is the truth's difference, and `lookup --at`
answers every past day as that day's truth did (issue 24's first "must show")."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from whoiscrawl.cli import app
from whoiscrawl.history import feed, store
from whoiscrawl.ipv4 import ip_int, ip_str
from whoiscrawl.refresh import Refresh
from whoiscrawl.results.diff import KINDS, classify, facts
from whoiscrawl.results.source import ResultSet
from whoiscrawl.sim.model import World
from whoiscrawl.sim.score import truth_record
from whoiscrawl.sim.server import Simulator

from .conftest import StartSim
from .test_refresh import hidden, job

DAYS = 7
FIRST = date(2026, 12, 1)  # the history's date of the first crawl (the simulator's own dates aside)
Block = tuple[str, int, int]  # registry, first, last


def truth_map(sim: Simulator, path: Path) -> tuple[Path, set[Block]]:
    """The day's truth as a results file, every network the registries hold in the scope (free
    space as their placeholders), and the blocks some lookup answers (the scorer's truth: a parent
    its children cover whole is held, and shown by a listing or a dump, but answers no lookup)."""
    w, scen = sim.world, sim.scenario
    truth = scen.truth()
    held = [i for i in range(len(w.start)) if i in truth or (not w.is_placeholder(i) and any(
        w.start[i] <= b and a <= w.end[i] for a, b in scen.intervals))]
    docs = sorted((truth_record(w, i, truth.get(i, 0)) for i in held),
                  key=lambda d: (ip_int(d["start_address"]), -ip_int(d["end_address"])))
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path, {(w.registry(i), w.start[i], w.end[i]) for i in truth}


def blocks(path: Path) -> dict[Block, dict[str, Any]]:
    """A map's latest record of each block, as the change classifier reads it."""
    return {(d["registry"], d["_first"], d["_last"]): d for d in ResultSet(path).latest()}


def said(doc: dict[str, Any], free: bool) -> dict[str, Any]:
    """What the map and the truth must agree on: the classifier's facts; of free space (a placeholder
    in the truth, the statistics' record or the placeholder's answer in the map) who holds it."""
    return {"registry": doc["registry"], "holder": facts(doc)["holder"]} if free else facts(doc)


def outside(unseen: list[tuple[int, int]], first: int, last: int) -> bool:
    return not any(a <= last and first <= b for a, b in unseen)


def assert_map_is_truth(out: Path, truth: Path, answered: set[Block], unseen: list[tuple[int, int]],
                        day: int) -> None:
    """The refreshed map holds every block a lookup answers with the truth's facts, and no block
    the registries do not hold; but where an ARIN change no file shows was made (docs/refresh.md,
    "What no file tells")."""
    mine, theirs = blocks(out), blocks(truth)

    def right(k: Block) -> bool:
        if k not in answered:
            return k in theirs or k not in mine  # held (a dump's parent its children cover whole)
        free = theirs[k]["placeholder"]
        return k in mine and said(mine[k], free) == said(theirs[k], free)

    wrong = sorted(k for k in mine.keys() | theirs.keys() if outside(unseen, k[1], k[2]) and not right(k))
    assert not wrong, (day, len(wrong), [(k[0], ip_str(k[1]), ip_str(k[2]), mine.get(k), theirs.get(k))
                                         for k in wrong[:3]])


def kinds_of(changes: list[dict[str, Any]], unseen: list[tuple[int, int]],
             known: set[Block]) -> Counter[tuple[str, ...]]:
    """Each change of a block `known` and outside the unseen spans, as (kind, registry, range,
    fields changed)."""
    out: Counter[tuple[str, ...]] = Counter()
    for c in changes:
        first, last = ip_int(c["start_address"]), ip_int(c["end_address"])
        was = c.get("from", {}).get("registry", c["registry"])
        if outside(unseen, first, last) and {(c["registry"], first, last), (was, first, last)} & known:
            out[c.get("change") or c["kind"], c["registry"], c["start_address"], c["end_address"],
                *sorted(c.get("fields", {}))] += 1
    return out


def truth_difference(before: Path, after: Path) -> list[dict[str, Any]]:
    return [c.to_dict() for c in classify(ResultSet(before, seekable=True).nested(),
                                          ResultSet(after, seekable=True).nested())]


def lookups(history: Path, day: date, addresses: Path) -> list[dict[str, Any]]:
    result = CliRunner().invoke(app, ["lookup", "--history", str(history), "--at", str(day),
                                      "--from", str(addresses), "--json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def assert_lookup_at_is_each_days_truth(history: Path, worlds: list[World], truths: list[Path],
                                        unseen: list[list[tuple[int, int]]], folder: Path) -> None:
    """`lookup --at` each day, at the first address of every block any day held, answers with the
    most specific block that day's world holds there (where every file told)."""
    starts = sorted({b[1] for t in truths for b in blocks(t)})
    addresses = folder / "addresses.txt"
    addresses.write_text("".join(ip_str(a) + "\n" for a in starts))
    for day, (w, hid) in enumerate(zip(worlds, unseen, strict=True)):
        answers = lookups(history, FIRST + timedelta(days=day), addresses)
        assert len(answers) == len(starts)
        for at, got in zip(starts, answers, strict=True):
            i = w.lookup(at)
            if i < 0 or not outside(hid, w.start[i], w.end[i]):
                continue
            want = truth_record(w, i, 0)
            assert got.get("found") and (got["registry"], got["start_address"], got["end_address"]) == (
                want["registry"], want["start_address"], want["end_address"]), (day, ip_str(at), got)
            free = want["placeholder"]
            assert said(got, free) == said(want, free), (day, ip_str(at))


@pytest.mark.slow
@pytest.mark.timeout(1500)  # ~7 min alone; 714 s on a machine shared with five helpers (2026-12-07)
async def test_a_week_refreshed_is_each_days_truth_its_feed_and_its_history(
        start_sim: StartSim, tmp_path: Path) -> None:
    sim = await start_sim(time_scale=1000)
    history, previous = tmp_path / "history", tmp_path / "day0.jsonl"
    assert (await (await job(sim, previous)).run())["complete"]
    truth, answered = truth_map(sim, tmp_path / "truth0.jsonl")
    truths, worlds, seen = [truth], [sim.world], [answered]
    unseen: list[list[tuple[int, int]]] = [[]]  # spans of ARIN changes no file showed, by day
    assert_map_is_truth(previous, truth, answered, [], 0)
    scope = list(sim.scenario.ranges)
    store.add(history, previous, FIRST, scope)
    for day in range(1, DAYS + 1):
        sim.advance(1)
        unseen.append(unseen[-1] + hidden(sim.scenario.changes()))
        truth, answered = truth_map(sim, tmp_path / f"truth{day}.jsonl")
        truths.append(truth)
        worlds.append(sim.world)
        seen.append(answered)
        out = tmp_path / f"day{day}.jsonl"
        summary = await Refresh(await job(sim, out), previous).run()
        assert summary["complete"]
        assert_map_is_truth(out, truth, answered, unseen[day], day)
        gen = store.add(history, out, FIRST + timedelta(days=day), scope)
        assert gen.counts == {k: summary["changes"][k] for k in KINDS}  # one classifier, one change set
        truth_changes = truth_difference(truths[day - 1], truth)
        assert len(truth_changes) >= 0.01 * len(seen[day - 1]), day  # at least 1% of the networks a day
        fed = list(feed.feed(store.Store.open(history), FIRST + timedelta(days=day - 1),
                             FIRST + timedelta(days=day)))
        # compared: blocks a lookup answers each day they are held (one that comes to answer none,
        # or starts to, is a change of the world the map need not show; the map checks hold it)
        before, now = blocks(truths[day - 1]).keys(), blocks(truth).keys()
        known = {k for k in before | now if (k in seen[day - 1] or k not in before)
                 and (k in answered or k not in now)}
        want, got = kinds_of(truth_changes, unseen[day], known), kinds_of(fed, unseen[day], known)
        assert got == want, (day, sorted((got - want).elements())[:5], sorted((want - got).elements())[:5])
        counted = Counter(c[0] for c in got.elements())
        assert all(counted[k] for k in KINDS), (day, counted)  # every kind each day, each counted
        previous = out
    assert_lookup_at_is_each_days_truth(history, worlds, truths, unseen, tmp_path)
    kept = store.Store.open(history)
    assert len(kept.generations) == DAYS + 1
    one = (history / kept.generations[0].file).stat().st_size
    print(json.dumps({"generations": len(kept.generations), "first_bytes": one, "all_bytes": kept.bytes(),
                      "ratio": round(kept.bytes() / one, 3)}))
    assert kept.bytes() <= 1.5 * one
