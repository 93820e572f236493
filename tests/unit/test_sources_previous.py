"""The previous map as a refresh holds it (whoiscrawl/sources/difference.py, `Previous`): a few dozen
bytes a block, not its parsed records (~2.2 kB a block: 24 GB for `full`'s 11.25M networks), and the
same answers as the map read into dicts."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from whoiscrawl.ipv4 import ip_str
from whoiscrawl.records import NetworkRecord
from whoiscrawl.sources.difference import Previous, Seen, removed

REGISTRIES = ("ripencc", "arin", "apnic", "lacnic", "afrinic")


def _map(n: int) -> list[bytes]:
    """A map's lines: `n` blocks of five registries, dumped, walked live or free space; a tenth of
    the dumped ones filled live after (a later line of the same block), a few given twice."""
    lines, later = [], []
    for i in range(n):
        registry = REGISTRIES[i % 5]
        source = "stats" if i % 7 == 0 else "dump" if registry != "arin" else "rdap"
        first = (10 << 24) + 256 * i
        start = ip_str(first)
        record = NetworkRecord(registry, f"NET-{i}", start, ip_str(first + 255), [f"{start}/24"],
                               registrant=f"Holder {i}", country="NL", abuse_emails=[f"abuse@h{i}.example"],
                               source=source, serial="41234567", observed_at="2026-12-07T00:00:00Z",
                               crawl="local")
        lines.append(record.to_json())
        if source == "dump" and i % 10 == 1:
            later.append(record.with_filled("abuse_emails", ["noc@example.net"], "rdap", "AB1").to_json())
        if source == "rdap" and i % 10 == 3:
            later.append(record.to_json().replace(b"Holder", b"Renamed"))  # a freshness answer
    return lines + later


def test_the_previous_map_is_held_in_a_few_dozen_bytes_a_block(tmp_path: Path):
    """Measured, not timed: what reading 5,000 blocks leaves allocated, and its peak, per block
    (the dicts of parsed records held ~2 kB a block)."""
    path = tmp_path / "map.jsonl"
    path.write_bytes(b"\n".join(_map(5_000)) + b"\n")
    tracemalloc.start()
    try:
        prev = Previous.read(path)
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    blocks = len(prev.latest)
    assert blocks == 5_000
    assert held / blocks <= 64, held / blocks
    assert peak / blocks <= 100, peak / blocks


@pytest.mark.parametrize("spooled", [False, True])
def test_the_previous_map_answers_as_the_map_read_into_dicts(tmp_path: Path, spooled: bool):
    """Each block's latest record, the one its dump gave, the reads, the order of the map and by
    key, and what a dump no longer holds: those of the map read record by record (the reading before)."""
    lines = _map(600)
    latest: dict = {}
    dumped: dict = {}
    for line in lines:
        record = NetworkRecord.from_own_json(line)
        key = (record.registry, record.first, record.last)
        latest[key] = line
        if record.source == "dump" and record.filled is None:
            dumped[key] = line
    path = tmp_path / "map.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    prev = Previous.of_lines(iter(lines), tmp_path) if spooled else Previous.read(path)
    with prev:
        assert list(prev.latest) == list(latest)  # the map's order: each block's first line
        assert [prev.key(at) for at in prev.positions(by_key=True)] == sorted(latest)
        for key, line in latest.items():
            at = prev.find(key)
            assert prev.line(at) == line and prev.record(at).to_json() == line
            assert prev.free(at) == (prev.record(at).source == "stats")
            got = prev.dumped_record(at)
            assert (got.to_json() if got else None) == dumped.get(key)
            assert prev.latest_is_dumped(at) == (dumped.get(key) is line)
        assert prev.reads == {r: {("41234567", "2026-12-07T00:00:00Z")} for r in REGISTRIES if r != "arin"}
        assert prev.find(("ripencc", 1, 2)) == -1 and prev.find(("iana", 1, 2)) == -1
        held = [k for k in dumped if k[0] == "apnic"][::2]
        gone = sorted(k for k in dumped if k[0] == "apnic" and k not in held)
        assert sorted(removed(prev, "apnic", Seen.of(prev, held))) == gone
        assert sorted(removed(prev, "apnic", set(held))) == gone
    with pytest.raises(ValueError):  # closed: the file (spooled: deleted) is no longer read
        prev.line(0)
