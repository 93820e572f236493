"""`export --format mmdb`: read back by maxminddb and libmaxminddb's mmdblookup, as `lookup` answers."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from unittest.mock import patch

import maxminddb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from maxminddb.decoder import Decoder
from serve_support import write_results
from typer.testing import CliRunner

from whoiscrawl.cli import app
from whoiscrawl.ipv4 import cidr_blocks, ip_str
from whoiscrawl.serve import mmdb
from whoiscrawl.serve.mmdb import MmdbError, _pointer, _value, cidr_split, open_reader


def nested_spans(rng: random.Random, n: int) -> list[tuple[int, int]]:
    """n distinct CIDR blocks under 10.0.0.0/8 and 193.0.0.0/8 (nested or disjoint, as networks are)."""
    spans: set[tuple[int, int]] = set()
    while len(spans) < n:
        plen = rng.randrange(8, 31)
        size = 1 << (32 - plen)
        base = rng.choice([0x0A000000, 0xC1000000]) + rng.randrange(0, 1 << 24)
        spans.add((base - base % size, base - base % size + size - 1))
    return sorted(spans)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    rng = random.Random(23)
    spans = nested_spans(rng, 300)
    where = tmp_path_factory.mktemp("mmdb")
    results = write_results(where / "r.jsonl", spans)
    out = where / "map.mmdb"
    result = CliRunner().invoke(app, ["export", str(results), "--format", "mmdb", "--out", str(out)])
    assert result.exit_code == 0, result.output
    addrs = {ip_str(a) for f, t in spans for a in (f, t, max(f - 1, 0), min(t + 1, 0xFFFFFFFF))}
    addrs |= {ip_str(rng.randrange(0, 1 << 32)) for _ in range(100)}  # mostly in no network
    return results, out, sorted(addrs)


def lookups(results: Path, addrs: list[str]) -> dict[str, dict]:
    result = CliRunner().invoke(app, ["lookup", str(results), "--json", *addrs])
    assert result.exit_code == 0, result.output
    return {d["address"]: d for d in map(json.loads, result.stdout.splitlines())}


def test_maxminddb_reads_every_answer_lookup_gives(exported):
    results, out, addrs = exported
    want = lookups(results, addrs)
    with maxminddb.open_database(str(out)) as reader:
        assert reader.metadata().database_type == "whoiscrawl-IPv4-Holders"
        for address in addrs:
            got = reader.get(address)
            doc = want[address]
            if not doc["found"]:
                assert got is None, address
                continue
            assert isinstance(got, dict)
            assert (got["handle"], got["holder"]) == (doc["handle"], doc["holder"])
            assert got["network"] == doc["network"]
            assert got["registry"] == doc["registry"] and got["abuse_emails"] == doc["abuse_emails"]
            assert got.get("country") == doc["country"] and got["observed"] == doc["fetched_at"]
            assert got.get("parent_handle") == doc["parent_handle"] and got["status"] == doc["status"]


def test_libmaxminddb_mmdblookup_reads_the_same(exported):
    mmdblookup = shutil.which("mmdblookup")
    assert mmdblookup, "mmdblookup is missing: scripts/setup.sh installs Debian's mmdb-bin"
    results, out, addrs = exported
    sample = random.Random(1).sample(addrs, 40)
    want = lookups(results, sample)
    for address in sample:
        done = subprocess.run([mmdblookup, "--file", str(out), "--ip", address, "handle"],
                              capture_output=True, text=True, timeout=10)
        if want[address]["found"]:
            assert re.findall(r'"([^"]*)" <utf8_string>', done.stdout) == [want[address]["handle"]], address
        else:
            assert "Could not find an entry" in done.stderr + done.stdout, address


def test_a_damaged_mmdb_is_refused_with_its_name(tmp_path: Path, exported):
    _, out, _ = exported
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(out.read_bytes()[:-200])  # the metadata section is at the end
    with pytest.raises(MmdbError, match=r"bad\.mmdb is not a readable MaxMind DB"):
        open_reader(bad)


def test_filters_do_not_apply_to_the_whole_map(exported, tmp_path: Path):
    results, _, _ = exported
    result = CliRunner().invoke(app, ["export", str(results), "--format", "mmdb", "--out",
                                      str(tmp_path / "x.mmdb"), "--country", "NL"])
    assert result.exit_code == 2 and "do not apply" in result.output


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)), min_size=1, max_size=8))
def test_ranges_split_into_the_cidrs_cidr_blocks_gives(pairs: list[tuple[int, int]]):
    ranges = sorted((min(a, b), max(a, b)) for a, b in pairs)
    first, length, which = cidr_split(np.array([f for f, _ in ranges]), np.array([t + 1 for _, t in ranges]))
    for i, (f, t) in enumerate(ranges):
        # the whole space is two /1s (a record at the tree's root would be no record)
        want = [(0, 1), (1 << 31, 1)] if (f, t) == (0, 2**32 - 1) else cidr_blocks(f, t)
        assert sorted(zip(first[which == i].tolist(), length[which == i].tolist(), strict=True)) == want
    assert np.all(np.diff(first) >= 0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 2**32), min_size=2, max_size=16, unique=True), st.integers(1, 3))
def test_ranges_split_a_few_at_a_time_are_split_at_once(points: list[int], chunk: int):
    points.sort()  # sorted disjoint ranges, as the index's segments are
    first, end = np.array(points[:-1], np.int64), np.array(points[1:], np.int64)
    whole = cidr_split(first, end)
    with patch.object(mmdb, "SPLIT_CHUNK", chunk):
        pieces = cidr_split(first, end)
    for got, want in zip(pieces, whole, strict=True):
        assert got.dtype == want.dtype and got.tolist() == want.tolist()


@pytest.mark.parametrize("spans", [
    [(0, 2**32 - 1)],  # one network holds everything
    [(0, 0), (2**32 - 1, 2**32 - 1), (0x0A000000, 0x0AFFFFFF)],  # the first and last address, a /8
    [(0x01000000, 0x01000000 + 767)],  # a /23 and a /24: a range no one CIDR is
])
def test_the_mmdb_answers_at_the_ends_of_the_space(tmp_path: Path, spans: list[tuple[int, int]]):
    results = write_results(tmp_path / "r.jsonl", spans)
    out = tmp_path / "map.mmdb"
    result = CliRunner().invoke(app, ["export", str(results), "--format", "mmdb", "--out", str(out)])
    assert result.exit_code == 0, result.output
    addrs = sorted({ip_str(a) for f, t in spans for a in (f, t, max(f - 1, 0), min(t + 1, 2**32 - 1))})
    want = lookups(results, addrs)
    with maxminddb.open_database(str(out)) as reader:
        for address in addrs:
            got: Any = reader.get(address)
            assert (got["handle"] if got else None) == want[address].get("handle"), address


def test_pointers_are_encoded_as_mmdb_writer_encodes_them():
    from mmdb_writer import Encoder

    encoder = Encoder()
    for offset in (0, 2047, 2048, 526335, 526336, 134744063, 134744064, 2**32 - 1):
        assert _pointer(offset) == encoder._encode_pointer(offset), offset


@pytest.mark.parametrize("n", [1, 28, 29, 30, 284, 285, 300])
def test_lists_and_strings_of_any_size_read_back(n: int):
    """A network with 29 abuse addresses or more was written as bad data (and 256 or more failed
    the export): the size's extra bytes were left out."""
    items = [f"abuse{i}@x.example" for i in range(n)]
    assert Decoder(_value("\n".join(items).encode(), True)).decode(0)[0] == items
    for size in (n, n + 65536):
        text = "x" * size
        assert Decoder(_value(text.encode(), False)).decode(0)[0] == text
