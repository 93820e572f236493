"""The map's interval index against brute force: most specific network, parents, prefixes, saving."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from serve_support import most_specific, write_results

from whoiscrawl.bench.serve import nested_records
from whoiscrawl.results import source
from whoiscrawl.results.summary import holder_of
from whoiscrawl.serve import index as index_module
from whoiscrawl.serve.index import (
    FIELDS,
    FORMAT,
    LISTS,
    MapIndex,
    MapIndexError,
    build_file,
    flatten,
    flatten_by_stack,
    index_path,
    load_or_build,
    stamp_of,
)


# CIDR blocks are nested or disjoint, as a registry's networks are.
def _span(address: int, plen: int) -> tuple[int, int]:
    size = 1 << (32 - plen)
    return address - address % size, address - address % size + size - 1


cidr = st.builds(_span, st.integers(0, 0xFFFFFFFF), st.integers(0, 32))
addresses = st.lists(st.integers(0, 0xFFFFFFFF), max_size=20)


@settings(max_examples=60, deadline=None)
@given(st.lists(cidr, min_size=0, max_size=25, unique=True), addresses)
def test_lookup_is_the_smallest_network_holding_the_address(tmp_path_factory, spans, extra):
    path = write_results(tmp_path_factory.mktemp("idx") / "r.jsonl", spans)
    index = build_file(path)
    probes = set(extra) | {0, 0xFFFFFFFF}
    for first, last in spans:  # each network's edges and the addresses just outside them
        probes |= {first, last, max(first - 1, 0), min(last + 1, 0xFFFFFFFF)}
    addrs = np.array(sorted(probes), np.uint32)
    got = index.lookup(addrs)
    assert [index.lookup_one(a) for a in addrs.tolist()] == got.tolist()
    for address, net in zip(addrs.tolist(), got.tolist(), strict=True):
        want = most_specific(spans, address)
        assert (None if net < 0 else index.value(net, "handle")) == (None if want is None else f"NET-{want}")


@settings(max_examples=40, deadline=None)
@given(st.lists(cidr, min_size=1, max_size=25, unique=True))
def test_parents_and_prefix_queries_follow_the_nesting(tmp_path_factory, spans):
    path = write_results(tmp_path_factory.mktemp("idx") / "r.jsonl", spans)
    index = build_file(path)
    by_handle = {f"NET-{n}": s for n, s in enumerate(spans)}
    for net in range(len(index)):
        first, last = int(index.first[net]), int(index.last[net])
        want_parents = sorted((s for s in spans if s[0] <= first and last <= s[1] and s != (first, last)),
                              key=lambda s: s[1] - s[0])
        assert [by_handle[str(index.value(p, "handle"))] for p in index.parents(net)] == want_parents
        inside = {by_handle[str(index.value(i, "handle"))] for i in index.inside(first, last).tolist()}
        assert inside == {s for s in spans if first <= s[0] and s[1] <= last}
        assert index.exact(first, last) == net
        assert index.containing(first, last) == net


def test_a_network_overlapping_its_parents_end_is_clipped_to_it(tmp_path: Path):
    # 10.0.0.0-10.0.0.255 and 10.0.0.128-10.0.1.127: registries keep a few such overlaps
    spans = [(0x0A000000, 0x0A0000FF), (0x0A000080, 0x0A00017F)]
    index = build_file(write_results(tmp_path / "r.jsonl", spans))
    nets = index.lookup(np.array([0x0A00007F, 0x0A000080, 0x0A0000FF, 0x0A000100], np.uint32)).tolist()
    handles = [index.value(n, "handle") if n >= 0 else None for n in nets]
    assert handles == ["NET-0", "NET-1", "NET-1", None]
    assert index.parents(1) == [0]


def test_record_answers_the_fields_and_the_latest_record_wins(tmp_path: Path):
    path = write_results(tmp_path / "r.jsonl", [(0x0A000000, 0x0AFFFFFF), (0x0A010000, 0x0A0100FF)])
    with path.open("a") as fh:  # a later record of NET-1's block, holder changed
        fh.write(path.read_text().splitlines()[1].replace("Holder 1", "Holder Later") + "\n")
    index = build_file(path)
    doc = index.record(int(index.lookup(np.array([0x0A010001], np.uint32))[0]))
    assert doc["holder"] == "Holder Later" and doc["handle"] == "NET-1"
    assert doc["parents"] == ["NET-0"] and doc["parent_handle"] == "NET-0"
    assert doc["start_address"] == "10.1.0.0" and doc["end_address"] == "10.1.0.255"
    assert doc["abuse_emails"] == ["abuse@holder1.example"] and doc["status"] == ["active"]
    assert doc["country"] == "US" and doc["registry"] == "arin"
    assert index.observed == "2026-12-01T00:00:01+00:00"


def test_the_build_reads_columns_and_keeps_no_superseded_value(tmp_path: Path, monkeypatch):
    path = write_results(tmp_path / "r.jsonl", [(0x0A000000, 0x0AFFFFFF), (0x0A010000, 0x0A0100FF)])
    with path.open("a") as fh:  # NET-1 again, holder changed: "Holder 1" is superseded
        fh.write(path.read_text().splitlines()[1].replace("Holder 1", "Holder Later") + "\n")

    def decoded_one_by_one(line: bytes | str) -> None:
        raise AssertionError("a clean file is read as columns, not a record at a time")

    monkeypatch.setattr(source, "parse_line", decoded_one_by_one)
    index = build_file(path)
    holders = index.blobs["holder"][0].tobytes().decode()
    assert "Holder Later" in holders and "Holder 1" not in holders
    assert [index.value(n, "holder") for n in range(len(index))] == ["Holder 0", "Holder Later"]


def _as_the_reader_reads_them(path: Path) -> list[dict]:
    """Every field the index answers, per network, as the record-at-a-time reader (`ResultSet`)
    gives the latest records in hierarchy order."""
    docs = list(source.ResultSet(path, seekable=True).nested())
    out = []
    for doc in docs:
        want = {name: doc.get(name) or None for name in FIELDS if name != "holder"}
        for name in LISTS:
            want[name] = [str(v) for v in doc.get(name) or []]
        want["holder"] = holder_of(doc)
        out.append(want | {"first": doc["_first"], "last": doc["_last"]})
    return out


def test_lines_that_are_no_record_cost_only_themselves(tmp_path: Path):
    spans = [(0x0A000000, 0x0AFFFFFF), (0x0A010000, 0x0A0100FF), (0x0B000000, 0x0B0000FF)]
    path = write_results(tmp_path / "r.jsonl", spans)
    lines = path.read_text().splitlines()
    odd = json.loads(lines[2]) | {"country": 31, "status": "active", "name": ["A", "B"]}  # other types
    path.write_text("\n".join([
        lines[0], "", "not json", '{"registry": "arin"}', "[1, 2]",
        lines[1].replace('"10.1.0.0"', '"10.1.0.00"'),  # a leading zero: no dotted quad
        lines[1], json.dumps(odd), "   ",
    ]) + "\n")
    index = build_file(path)
    assert len(index) == 3
    want = _as_the_reader_reads_them(path)
    assert [(int(f), int(t)) for f, t in zip(index.first, index.last, strict=True)] == \
        [(doc["first"], doc["last"]) for doc in want]
    for net in (0, 1):  # the third is the record with fields of other types
        assert {name: index.value(net, name) for name in FIELDS} == {name: want[net][name] for name in FIELDS}
    assert index.value(2, "country") == "31" and index.value(2, "status") == ["active"]
    assert index.value(2, "name") == "A\nB"


@pytest.mark.parametrize("run_bytes, merge_at", [(1 << 25, 1 << 18), (1 << 14, 20)])
def test_the_columns_read_answers_what_the_record_reader_reads(tmp_path: Path, monkeypatch, run_bytes: int,
                                                                merge_at: int):
    """In one run, and in runs of a few dozen records whose tables are merged every few runs (a
    value met again in a later run, a block's superseded record in an earlier one)."""
    monkeypatch.setattr(source, "_READ_BYTES", run_bytes)
    monkeypatch.setattr(index_module.StringTable, "MERGE_AT", merge_at)
    path = tmp_path / "r.jsonl"
    nested_records(path, 3000)
    with path.open("a") as fh:  # later records of some blocks, holders changed
        for line in path.read_text().splitlines()[::97]:
            fh.write(line.replace('"Holder ', '"Later Holder ').replace('"bench"', '"again"') + "\n")
    index = build_file(path)
    want = _as_the_reader_reads_them(path)
    assert len(index) == len(want)
    for net, doc in enumerate(want):
        assert (int(index.first[net]), int(index.last[net])) == (doc["first"], doc["last"])
        assert {name: index.value(net, name) for name in FIELDS} == {name: doc[name] for name in FIELDS}
    for name in FIELDS:  # each value once in its table, however many runs and merges met it
        blob, offsets = index.blobs[name]
        values = [blob[offsets[c] : offsets[c + 1]].tobytes() for c in range(1, len(offsets) - 1)]
        assert len(set(values)) == len(values), name


def test_the_build_holds_string_tables_not_every_records_columns(tmp_path: Path, monkeypatch):
    """What arrow holds as the runs are read (sampled before each run and after the last) stays
    near the string tables the index ends with: each run is packed into them and let go (reading
    every record's columns and packing them at the end held 2.4 times the tables here)."""
    path = tmp_path / "r.jsonl"
    nested_records(path, 20000)
    monkeypatch.setattr(source, "_READ_BYTES", 1 << 17)  # 80 runs
    monkeypatch.setattr(index_module.StringTable, "MERGE_AT", 2000)
    held, runs = [], source._line_runs

    def sampled(results: Path):
        for run in runs(results):
            held.append(pa.total_allocated_bytes())
            yield run
        held.append(pa.total_allocated_bytes())

    monkeypatch.setattr(source, "_line_runs", sampled)
    index = build_file(path)
    tables = sum(blob.nbytes + offsets.nbytes for blob, offsets in index.blobs.values())
    assert len(held) == 81 and max(held) - held[0] < 1.5 * tables


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFFFFFF), st.integers(0, 1 << 20)), max_size=40, unique=True))
def test_flattening_in_numpy_is_the_stack_walk_overlaps_and_all(spans):
    spans = sorted({(f, min(f + size, 0xFFFFFFFF)) for f, size in spans}, key=lambda s: (s[0], -s[1]))
    first = np.array([s[0] for s in spans], np.uint32)
    last = np.array([s[1] for s in spans], np.uint32)
    for got, want in zip(flatten(first, last), flatten_by_stack(first, last), strict=True):
        assert got.dtype == want.dtype and got.tolist() == want.tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.integers(0, 300), st.integers(0, 40)),  # neighbours touching
                          st.tuples(st.integers(0, 0xFFFFFFFF), st.integers(0, 1 << 24))),
                max_size=40, unique=True),
       st.integers(1, 6))
