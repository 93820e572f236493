"""The refresh's decision (whoiscrawl/sources/difference.py), one home for the local refresh and the fleet's
load: a dumped network against the previous map (unchanged, changed, added; what was asked live
kept), networks gone from a dump, and the statistics' difference (rows changed, networks kept,
delegations to walk again)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from whoiscrawl.ipv4 import ip_int
from whoiscrawl.records import NetworkRecord
from whoiscrawl.sources import changed
from whoiscrawl.sources.difference import Previous, compare_dumped, removed, stats_difference
from whoiscrawl.sources.manifest import Row
from whoiscrawl.sources.published import RegistryDump

NEW = RegistryDump("lacnic", [], "20261208", "2026-12-08T00:00:00Z")


def _net(third: int, registry: str = "lacnic", source: str = "dump", **fields: object) -> NetworkRecord:
    base = {"registrant": "Holder", "country": "BR", "abuse_emails": ["abuse@example.net"],
            "serial": "20261207", "observed_at": "2026-12-07T00:00:00Z", "crawl": "ns.wc"}
    return NetworkRecord(registry, f"NET-{third}", f"200.0.{third}.0", f"200.0.{third}.255",
                         [f"200.0.{third}.0/24"], source=source, **{**base, **fields})  # type: ignore[arg-type]


def _lines(*records: NetworkRecord) -> list[bytes]:
    return [r.to_json() + b"\n" for r in records]


def _filled(record: NetworkRecord) -> NetworkRecord:
    return replace(record, abuse_emails=["noc@example.net"],
                   filled={"abuse_emails": {"source": "rdap", "observed_at": "x", "entity": "AB1"}})


def test_previous_reads_a_map_from_any_stream_of_lines_the_later_record_of_a_block_winning(tmp_path: Path):
    """One reader for a map's file and a fleet's results topic (`Previous.of_lines`)."""
    dumped, live = _net(1, abuse_emails=[]), _filled(_net(1, abuse_emails=[]))
    lines = _lines(dumped, _net(2), live)
    path = tmp_path / "map.jsonl"
    path.write_bytes(b"".join(lines) + b"\n")
    for prev in (Previous.of_lines(lines), Previous.read(path)):
        key = ("lacnic", ip_int("200.0.1.0"), ip_int("200.0.1.255"))
        assert prev.latest[key].filled is not None  # the fill came after the dumped record
        assert prev.dumped[key].filled is None  # what the dump gave stays what it compares with
        assert prev.reads == {"lacnic": {("20261207", "2026-12-07T00:00:00Z")}}


@pytest.mark.parametrize(("previous", "new", "kind", "kept", "after"), [
    # the same network, read from a newer dump by another crawl (provenance differs): unchanged
    ([_net(1)], _net(1, serial="20261208", crawl="ns.wc.g2"), "unchanged", True, False),
    # unchanged, its abuse address filled live before: the fill is kept, written after it
    ([_net(1, abuse_emails=[]), _filled(_net(1, abuse_emails=[]))],
     _net(1, abuse_emails=[], serial=NEW.serial, observed_at=NEW.observed_at), "unchanged", True, True),
    # holder renamed: changed, nothing of the previous kept
    ([_net(1)], _net(1, registrant="Other"), "changed", False, False),
    # changed after a fill: the fill is not kept (the new record is asked again if it lacks a field)
    ([_net(1, abuse_emails=[]), _filled(_net(1, abuse_emails=[]))], _net(1, abuse_emails=[], country="AR"),
     "changed", False, False),
    # not in the previous map
    ([_net(2)], _net(1), "added", False, False),
    # the previous map held it from a live answer only (not dumped): changed, re-decided by the dump
    ([_net(1, source="rdap")], _net(1), "changed", False, False),
])
def test_a_dumped_network_against_the_previous_map(previous, new, kind, kept, after):
    prev = Previous.of_lines(_lines(*previous))
    compared = compare_dumped(new, prev, NEW)
    assert compared.kind == kind
    assert (compared.kept is not None) == kept
    assert (compared.after is not None) == after
    assert compared.record is new
    if after:
        assert compared.after is not None
        assert compared.after.abuse_emails == ["noc@example.net"]
        assert (compared.after.serial, compared.after.observed_at) == (NEW.serial, NEW.observed_at)


def test_a_network_not_parsed_as_unchanged_is_the_previous_read_dated_to_the_new_one():
    before = _net(1)
    prev = Previous.of_lines(_lines(before))
    compared = compare_dumped(changed.Unchanged(before.first, before.last), prev, NEW)
    assert compared.kind == "unchanged" and compared.after is None
    assert compared.record.registrant == "Holder"
    assert (compared.record.serial, compared.record.observed_at) == (NEW.serial, NEW.observed_at)


def test_networks_a_dump_no_longer_holds_are_removed_but_not_the_statistics_free_space():
    free = _net(9, source="stats")
    prev = Previous.of_lines(_lines(_net(1), _net(2), free, _net(3, registry="ripencc")))
    seen = {("lacnic", _net(1).first, _net(1).last)}
    assert removed(prev, "lacnic", seen) == [("lacnic", _net(2).first, _net(2).last)]


def _row(registry: str, third: int, count: int = 256, date: str = "20200101") -> Row:
    return (registry, ip_int(f"200.0.{third}.0"), count, date, "allocated", "US")


@pytest.mark.parametrize(("old", "now", "changed_rows", "walk"), [
    # nothing changed
    ([_row("arin", 1)], [_row("arin", 1)], set(), []),
    # a row's date changed: the old and new row both differ, the new one is walked
    ([_row("arin", 1)], [_row("arin", 1, date="20261208")],
     {_row("arin", 1), _row("arin", 1, date="20261208")}, ["200.0.1.0/24"]),
    # a delegation returned: nothing to walk, its networks dropped
    ([_row("arin", 1), _row("arin", 2)], [_row("arin", 1)], {_row("arin", 2)}, []),
    # a delegation added
    ([], [_row("arin", 3)], {_row("arin", 3)}, ["200.0.3.0/24"]),
    # a registry read from its dump is not decided here; nor one whose statistics were not read
    ([_row("ripencc", 1), _row("apnic", 2)], [_row("ripencc", 1, date="x")], set(), []),
])
def test_the_statistics_difference(old, now, changed_rows, walk):
    difference = stats_difference(old, now, dumped={"ripencc"}, fresh={"arin", "ripencc"})
    assert difference.changed == changed_rows
    assert difference.walk(["200.0.0.0/16"]) == walk


def test_the_statistics_difference_keeps_what_no_changed_row_covers():
    old, now = [_row("arin", 1), _row("arin", 2)], [_row("arin", 1), _row("arin", 2, date="x")]
    difference = stats_difference(old, now, dumped={"lacnic"}, fresh={"arin", "lacnic"})
    cases = [
        (_net(1, registry="arin", source="rdap"), True),  # its delegation unchanged
        (_net(2, registry="arin", source="rdap"), False),  # inside a changed delegation: walked again
        (_net(1, registry="arin", source="stats"), False),  # free space: written anew from the statistics
        (_net(5, registry="lacnic"), False),  # a registry read from its dump
        (_net(6, registry="afrinic", source="stats"), True),  # no new statistics: kept unchecked
    ]
    for record, keeps in cases:
        free = record.source == "stats"
        assert difference.keeps((record.registry, record.first, record.last), free) is keeps, record
    assert difference.walk(["200.0.2.0/25"]) == ["200.0.2.0/25"]  # only what is in scope
