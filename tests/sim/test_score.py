"""The scorer on small hand-made results and logs with known answers; truth and scenarios."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whoiscrawl.ipv4 import ip_int
from whoiscrawl.records import NetworkRecord
from whoiscrawl.sim import policy, scenarios, score
from whoiscrawl.sim.model import World, findable


def result_of(rec: dict) -> dict:
    return NetworkRecord(
        registry=rec["registry"], handle=rec["handle"], start_address=rec["start_address"],
        end_address=rec["end_address"], cidrs=rec["cidrs"], name=rec["name"],
        country=rec["country"], parent_handle=rec["parent_handle"], type=rec["type"],
        registrant=rec["registrant"], abuse_emails=rec["abuse_emails"],
    ).to_dict()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_quick_and_standard_sizes(quick):
    truth = quick.truth()
    world = quick.world()
    assert len(truth) >= 5000
    assert {world.registry(i) for i in truth} == set(policy.POLICIES)
    assert any(world.is_placeholder(i) for i in truth)
    assert {r["type"] for r in score.truth_records(quick)} >= {
        "DIRECT ALLOCATION", "REASSIGNMENT", "ALLOCATED PA", "ASSIGNED PA", "ASSIGNED PORTABLE",
        "ALLOCATED", "UNALLOCATED"}
    std = scenarios.get("standard")
    assert len(std.truth()) >= 100_000
    assert scenarios.get("full").ranges[0] == "1.0.0.0/8"
    with pytest.raises(KeyError):
        scenarios.get("nope")


def test_score_known_answers(tmp_path, quick, world: World):
    truth = list(score.truth_records(quick))
    picked = truth[:10]
    rows = [result_of(r) for r in picked]
    rows.append(rows[0])  # duplicates count once
    wrong = dict(result_of(truth[10]), name="NOT-THE-NAME")
    rows.append(wrong)
    other = "arin" if rows[1]["registry"] != "arin" else "apnic"
    rows.append(dict(rows[1], handle="NET-NOPE-1", registry=other))  # not a truth block: a block is its
    # range at its registry (its handle is an attribute: a published file may spell it otherwise)
    res = write_jsonl(tmp_path / "results.jsonl", rows)
    t0 = 1000.0
    log = [
        {"t": t0, "source": "127.0.0.2", "registry": "ripencc", "address": picked[0]
         ["start_address"], "protocol": "rdap", "status": 200, "handle": picked[0]["handle"],
         "outcome": "ok"},
        {"t": t0 + 1, "source": "127.0.0.2", "registry": "ripencc", "address": picked[0]
         ["start_address"], "protocol": "rdap", "status": 200, "handle": picked[0]["handle"],
         "outcome": "ok"},
        {"t": t0 + 2, "source": "127.0.0.3", "registry": "ripencc", "address": "77.0.0.1",
         "protocol": "rdap", "status": 429, "handle": None, "outcome": "rate_limited"},
        {"t": t0 + 4, "source": "127.0.0.3", "registry": "ripencc", "address": "77.0.0.1",
         "protocol": "rdap", "status": 200, "handle": None, "outcome": "ok"},
    ]
    lp = write_jsonl(tmp_path / "log.jsonl", log)
    out = score.score("quick", res, lp, resolution=24, time_scale=2.0)
    assert out["blocks_truth"] == len(truth)
    assert out["blocks_found"] == 11
    assert out["blocks_extra"] == 1
    assert out["recall"] == pytest.approx(11 / len(truth), abs=1e-6)
    assert out["field_errors"]["name"] == 1
    assert sum(out["field_errors"].values()) == 1
    big = [r for r in truth if r["size"] >= 256]
    got_big = sum(1 for r in truth[:11] if r["size"] >= 256)
    assert out["recall_resolution"] == pytest.approx(got_big / len(big), abs=1e-6)
    assert sum(b["truth"] for b in out["recall_by_prefix"].values()) == len(truth)
    assert sum(b["found"] for b in out["recall_by_prefix"].values()) == 11
    covered = sum(r["findable_addresses"] for r in truth[:11])
    assert out["address_coverage"] == pytest.approx(covered / quick.addresses(), abs=1e-6)
    assert out["lookups"] == 4
    assert out["rate_limited"] == 1
    leaf = world.nchildren[world.lookup(int.from_bytes(bytes(
        map(int, picked[0]["start_address"].split("."))))) ] == 0
    assert out["wasted_lookups"] == (1 if leaf else 0)
    assert out["lookups_per_block"] == pytest.approx(4 / 11, abs=1e-6)
    u = out["utilization"]["ripencc"]
    # 3 answered lookups over 4 s from 2 addresses; RIPE allows 10/s x2 (time scale) each
    assert u["sources"] == 2 and u["answered"] == 3 and u["lookups_per_s"] == pytest.approx(0.75)
    assert u["allowed_per_s"] == pytest.approx(40.0)
    assert u["utilization"] == pytest.approx(0.75 / 40.0, abs=1e-4)


def test_field_accuracy_per_registry(tmp_path, quick):
    """Holder, country and abuse e-mail: the share of each registry's found blocks that are right."""
    truth = list(score.truth_records(quick))
    arin = [r for r in truth if r["registry"] == "arin" and not r["placeholder"]][:4]
    ripe = [r for r in truth if r["registry"] == "ripencc" and not r["placeholder"]][:2]
    rows = [result_of(r) for r in arin + ripe]
    rows[0]["registrant"] = "Somebody Else"
    rows[1]["abuse_emails"] = ["abuse@elsewhere.example", *rows[1]["abuse_emails"]]
    rows[2]["country"] = None
    out = score.score("quick", write_jsonl(tmp_path / "results.jsonl", rows))
    assert out["field_accuracy"] == {
        "arin": {"blocks": 4, "holder": 0.75, "country": 0.75, "abuse_email": 0.75},
        "ripencc": {"blocks": 2, "holder": 1.0, "country": 1.0, "abuse_email": 1.0},
    }
    assert (out["field_errors"]["registrant"], out["field_errors"]["abuse_emails"]) == (1, 1)


