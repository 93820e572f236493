"""Dated generations: kept as change sets, each rebuilt exactly, cheap on disk, pruned, bad input refused."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from history_support import Days, facts_of

from whoiscrawl.history.store import HistoryError, Store, add, map_at, prune
from whoiscrawl.results.source import ResultSet


@pytest.fixture
def week(tmp_path: Path) -> tuple[Days, Path]:
    """Seven days of a 2,000-block map with 1% changed a day, each day added to a store."""
    days = Days(tmp_path)
    store = tmp_path / "store"
    for n in range(7):
        if n:
            days.change()
        add(store, days.write_day(), days.dates[-1])
    return days, store


def test_each_generation_is_rebuilt_as_its_map_was(week: tuple[Days, Path]):
    days, path = week
    store = Store.open(path)
    assert [g.date for g in store.generations] == [str(d) for d in days.dates]
    assert [g.kind for g in store.generations] == ["full"] + ["changes"] * 6
    for gen, map_file in zip(store.generations, days.maps, strict=True):
        assert facts_of(store.records(gen)) == facts_of(ResultSet(map_file).latest()), gen.date


def test_a_day_counts_each_kind_of_change(tmp_path: Path):
    days = Days(tmp_path)
    add(tmp_path / "s", days.write_day(), days.dates[0])
    made = days.change()
    gen = add(tmp_path / "s", days.write_day(), days.dates[1])
    assert gen.counts == {"added": made["added"], "removed": made["removed"],
                          "changed": made["country"] + made["abuse"],
                          "transferred": made["holder"] + made["registry"]}


def test_seven_generations_take_at_most_one_and_a_half_times_one(week: tuple[Days, Path]):
    days, path = week
    store = Store.open(path)
    one = (path / store.generations[0].file).stat().st_size
    raw = days.maps[0].stat().st_size
    print(json.dumps({"generations": 7, "blocks": store.generations[-1].blocks, "bytes_one": one,
                      "bytes_seven": store.bytes(), "ratio": round(store.bytes() / one, 3),
                      "map_jsonl_bytes": raw}))
    assert store.bytes() <= 1.5 * one


def test_as_of_a_date_is_the_generation_current_then(week: tuple[Days, Path]):
    days, path = week
    store = Store.open(path)
    assert store.at(date(2026, 12, 3)).date == "2026-12-03"
    assert store.at(date(2027, 1, 1)).date == "2026-12-07"  # after the newest: the newest
    rebuilt = map_at(store, date(2026, 12, 4))
    assert facts_of(ResultSet(rebuilt).latest()) == facts_of(ResultSet(days.maps[3]).latest())
    with pytest.raises(HistoryError, match=r"2026-11-30 is before the first kept generation, 2026-12-01"):
        store.at(date(2026, 11, 30))


def test_a_date_going_backwards_or_another_scope_is_refused_and_nothing_written(week: tuple[Days, Path]):
    days, path = week
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    with pytest.raises(HistoryError, match=r"not after the newest generation .2026-12-07.*nothing was"):
        add(path, days.maps[-1], date(2026, 12, 5))
    with pytest.raises(HistoryError, match="not after the newest generation"):
        add(path, days.maps[-1], date(2026, 12, 7))
    with pytest.raises(HistoryError, match=r"another scope.*nothing was written"):
        add(path, days.maps[-1], date(2026, 12, 8), scope=["90.0.0.0/8"])
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before


def test_prune_keeps_the_newest_generations_each_as_it_was(week: tuple[Days, Path]):
    days, path = week
    gone = prune(path, keep=3)
    assert [g.date for g in gone] == [str(d) for d in days.dates[:4]]
    store = Store.open(path)
    assert [(g.date, g.kind) for g in store.generations] == [
        ("2026-12-05", "full"), ("2026-12-06", "changes"), ("2026-12-07", "changes")]
    assert sorted(p.name for p in path.glob("*.gz")) == [g.file for g in store.generations]
    for gen, map_file in zip(store.generations, days.maps[4:], strict=True):
        assert facts_of(store.records(gen)) == facts_of(ResultSet(map_file).latest()), gen.date
    with pytest.raises(HistoryError, match="before the first kept generation"):
        store.at(date(2026, 12, 4))
    with pytest.raises(HistoryError, match="keep at least 1"):
        prune(path, keep=0)


def test_a_damaged_change_set_is_named(week: tuple[Days, Path]):
    _, path = week
    store = Store.open(path)
    damaged = path / store.generations[3].file
    damaged.write_bytes(damaged.read_bytes()[:200])  # cut short
    assert facts_of(store.records(store.generations[2]))  # the generations before it still rebuild
    with pytest.raises(HistoryError, match=rf"{damaged.name} is unreadable .*the store is damaged"):
        list(store.records(store.generations[5]))
