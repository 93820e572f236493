"""The difference of two maps (`whoiscrawl diff`, the history's change sets): kinds, fields, sources."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from whoiscrawl.results.diff import changes, classify, diff_report, facts, same_facts
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


_LINE = record("193.0.1.0/24").to_json()


@pytest.mark.parametrize(("a", "b", "same"), [
    (_LINE, record("193.0.1.0/24", fetched_at="2030-01-01", serial="9", source="dump").to_json(), True),
    (_LINE, record("193.0.1.0/24", country="DE").to_json(), False),
    # a key `facts` reads after provenance begins (JSON's last one wins): not told from the bytes
    (_LINE, _LINE[:-1] + b',"registrant":"Newco"}', False),
    # where provenance seems to begin is inside a field: what follows is no record's rest
    (b'{"registry":"ripencc","handle":"h","abuse_emails":[{"x":0,"query_address":0}],"country":"NL"}',
     b'{"registry":"ripencc","handle":"h","abuse_emails":[{"x":0,"query_address":0}],"country":"DE"}', False),
    (b'{"registry":"ripencc","handle":"h"}', b'{"registry":"ripencc","handle":"h"}', False),  # no provenance
], ids=["provenance only", "a fact", "a fact after", "inside a field", "no provenance"])
def test_same_facts_is_told_from_bytes_only_where_they_settle_it(a: bytes, b: bytes, same: bool):
    assert same_facts(a, b) is same
    if same:
        assert facts(orjson.loads(a)) == facts(orjson.loads(b))


_CIDRS = ["193.0.0.0/23", "193.0.0.0/24", "193.0.1.0/24", "12.0.0.0/8"]
_VALUES = {"country": ["NL", "DE"], "fetched_at": ["a", "b"], "registrant": ["A", "B"], "serial": [None, "1"]}


@st.composite
def _map_lines(draw: st.DrawFn) -> list[bytes]:
    """Lines of a map: records of a few ranges with a few values each, some with provenance only
    changed, some written with their keys in another order or a fact after provenance."""
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        pick = {name: draw(st.sampled_from(values)) for name, values in _VALUES.items()}
        cidr, registry = draw(st.sampled_from(_CIDRS)), draw(st.sampled_from(["ripencc", "arin"]))
        doc = record(cidr, registry, **pick).to_dict()
        shape = draw(st.sampled_from(["ours", "shuffled", "fact after"]))
        if shape == "shuffled":
            doc = dict(draw(st.permutations(list(doc.items()))))
        line = orjson.dumps(doc)
        if shape == "fact after":
            line = line[:-1] + b',"country":"' + draw(st.sampled_from([b"NL", b"FR"])) + b'"}'
        lines.append(line)
    return lines


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_map_lines(), _map_lines())
def test_changes_are_those_of_every_block_parsed(tmp_path: Path, old: list[bytes], new: list[bytes]):
    paths = []
    for name, lines in (("old", old), ("new", new)):
        (tmp_path / name).write_bytes(b"".join(line + b"\n" for line in lines) or b"\n")
        paths.append(tmp_path / name)
    a, b = (ResultSet(p, seekable=True) for p in paths)
    every = [c.to_dict() for c in classify(a.nested(), b.nested())]
    assert [c.to_dict() for c in changes(a, b)] == every


def test_two_maps_opened_to_compare_hold_a_few_dozen_bytes_a_block(tmp_path: Path):
    """Measured, not timed: what opening a map in hierarchy order (`seekable`, as a diff and the
    operator's change feed open both maps) allocates at its peak. Its lines were counted in reads of
    16 MB, two of them at once: 33 MB at the peak of any map over 16 MB, whatever its blocks."""
    path = write(tmp_path / "map.jsonl", [record(f"10.{i >> 8}.{i & 255}.0/24", name="x" * 3_000)
                                          for i in range(4_000)])
    tracemalloc.start()
    try:
        opened = ResultSet(path, seekable=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert opened.blocks == 4_000 and path.stat().st_size > 12_000_000
    assert peak < 4_000_000, peak


def test_a_map_opened_spilled_keeps_a_byte_a_record_and_reads_the_same(tmp_path: Path):
    """`spill` (the operator's change feed: two whole maps beside its other work) keeps a map's index
    in temporary files mapped into memory: what stays in the process's own memory is a byte a
    record; the blocks, their order and their winning records are those of the index held."""
    lines = [record(f"10.{i >> 8}.{i & 255}.0/24", registrant=f"holder {i}") for i in range(6_000)]
    lines += [record(f"10.{i >> 8}.{i & 255}.0/24", registrant=f"later {i}") for i in range(0, 6_000, 7)]
    path = write(tmp_path / "map.jsonl", lines)

    def held(spill: bool) -> tuple[ResultSet, int]:
        tracemalloc.start()
        try:
            return ResultSet(path, seekable=True, spill=spill), tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()

    (spilled, spilled_held), (kept, kept_held) = held(True), held(False)
    assert kept_held / kept.records > 15 and spilled_held / spilled.records < 4  # a byte and its objects
    assert spilled.blocks == kept.blocks == 6_000 and (spilled.keys == kept.keys).all()
    assert list(spilled.nested()) == list(kept.nested()) and list(spilled.latest()) == list(kept.latest())
    assert next(d for d in spilled.nested() if d["start_address"] == "10.0.7.0")["registrant"] == "later 7"
