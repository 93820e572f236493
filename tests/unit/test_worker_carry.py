"""The fleet's manifest (worker/carry.py): kept in fields of bounded size beside the load's `done`,
read back whole; a previous generation that cannot be refreshed from is refused with its reason;
what is carried is the same bytes whichever loader stages it."""

from __future__ import annotations

import io
import json
import tracemalloc
from dataclasses import replace
from pathlib import Path

import pytest
from whoiscrawl.worker import carry

from whoiscrawl.ipv4 import ip_int, ip_str
from whoiscrawl.records import NetworkRecord
from whoiscrawl.sources import seed
from whoiscrawl.sources.difference import Previous
from whoiscrawl.sources.manifest import Manifest
from whoiscrawl.sources.published import RegistryDump, StatsPlan
from whoiscrawl.sources.stats import Delegation
from whoiscrawl.space import Scope

SCOPE = Scope.of([(ip_int("23.128.0.0"), ip_int("23.128.7.255")),
                  (ip_int("193.0.0.0"), ip_int("193.0.15.255"))])


def _stats(rows: int) -> StatsPlan:
    delegations = [Delegation("arin", "US", ip_int("23.128.0.0") + 256 * n, 256, "20190101", "assigned")
                   for n in range(rows)]
    delegations.append(Delegation("arin", "US", ip_int("8.0.0.0"), 256, "20190101", "assigned"))  # outside
    return StatsPlan(delegations, {"arin": "20261207"}, {"arin": "20261207"})


def _state(made: Manifest) -> dict[str, str]:
    header, rows = carry.manifest_fields(made)
    return {**rows, "done": json.dumps({"manifest": header})}