def test_flattening_in_pieces_is_flattening_at_once(spans, chunk):
    spans = sorted({(f, min(f + size, 0xFFFFFFFF)) for f, size in spans}, key=lambda s: (s[0], -s[1]))
    first = np.array([s[0] for s in spans], np.uint32)
    last = np.array([s[1] for s in spans], np.uint32)
    with patch.object(index_module, "FLATTEN_CHUNK", chunk):  # pieces of a few networks, cut between families
        pieces = flatten(first, last)
    for got, want in zip(pieces, flatten_by_stack(first, last), strict=True):
        assert got.dtype == want.dtype and got.tolist() == want.tolist()


def test_the_saved_index_is_reused_rebuilt_when_the_results_change_and_after_damage(tmp_path: Path, capsys):
    path = write_results(tmp_path / "r.jsonl", [(0x0A000000, 0x0AFFFFFF)])
    _, how = load_or_build(path)
    assert how == "built" and index_path(path).is_file()
    again, how = load_or_build(path)
    assert how == "loaded" and len(again) == 1 and again.record(0)["handle"] == "NET-0"
    write_results(path, [(0x0A000000, 0x0AFFFFFF), (0x0B000000, 0x0BFFFFFF)])
    os.utime(path, ns=(1, 1))  # even with an old mtime, the size differs
    changed, how = load_or_build(path)
    assert how.startswith("rebuilt") and len(changed) == 2
    index_path(path).write_bytes(index_path(path).read_bytes()[:200])  # cut short
    with_damage, how = load_or_build(path)
    assert "unreadable" in how and len(with_damage) == 2
    assert "unreadable" in capsys.readouterr().err
    assert load_or_build(path)[1] == "loaded"  # the rebuilt index was saved