def test_a_block_recorded_twice_is_scored_by_its_latest_record(tmp_path, quick):
    """As every reader of results does (results/source.py): a dump's record without an abuse
    address, then the live answer that filled it in, is the live one."""
    truth = [r for r in score.truth_records(quick) if r["registry"] == "lacnic" and not r["placeholder"]]
    live = result_of(truth[0])
    dumped = {**live, "abuse_emails": [], "source": "dump"}
    out = score.score("quick", write_jsonl(tmp_path / "results.jsonl", [dumped, live]))
    assert out["field_accuracy"]["lacnic"] == {"blocks": 1, "holder": 1.0, "country": 1.0, "abuse_email": 1.0}


def test_score_without_log(tmp_path):
    res = write_jsonl(tmp_path / "r.jsonl", [])
    out = score.score("quick", res)
    assert out["blocks_found"] == 0 and out["recall"] == 0.0 and out["lookups"] is None


def test_recall_by_registry_and_prefix_size(tmp_path, quick):
    truth = list(score.truth_records(quick))
    res = write_jsonl(tmp_path / "results.jsonl", [result_of(r) for r in truth if r["registry"] == "ripencc"])
    cells = score.score("quick", res)["recall_by_registry_prefix"]
    assert set(cells) == {r["registry"] for r in truth}
    assert all(b["recall"] == 1.0 for b in cells["ripencc"].values())
    assert all(b["found"] == 0 for b in cells["arin"].values())
    assert sum(b["truth"] for reg in cells.values() for b in reg.values()) == len(truth)


def test_a_line_the_record_reader_refuses_is_a_bad_record(tmp_path, quick):
    """The scorer reads results through NetworkRecord.from_json: a line that is not JSON, or a record
    off the schema (an unknown registry), is counted as bad, and the rest is still scored."""
    good = result_of(next(iter(score.truth_records(quick))))
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(good) + "\n{not json\n" + json.dumps({**good, "registry": "nowhere"}) + "\n\n")
    out = score.score("quick", path)
    assert (out["blocks_found"], out["bad_records"]) == (1, 2)