def test_a_manifest_is_kept_in_fields_of_bounded_size_and_read_back_whole(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(carry, "MANIFEST_ROWS", 2)
    made = carry.made_by(SCOPE, _stats(5), {"arin": {"stats": "20261207"}})
    assert len(made.rows) == 5  # in scope only
    assert made.scope == ["23.128.0.0/21", "193.0.0.0/20"]
    state = _state(made)
    fields = [k for k in state if k.startswith(carry.ROWS_FIELD)]
    assert len(fields) == 3 and all(len(json.loads(state[k])) <= 2 for k in fields)
    assert carry.read_manifest("ns.wc", state) == made


def test_a_whole_ipv4_manifest_is_never_one_message():
    """250,000 rows (about the five registries' IPv4 rows): no field near Kafka's 1 MB default."""
    rows = [("ripencc", n * 256, 256, "20200101", "allocated", "NL") for n in range(250_000)]
    header, fields = carry.manifest_fields(Manifest(["0.0.0.0/0"], {}, rows))  # type: ignore[arg-type]
    assert header["row_fields"] == len(fields) == 125
    assert max(len(v) for v in fields.values()) < 200_000
    assert len(json.dumps(header)) < 1000


@pytest.mark.parametrize(("state", "why"), [
    ({}, "has no finished load"),
    ({"done": json.dumps({"sources": ["stats"]})}, "kept no manifest"),
])
def test_a_previous_generation_without_a_manifest_is_refused(state, why):
    with pytest.raises(carry.Refused, match=why):
        carry.read_manifest("ns.wc", state)


def test_a_manifest_missing_a_field_of_rows_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(carry, "MANIFEST_ROWS", 2)
    state = _state(carry.made_by(SCOPE, _stats(5), {"arin": {"stats": "20261207"}}))
    del state[f"{carry.ROWS_FIELD}1"]
    with pytest.raises(carry.Refused, match="lacks its rows' field 1"):
        carry.read_manifest("ns.wc", state)


def test_another_scope_or_files_older_than_the_previous_generations_are_refused():
    old = carry.made_by(SCOPE, _stats(2), {"arin": {"stats": "20261207"}, "ripencc": {"dump": "41234567"}})
    carry.check("ns.wc", old, SCOPE, {"arin": {"stats": "20261208"}, "ripencc": {"dump": "41234567"}})
    narrower = Scope.of([(ip_int("193.0.0.0"), ip_int("193.0.15.255"))])
    with pytest.raises(carry.Refused, match="another scope"):
        carry.check("ns.wc", old, narrower, {})
    with pytest.raises(carry.Refused, match="ripencc's dump serial 41234567, newer than 41234566 now"):
        carry.check("ns.wc", old, SCOPE, {"arin": {"stats": "20261208"}, "ripencc": {"dump": "41234566"}})
    with pytest.raises(carry.Refused, match="this generation read no delegation statistics"):
        carry.check("ns.wc", old, SCOPE, {"ripencc": {"dump": "41234567"}})
    dumps_only = carry.made_by(SCOPE, None, {"ripencc": {"dump": "41234567"}})
    with pytest.raises(carry.Refused, match=r"ns\.wc read no delegation statistics"):
        carry.check("ns.wc", dumps_only, SCOPE, {"arin": {"stats": "20261208"}})


def test_a_previous_results_topic_holding_nothing_is_refused():
    with pytest.raises(carry.Refused, match="holds no record"):
        carry.previous_map("ns.wc", iter([]))


def test_a_carried_record_is_the_same_bytes_whichever_loader_stages_it(tmp_path: Path):
    """What a dumped network kept live is carried with the previous generation's `fetched_at` (it
    was not fetched again), dated to the new dump's read: a loader taking over stages the same bytes,
    so the batch a killed loader had in flight is sent only where the topic lacks it."""
    dumped = NetworkRecord("ripencc", "NET-1", "193.0.0.0", "193.0.0.255", ["193.0.0.0/24"],
                           registrant="Holder", country="NL", source="dump", serial="41234566", crawl="ns.wc",
                           fetched_at="2026-12-06T00:00:00+00:00")
    filled = dumped.with_filled("abuse_emails", ["noc@example.net"], "rdap", "AB1-RIPE")
    filled.fetched_at = "2026-12-06T01:00:00+00:00"
    prev = Previous.of_lines([dumped.to_json(), filled.to_json()])
    new = RegistryDump("ripencc", [], "41234567", "2026-12-07T00:00:00Z")
    staged = replace(dumped, serial="41234567", observed_at=new.observed_at, fetched_at="2026-12-07T09:00Z")
    stagings = []
    for n in range(2):
        (tmp_path / str(n)).mkdir()
        carried = carry.Carried(tmp_path / str(n))
        carry.from_dump(carried, new, iter([staged.to_json().decode()]), prev, io.StringIO())
        carried.close()
        with seed.open_staged(carried.path("ripencc")) as fh:  # its lines, as the load sends them
            stagings.append(fh.read().splitlines())
    assert stagings[0] == stagings[1]
    [again] = map(NetworkRecord.from_own_json, stagings[1])
    assert (again.fetched_at, again.serial) == (filled.fetched_at, "41234567")
    assert again.abuse_emails == ["noc@example.net"]
    kept = carried.kept_live["ripencc"]  # its fill not asked again
    assert carried.kept_live.keys() == {"ripencc"} and (dumped.first, dumped.last) in kept and len(kept) == 1


def test_a_network_staged_unparsed_is_sent_as_the_previous_record_read_again():
    """A dump read against its previous read's digest stages an unchanged network as `[first,last]`
    (not parsed): the dump's item sends it as the previous map's record with the new read's serial,
    and a parsed network's line as staged (before 2026-12-07 the fleet staged every dump whole)."""
    dumped = NetworkRecord("ripencc", "NET-1", "193.0.0.0", "193.0.0.255", ["193.0.0.0/24"],
                           registrant="Holder", country="NL", source="dump", serial="41234566", crawl="ns.wc",
                           fetched_at="2026-12-06T00:00:00+00:00")
    prev = Previous.of_lines([dumped.to_json()])
    new = RegistryDump("ripencc", [], "41234567", "2026-12-07T00:00:00Z")
    added = replace(dumped, handle="NET-2", start_address="193.0.1.0", end_address="193.0.1.255",
                    cidrs=["193.0.1.0/24"], serial="41234567")
    lines = [f"[{dumped.first},{dumped.last}]\n", added.to_json().decode() + "\n"]
    out = io.StringIO()
    carried = carry.Carried(Path("/nonexistent"))
    carry.from_dump(carried, new, iter(lines), prev, out)
    again, kept = out.getvalue().splitlines(keepends=True)
    record = NetworkRecord.from_own_json(again)
    assert (record.handle, record.registrant, record.serial) == ("NET-1", "Holder", "41234567")
    assert kept == lines[1]
    assert carried.figures()["ripencc"] == {"unchanged": 1, "added": 1, "removed": 0}


def test_the_networks_whose_fill_is_carried_are_held_in_a_few_bytes_each(tmp_path: Path):
    """Measured, not timed: what a load holds of the networks whose live fill it carries (not asked
    again): a set of (first, last) tuples held ~170 bytes a network, and at LACNIC every network of
    the dump may be one."""
    n, base = 2_000, ip_int("193.0.0.0")
    dumped = [NetworkRecord("ripencc", f"NET-{i}", ip_str(base + 256 * i), ip_str(base + 256 * i + 255),
                            [f"{ip_str(base + 256 * i)}/24"], registrant="Holder", country="NL",
                            source="dump", serial="41234566", crawl="ns.wc",
                            fetched_at="2026-12-06T00:00:00+00:00")
              for i in range(n)]
    filled = [d.with_filled("abuse_emails", ["noc@example.net"], "rdap", "AB1-RIPE") for d in dumped]
    prev = Previous.of_lines([r.to_json() for r in dumped + filled])
    new = RegistryDump("ripencc", [], "41234567", "2026-12-07T00:00:00Z")
    staged = [replace(d, serial="41234567", observed_at=new.observed_at).to_json().decode() for d in dumped]
    carried = carry.Carried(tmp_path)
    tracemalloc.start()
    try:
        with seed.open_staged(tmp_path / "alone.jsonl.gz", "w") as alone:  # a compressed file's buffers
            alone.write(staged[0])
            buffers = tracemalloc.get_traced_memory()[0]  # (zlib's: ~300 KB, whatever it holds)
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        carry.from_dump(carried, new, iter(staged), prev, io.StringIO())
        held = tracemalloc.get_traced_memory()[0] - before - buffers  # the carried file's buffers aside
    finally:
        tracemalloc.stop()
        carried.close()
    kept = carried.kept_live["ripencc"]
    assert len(kept) == n and all((d.first, d.last) in kept for d in dumped[::37])
    assert (base, base + 511) not in kept
    assert held / n <= 40, held / n