def test_damaged_arrays_that_still_unzip_are_refused(tmp_path: Path):
    path = write_results(tmp_path / "r.jsonl", [(0x0A000000, 0x0AFFFFFF)])
    index, _ = load_or_build(path)
    index.seg_net = np.array([5], np.int32)  # points past the networks
    index.save(index_path(path), stamp_of(path))
    try:
        MapIndex.load(index_path(path))
    except MapIndexError as exc:
        assert "inconsistent" in str(exc)
    else:
        raise AssertionError("a damaged index loaded")


def test_no_results_no_networks(tmp_path: Path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    index, _ = load_or_build(path)
    assert len(index) == 0 and index.lookup(np.array([0, 0xFFFFFFFF], np.uint32)).tolist() == [-1, -1]


@pytest.mark.parametrize("seed", [2, 4, 64])
def test_the_bucketed_lookup_is_the_flat_one_over_many_segments(tmp_path: Path, seed: int):
    rng = random.Random(seed)
    spans = sorted({_span(rng.randrange(0, 1 << 32), rng.randrange(8, 33)) for _ in range(600)})
    index = build_file(write_results(tmp_path / "r.jsonl", spans))
    table, _, steps = index.buckets()
    assert steps >= 2 and (table[1:] == table[:-1]).any()  # buckets searched and buckets answered at once
    edges = [a for f, t in spans for a in (f, t, max(f - 1, 0), min(t + 1, 0xFFFFFFFF))]
    probes = np.array([rng.randrange(0, 1 << 32) for _ in range(3000)] + edges, np.uint32)
    got = index.lookup(probes)
    assert np.array_equal(got, index.lookup_flat(probes))
    assert [index.lookup_one(a) for a in probes.tolist()] == got.tolist()
    for address, net in zip(probes[::7].tolist(), got[::7].tolist(), strict=True):
        want = most_specific(spans, address)
        assert (None if net < 0 else index.value(net, "handle")) == (None if want is None else f"NET-{want}")


def test_an_index_of_another_layout_is_rebuilt_and_says_so(tmp_path: Path):
    path = write_results(tmp_path / "r.jsonl", [(0x0A000000, 0x0AFFFFFF)])
    index, _ = load_or_build(path)
    old = stamp_of(path)
    old[0] = FORMAT - 1  # as an earlier version wrote it
    index.save(index_path(path), old)
    again, how = load_or_build(path)
    assert f"it has layout {FORMAT - 1}, this version reads layout {FORMAT}" in how and len(again) == 1
    assert load_or_build(path)[1] == "loaded"


def test_runs_of_lines_cut_anywhere_lose_no_record(tmp_path: Path, monkeypatch):
    spans = [(0x0A000000 + 256 * n, 0x0A0000FF + 256 * n) for n in range(40)]
    path = write_results(tmp_path / "r.jsonl", spans)
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # the last line without its newline
    whole = build_file(path)
    for size in (7, 300, 1000):  # runs shorter than a line, about one, a few
        monkeypatch.setattr(source, "_READ_BYTES", size)
        index = build_file(path)
        assert len(index) == 40 and np.array_equal(index.first, whole.first)
        assert [index.value(n, "handle") for n in range(40)] == [f"NET-{n}" for n in range(40)]
