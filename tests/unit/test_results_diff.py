"""The difference of two maps (`whoiscrawl diff`, the history's change sets): kinds, fields, sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from whoiscrawl.results.diff import classify, diff_report
from whoiscrawl.results.source import ResultsError, ResultSet, parse_line

from .test_results_summary import record, write


def test_changes_carry_their_source(tmp_path: Path):
    old = write(tmp_path / "old.jsonl", [record("193.0.0.0/16", source="dump", serial="41"),
                                         record("12.0.0.0/8", registry="arin")])
    new = write(tmp_path / "new.jsonl", [record("193.0.0.0/16", country="DE"),
                                         record("12.0.0.0/8", registry="arin")])
    report = diff_report(ResultSet(old, seekable=True), ResultSet(new, seekable=True))
    (change,) = report["changes"]
    assert (change["change"], change["source"], change["fields"]["country"]) == (
        "changed", "rdap", {"old": "NL", "new": "DE"})
    gone = diff_report(ResultSet(old, seekable=True), ResultSet(write(tmp_path / "e.jsonl", [
        record("12.0.0.0/8", registry="arin")]), seekable=True))
    assert [(c["change"], c["source"]) for c in gone["changes"]] == [("removed", "dump")]


def _doc(cidr: str, registry: str = "ripencc", **fields: object) -> dict:
    """A record as the one reader hands it on (`parse_line`)."""
    doc = parse_line(record(cidr, registry, **fields).to_json())
    assert doc is not None
    return doc


def _kinds(old: list[dict], new: list[dict]) -> list[tuple]:
    return [(c.kind, c.registry, c.start_address, {k: v for k, v in c.fields.items()})
            for c in classify(old, new)]


H = "holder of 193.0.1.0/24"
CASES = [  # (what, old, new, the changes: kind, registry, start, fields)
    ("nothing changed", [_doc("193.0.1.0/24")], [_doc("193.0.1.0/24", fetched_at="2030-01-01")], []),
    ("added", [], [_doc("193.0.1.0/24")], [("added", "ripencc", "193.0.1.0", {})]),
    ("removed", [_doc("193.0.1.0/24")], [], [("removed", "ripencc", "193.0.1.0", {})]),
    ("country and abuse changed", [_doc("193.0.1.0/24", abuse_emails=["a@x", "b@x"])],
     [_doc("193.0.1.0/24", country="DE", abuse_emails=["b@x"])],
     [("changed", "ripencc", "193.0.1.0",
       {"country": ("NL", "DE"), "abuse_emails": (["a@x", "b@x"], ["b@x"])})]),
    ("abuse e-mails reordered: the same set", [_doc("193.0.1.0/24", abuse_emails=["a@x", "b@x"])],
     [_doc("193.0.1.0/24", abuse_emails=["b@x", "a@x"])], []),
    ("holder changed: a transfer", [_doc("193.0.1.0/24")], [_doc("193.0.1.0/24", registrant="Newco")],
     [("transferred", "ripencc", "193.0.1.0", {"holder": (H, "Newco")})]),
    ("to another registry: one transfer, not removed + added",
     [_doc("193.0.1.0/24", registry="arin", handle="NET-1")], [_doc("193.0.1.0/24", handle="X")],
     [("transferred", "ripencc", "193.0.1.0", {"registry": ("arin", "ripencc")})]),
    ("split: the parent removed, its halves added", [_doc("193.0.0.0/23")],
     [_doc("193.0.0.0/24"), _doc("193.0.1.0/24")],
     [("removed", "ripencc", "193.0.0.0", {}), ("added", "ripencc", "193.0.0.0", {}),
      ("added", "ripencc", "193.0.1.0", {})]),
    ("same range at two registries, one left", [_doc("193.0.1.0/24", registry="arin"), _doc("193.0.1.0/24")],
     [_doc("193.0.1.0/24")], [("removed", "arin", "193.0.1.0", {})]),
]


@pytest.mark.parametrize(("old", "new", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_classify(old: list[dict], new: list[dict], want: list[tuple]):
    assert _kinds(old, new) == want


def test_a_transfer_says_from_and_to():
    (change,) = classify([_doc("193.0.1.0/24", registry="arin")], [_doc("193.0.1.0/24", registrant="Newco")])
    doc = change.to_dict()
    assert (doc["from"], doc["to"]) == ({"registry": "arin", "holder": H},
                                        {"registry": "ripencc", "holder": "Newco"})


def test_input_out_of_hierarchy_order_is_refused():
    with pytest.raises(ResultsError, match=r"new map is not in hierarchy order at 193\.0\.0\.0"):
        list(classify([], [_doc("193.0.1.0/24"), _doc("193.0.0.0/24")]))
