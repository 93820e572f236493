"""The fleet's fill as work (whoiscrawl/sources/fill.py): a recheck file cut into batches that keep a
contact's networks together, the same batches from the same file, and what the workers' batches
asked summed into the load's figures."""

from __future__ import annotations

import json
from pathlib import Path

from whoiscrawl.ipv4 import ip_str
from whoiscrawl.records import FillBatch, NetworkRecord
from whoiscrawl.sources import dumps, fill


def _network(n: int, contact: str | None) -> NetworkRecord:
    first = (200 << 24) + n * 256
    return NetworkRecord("lacnic", f"NET-{n}", ip_str(first), ip_str(first + 255), [f"{ip_str(first)}/24"],
                         registrant="Holder", country="BR", source="dump",
                         raw={dumps.UNRESOLVED: [contact]} if contact else None)


def _recheck(tmp_path: Path, networks: list[NetworkRecord]) -> Path:
    path = tmp_path / "dump-lacnic.recheck.jsonl"
    path.write_text("".join(r.to_json().decode() + "\n" for r in networks))
    return path


def test_a_contact_s_networks_are_in_one_batch_and_the_same_file_gives_the_same_batches(tmp_path):
    """45 networks naming 3 contacts (A 30, B 10, C 3) and 2 naming none: every network once, each
    contact's in one batch (its contact asked once, by one worker), keyed by the contact; ids and
    batches the same when cut again (a loader publishing after another died publishes the same)."""
    contacts = ["A"] * 30 + ["B"] * 10 + ["C"] * 3 + [None, None]
    path = _recheck(tmp_path, [_network(n, c) for n, c in enumerate(contacts)])
    cut = list(fill.batches(path, "crawl", "dump:lacnic"))
    assert cut == list(fill.batches(path, "crawl", "dump:lacnic"))
    assert [b.batch_id for _, b in cut] == [f"fill:dump:lacnic:{n}" for n in range(len(cut))]
    handles = [r.handle for _, b in cut for r in b.records()]
    assert sorted(handles) == sorted(f"NET-{n}" for n in range(len(contacts)))
    for contact in "ABC":
        holding = [b for _, b in cut if any(dumps.unresolved_abuse(r) == contact for r in b.records())]
        assert len(holding) == 1, contact
    assert cut[0][0] == b"lacnic:A"
    assert all(FillBatch.from_json(b.to_json()) == b for _, b in cut)  # as the fill topic carries them
    assert all(len(b.networks) <= fill.NETWORKS for _, b in cut if len(b.networks) != 30)


def test_a_contact_naming_more_than_a_message_holds_is_cut_into_batches_of_one_key(tmp_path, monkeypatch):
    monkeypatch.setattr(fill, "BYTES", 2_000)
    path = _recheck(tmp_path, [_network(n, "BIG") for n in range(20)])
    cut = list(fill.batches(path, "crawl", "dump:lacnic"))
    assert len(cut) > 1 and {key for key, _ in cut} == {b"lacnic:BIG"}  # one partition, in order
    assert all(len(b.to_json()) < 2_000 + 1_000 for _, b in cut)


def test_the_fill_s_figures_are_summed_from_the_batches_answered():
    done = {"dumps": {"lacnic": {"serial": "1", "freshness": {"batches": 3, "networks": 50}}}}
    published = {"fill:dump:lacnic:0": "dump:lacnic", "fill:dump:lacnic:1": "dump:lacnic",
                 "fill:dump:lacnic:2": "dump:lacnic"}
    answered = {
        "fill:dump:lacnic:0": json.dumps({"asked": 20, "filled": 19, "by_contact": 19, "lookups": 4,
                                          "fields": {"abuse_emails": 19}, "worker": "w1"}),
        "fill:dump:lacnic:2": json.dumps({"asked": 10, "agreed": 1, "filled": 9, "lookups": 3,
                                          "fields": {"abuse_emails": 9}, "worker": "w2"}),
    }
    fresh = fill.figures(done, published, answered)["dumps"]["lacnic"]["freshness"]
    assert fresh == {"asked": 30, "filled": 28, "by_contact": 19, "agreed": 1, "lookups": 7,
                     "fields": {"abuse_emails": 28}, "batches": 3, "answered": 2,
                     "by_worker": {"w1": {"batches": 1, "lookups": 4}, "w2": {"batches": 1, "lookups": 3}}}