@pytest.mark.parametrize("size", [1, 2, 3, 255, 256, 257, 511, 512, 4095, 4096, 65535, 65536, 1 << 24,
                                  (1 << 24) + 1, (1 << 25) - 1, 1 << 25, (1 << 32) - 1, 1 << 32])
def test_buckets_of_an_array_are_bucket_of_each_size(size):
    """The scorer buckets the truth's sizes at once; each bucket is the one `bucket_of` names
    (around every power of two a bucket's edge sits on)."""
    got = score.buckets_of(np.array([size], np.int64))[0]
    assert score.BUCKETS[got][0] == score.bucket_of(size)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFFFFFF), st.integers(0, 1 << 22)), min_size=1, max_size=4))
def test_findable_sums_what_segments_gives_one_by_one(world, spans):
    """`findable` over the index's arrays: for any ranges, each object's addresses are the sum of
    its clipped segments, as `World.segments` yields them, in the order they first appear."""
    ranges = [(a, min(a + n, 0xFFFFFFFF)) for a, n in spans]
    want: dict[int, int] = {}
    for first, last in ranges:
        for a, b, obj in world.segments(first, last):
            if obj >= 0:
                want[obj] = want.get(obj, 0) + b - a + 1
    got = findable(world, ranges)
    assert got == want and list(got) == list(want)


def test_records_read_in_chunks_keep_the_latest_of_a_block_and_count_an_extra_once(
        tmp_path, quick, monkeypatch):
    """The results are streamed a chunk at a time: a block's later record wins over one in an
    earlier chunk, and a block outside the truth met in two chunks is one extra block."""
    monkeypatch.setattr(score, "CHUNK", 2)
    truth = [r for r in score.truth_records(quick) if not r["placeholder"]]
    right, other = result_of(truth[0]), result_of(truth[1])
    extra = dict(result_of(truth[2]), start_address="203.0.113.0", end_address="203.0.113.255")
    rows = [dict(right, name="WRONG"), extra, other, "", right, extra, extra]
    path = tmp_path / "results.jsonl"
    path.write_text("".join((json.dumps(r) if r else "") + "\n" for r in rows))
    out = score.score("quick", path)
    assert (out["blocks_found"], out["blocks_extra"], out["bad_records"]) == (2, 1, 0)
    assert sum(out["field_errors"].values()) == 0


def _range(rec: dict) -> str:
    return f"{rec['start_address']}-{rec['end_address']}"


def test_the_score_names_the_blocks_missed_first_by_address(tmp_path, quick):
    """Where the gaps are, not only how many: the missed blocks by address, each with its status
    and parent, at most MISSED_SHOWN."""
    truth = sorted(score.truth_records(quick), key=lambda r: (ip_int(r["start_address"]), -r["size"]))
    res = write_jsonl(tmp_path / "results.jsonl", [result_of(r) for r in truth[1:]])
    assert [m["range"] for m in score.score("quick", res)["missed"]] == [_range(truth[0])]
    everything_missed = score.score("quick", write_jsonl(tmp_path / "none.jsonl", []))["missed"]
    assert [m["range"] for m in everything_missed] == [_range(r) for r in truth[:score.MISSED_SHOWN]]
    assert {m["registry"] for m in everything_missed} <= {r["registry"] for r in truth}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 40)), max_size=30), max_size=12))
def test_extra_blocks_met_over_many_chunks_are_counted_once_each(chunks: list[list[tuple[int, int]]]):
    distinct = score.Distinct()
    for chunk in chunks:
        distinct.add(np.array([r for r, _ in chunk], np.uint8), np.array([k for _, k in chunk], np.uint64))
    assert len(distinct) == len({pair for chunk in chunks for pair in chunk})
    assert len(distinct) == len({pair for chunk in chunks for pair in chunk})  # counting merges nothing twice
