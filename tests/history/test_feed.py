"""The change feed: `whoiscrawl changes --since` lists, a JSON line each, exactly the changes made."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from history_support import Days
from typer.testing import CliRunner

from whoiscrawl.cli import app
from whoiscrawl.history.feed import generation_on_topic, messages
from whoiscrawl.history.store import add

KIND_OF = {"holder": "transferred", "registry": "transferred", "country": "changed", "abuse": "changed",
           "removed": "removed", "added": "added"}


def _week(tmp_path: Path) -> tuple[Days, Path, list[Counter[str]]]:
    """Four days; what the generator changed each day (after the first), by the feed's kinds."""
    days, store, made = Days(tmp_path, blocks=600, rate=0.03), tmp_path / "store", []
    for n in range(4):
        if n:
            counts: Counter[str] = Counter()
            for what, k in days.change().items():
                counts[KIND_OF[what]] += k
            made.append(counts)
        add(store, days.write_day(), days.dates[-1])
    return days, store, made


def _changes(*args: str) -> list[dict]:
    result = CliRunner().invoke(app, ["changes", *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_the_feed_lists_exactly_each_days_changes(tmp_path: Path):
    days, store, made = _week(tmp_path)
    lines = _changes("--since", str(days.dates[0]), "--history", str(store))
    for day, want in zip(days.dates[1:], made, strict=True):
        assert Counter(d["kind"] for d in lines if d["date"] == str(day)) == want, day
    moved = [d for d in lines if d["kind"] == "transferred" and "registry" in d["fields"]]
    assert moved and all(d["from"]["registry"] == d["fields"]["registry"]["old"] != d["to"]["registry"]
                         for d in moved)
    changed = [d for d in lines if d["kind"] == "changed"]
    assert all(set(d["fields"]) <= {"country", "abuse_emails"} for d in changed)
    first = lines[0]
    assert list(first)[:5] == ["date", "kind", "registry", "range", "start_address"]
    assert first["range"] == f"{first['start_address']} - {first['end_address']}"
    later = _changes("--since", str(days.dates[1]), "--until", str(days.dates[2]), "--history", str(store))
    assert {d["date"] for d in later} == {str(days.dates[2])}
    assert _changes("--since", str(days.dates[-1]), "--history", str(store)) == []


def test_a_date_before_the_history_is_refused(tmp_path: Path):
    _, store, _ = _week(tmp_path)
    result = CliRunner().invoke(app, ["changes", "--since", "2026-11-01", "--history", str(store)])
    assert result.exit_code == 2
    assert "--since 2026-11-01 is before the first kept generation" in result.output


def test_map_diff_draws_a_days_changes_from_the_history(tmp_path: Path):
    days, store, _ = _week(tmp_path)
    out = tmp_path / "day.png"
    result = CliRunner().invoke(app, ["map", "--diff", "--history", str(store), "--at", str(days.dates[2]),
                                      "--size", "512", "--out", str(out)])
    assert result.exit_code == 0, result.output
    legend = json.loads(result.output)["legend"]
    assert all(legend.get(kind, 0) > 0 for kind in ("added", "removed", "changed", "transferred")), legend
    first = CliRunner().invoke(app, ["map", "--diff", "--history", str(store), "--at", str(days.dates[0])])
    assert first.exit_code == 2 and "no day before it" in first.output


def _line(generation: int, kind: str) -> dict:
    return {"date": "2026-12-07", "kind": kind, "generation": generation}


@pytest.mark.parametrize(("last", "generation", "on_topic"), [
    (None, 2, False),  # an empty topic
    ({"date": "2026-12-07", "kind": "generation", "changes": 3}, 2, False),  # a store's, not a fleet's
    (_line(1, "generation"), 2, False),  # the one before is whole: this one is not there yet
    (_line(2, "transferred"), 2, False),  # cut short (a publisher died): published again whole
    (_line(2, "generation"), 2, True),  # whole: not again
    (_line(3, "added"), 2, True),  # a later one began: this one went before it
    (_line(3, "generation"), 2, True),
])
def test_the_marker_rule_of_a_fleets_generation(last: dict | None, generation: int, on_topic: bool):
    assert generation_on_topic(last, generation) is on_topic


def test_a_generations_messages_end_with_its_marker_and_counts():
    change = {"change": "changed", "registry": "ripencc", "start_address": "193.0.0.0",
              "end_address": "193.0.0.255", "handle": "N", "source": "dump",
              "fields": {"country": {"old": "NL", "new": "DE"}}}
    counts: Counter[str] = Counter()
    head = {"date": "2026-12-07", "generation": 2}
    sent = [json.loads(v) for _, v in messages(head, [change, change], counts)]
    assert [(d["kind"], d.get("n"), d["generation"]) for d in sent] == [
        ("changed", 0, 2), ("changed", 1, 2), ("generation", None, 2)]
    assert sent[0]["range"] == "193.0.0.0 - 193.0.0.255" and sent[0]["fields"]["country"]["new"] == "DE"
    assert sent[-1] == {"date": "2026-12-07", "kind": "generation", "generation": 2, "changes": 2,
                        "counts": {"added": 0, "removed": 0, "changed": 2, "transferred": 0}}
