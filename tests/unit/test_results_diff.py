"""`whoiscrawl diff` says where each changed block's record was read (a dump, a live answer)."""

from __future__ import annotations

from pathlib import Path

from whoiscrawl.results.diff import diff_report
from whoiscrawl.results.source import ResultSet

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
