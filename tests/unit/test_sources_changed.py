"""A dump read against the previous read's digest: only what changed is parsed, and the networks are
those a whole read gives (added, removed, edited, joined with a changed contact, edited only where
no field is read); a cut-off dump or an unusable digest falls back as a whole read does."""

from __future__ import annotations

import gzip
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from whoiscrawl.records import NetworkRecord
from whoiscrawl.sources import changed, digest, dumps, seed
from whoiscrawl.sources.published import RegistryDump
from whoiscrawl.space import Scope

PROVENANCE = ("fetched_at", "serial", "observed_at")


def _inetnum(n: int, extra: str = "") -> str:
    return (f"inetnum: 10.0.{n}.0 - 10.0.{n}.255\nnetname: NET-{n}\norg: ORG-{n}\nstatus: ASSIGNED PA\n"
            f"mnt-by: MNT-{n}\n{extra}")


def _world(where: Path, nets: dict[int, str], orgs: dict[int, str], roles: dict[int, str]) -> list[Path]:
    """A RIPE NCC split dump: inetnum n joined with organisation n, whose abuse-c is role n."""
    where.mkdir()
    texts = {"organisation": [f"organisation: ORG-{n}\norg-name: {name}\ncountry: nl\nabuse-c: AR{n}\n"
                              for n, name in orgs.items()],
             "role": [f"role: Abuse {n}\nabuse-mailbox: {box}\nnic-hdl: AR{n}\n" for n, box in roles.items()],
             "inetnum": list(nets.values())}
    paths = []
    for kind in ("organisation", "role", "inetnum"):
        paths.append(where / f"ripe.db.{kind}.gz")
        paths[-1].write_bytes(gzip.compress(("# terms\n\n" + "\n".join(texts[kind])).encode()))
    return paths


def _many(tmp_path: Path, n: int) -> tuple[RegistryDump, set[tuple[int, int]], Path]:
    """A dump of `n` networks (and as many organisations and roles) read whole: its digest."""
    nets = {i: _inetnum(i).replace(f"10.0.{i}.", f"10.{i >> 8}.{i & 255}.") for i in range(n)}
    orgs, roles = {i: f"Holder {i}" for i in range(n)}, {i: f"abuse{i}@example.nl" for i in range(n)}
    dump = RegistryDump("ripencc", _world(tmp_path / "many", nets, orgs, roles), "1", "2026-12-06")
    kept = tmp_path / "many.digest.npz"
    _, records = dumps.read_registry("ripencc", dump.paths, "1", "2026-12-06", tmp_path, kept)
    return dump, {(r.first, r.last) for r in records}, kept


def _peak(run: Callable[[], object]) -> int:
    """The most `run` had allocated at once (tracemalloc: numpy's arrays too; a file mapped not)."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_previous_digest_is_mapped_not_read(tmp_path: Path):
    """Loading a digest reads none of its columns (the whole `.npz` was read: RIPE NCC's 35 MB on
    `standard`); what it gives is what was written."""
    _, _, kept = _many(tmp_path, 6_000)
    digest.Digest.load(kept)  # the first load imports zipfile's codec of names (~70 kB)
    assert _peak(lambda: digest.Digest.load(kept)) < kept.stat().st_size / 16
    got = digest.Digest.load(kept)
    with np.load(kept) as want:
        assert (got.networks.keys == want["n_keys"]).all() and (got.rows.keys == want["r_json"]).all()
        assert (got.firsts == want["n_first"]).all() and (got.contacts.hashes == want["c_hash"]).all()


def test_a_read_against_the_previous_digest_holds_a_few_dozen_bytes_a_text(tmp_path: Path):
    """Measured, not timed: the most a read against the previous read holds at once, per text of
    the dump, nothing changed (the previous read's columns loaded, a set and a dict of its hashes,
    an object a network unchanged and a copy of its contacts held 354 bytes a text; now 139)."""
    dump, held, kept = _many(tmp_path, 6_000)

    def read() -> None:
        items = changed.read_changed(dump, digest.Digest.load(kept), held, tmp_path / "new.npz", tmp_path)[1]
        assert sum(isinstance(i, changed.Unchanged) for i in items) == 6_000

    assert _peak(read) / 18_000 <= 200


def _fields(record: NetworkRecord) -> dict[str, object]:
    return {k: v for k, v in record.to_dict().items() if k not in PROVENANCE}


def _day0(tmp_path: Path) -> tuple[RegistryDump, dict[tuple[int, int], NetworkRecord], Path]:
    nets = {n: _inetnum(n) for n in range(6)}
    orgs, roles = {n: f"Holder {n}" for n in range(6)}, {n: f"abuse{n}@example.nl" for n in range(6)}
    dump = RegistryDump("ripencc", _world(tmp_path / "day0", nets, orgs, roles), "1", "2026-12-06")
    kept = tmp_path / "day0.digest.npz"
    report, records = dumps.read_registry("ripencc", dump.paths, "1", "2026-12-06", tmp_path, kept)
    before = {(r.first, r.last): r for r in records}
    assert report.complete and len(before) == 6 and kept.exists()
    return dump, before, kept


def _day1(tmp_path: Path) -> RegistryDump:
    nets = {n: _inetnum(n) for n in (0, 1, 2, 3, 5)}  # 4 removed
    nets[1] = _inetnum(1).replace("NET-1", "NET-1-EDITED")  # edited
    nets[2] = _inetnum(2).replace("MNT-2", "MNT-OTHER")  # edited where no field is read
    nets[6] = _inetnum(6)  # added
    orgs = {n: f"Holder {n}" for n in range(7)} | {3: "Renamed 3"}  # 3's text the same, its holder not
    roles = {n: f"abuse{n}@example.nl" for n in range(7)} | {5: "new5@example.nl"}  # via the org's abuse-c
    return RegistryDump("ripencc", _world(tmp_path / "day1", nets, orgs, roles), "2", "2026-12-07")


def test_only_what_changed_is_parsed_and_the_networks_are_a_whole_reads(tmp_path: Path):
    _, before, kept = _day0(tmp_path)
    dump1, day1 = _day1(tmp_path), tmp_path / "day1.digest.npz"
    reuse = changed.Reuse(kept, "1", "2026-12-06", set(before))
    report, got = changed.read_changed(dump1, reuse.load("ripencc"), reuse.held, day1, tmp_path)
    items = list(got)
    unchanged = {(i.first, i.last) for i in items if isinstance(i, changed.Unchanged)}
    assert unchanged == {(0x0A000000, 0x0A0000FF)}  # network 0 alone: text and contacts the same
    read = {(i.first, i.last): before[(i.first, i.last)] if isinstance(i, changed.Unchanged) else i
            for i in items}
    _, whole = dumps.read_registry("ripencc", dump1.paths, "2", "2026-12-07", tmp_path)
    assert {k: _fields(r) for k, r in read.items()} == {(r.first, r.last): _fields(r) for r in whole}
    assert report.complete and report.records == 6
    assert read[(0x0A000300, 0x0A0003FF)].registrant == "Renamed 3"
    assert read[(0x0A000500, 0x0A0005FF)].abuse_emails == ["new5@example.nl"]
    assert _fields(read[(0x0A000200, 0x0A0002FF)]) == _fields(before[(0x0A000200, 0x0A0002FF)])
    assert (0x0A000400, 0x0A0004FF) not in read and (0x0A000600, 0x0A0006FF) in read
    # the next day reads against this one: nothing changed, nothing parsed
    again = changed.read_changed(dump1, digest.Digest.load(day1), set(read),
                                 tmp_path / "day2.digest.npz", tmp_path)[1]
    assert all(isinstance(i, changed.Unchanged) for i in again)


def test_staged_against_the_previous_read_unchanged_networks_are_spans(tmp_path: Path):
    _, before, kept = _day0(tmp_path)
    dump1, staged = _day1(tmp_path), tmp_path / "ripencc.records.jsonl"
    report = seed.stage(dump1, Scope.of([(0, (1 << 32) - 1)]), staged, tmp_path / "new.digest.npz",
                        changed.Reuse(kept, "1", "2026-12-06", set(before)))
    lines = [seed.staged_record(line) for line in staged.read_text().splitlines()]
    assert report.reused == 1 and report.digest_problem is None
    assert sum(isinstance(r, changed.Unchanged) for r in lines) == 1 and len(lines) == 6


def test_a_digest_of_another_read_or_broken_falls_back_to_a_whole_read(tmp_path: Path):
    _, before, kept = _day0(tmp_path)
    dump1, staged = _day1(tmp_path), tmp_path / "ripencc.records.jsonl"
    for reuse, said in [(changed.Reuse(kept, "0", "2026-12-05", set(before)), "another read"),
                        (changed.Reuse(tmp_path / "day0", "1", "2026-12-06", set(before)), "cannot be read")]:
        report = seed.stage(dump1, None, staged, tmp_path / "new.digest.npz", reuse)
        assert report.digest_problem and said in report.digest_problem
        assert report.reused == 0 and len(staged.read_text().splitlines()) == 6


def test_a_cut_off_dump_is_not_used_and_keeps_no_digest(tmp_path: Path):
    _, before, kept = _day0(tmp_path)
    dump1 = _day1(tmp_path)
    whole = dump1.paths[2].read_bytes()
    dump1.paths[2].write_bytes(whole[: len(whole) // 2])
    new_digest = tmp_path / "new.digest.npz"
    report = seed.stage(dump1, None, tmp_path / "staged.jsonl", new_digest,
                        changed.Reuse(kept, "1", "2026-12-06", set(before)))
    assert not report.complete and "ripe.db.inetnum.gz, line" in report.problems[0]
    assert "ends early" in report.problems[0]
    notes: list[str] = []
    assert seed.usable(dump1, report, notes.append, "refreshed live") is None
    assert "refreshed live" in notes[0] and not new_digest.exists()


def _nets(got: digest.Digest) -> set[tuple[int, int, int, int, tuple[int, ...]]]:
    lists = got.networks
    return {(int(lists.hashes[i]), int(got.kind[i]), int(got.firsts[i]), int(got.lasts[i]),
             tuple(lists.keys[lists.offsets[i]:lists.offsets[i + 1]].tolist()))
            for i in range(len(lists.hashes))}


def test_the_digest_written_against_the_previous_read_is_a_whole_reads(tmp_path: Path):
    _, before, kept = _day0(tmp_path)
    dump1, day1 = _day1(tmp_path), tmp_path / "day1.digest.npz"
    items = list(changed.read_changed(dump1, digest.Digest.load(kept), set(before), day1, tmp_path)[1])
    assert any(isinstance(i, changed.Unchanged) for i in items)
    whole = tmp_path / "whole.digest.npz"
    list(dumps.read_registry("ripencc", dump1.paths, "2", "2026-12-07", tmp_path, whole)[1])
    a, b = digest.Digest.load(day1), digest.Digest.load(whole)
    for got, want in [(a.contacts, b.contacts), (a.rows, b.rows)]:
        assert all((getattr(got, f) == getattr(want, f)).all() for f in ("hashes", "offsets", "keys"))
    assert (a.clean == b.clean).all() and _nets(a) == _nets(b)


def test_a_contact_given_twice_whose_texts_swap_places_reads_its_networks_again(tmp_path: Path):
    """A handle given twice is the later object's: the same two texts in the other order change it."""
    def world(where: Path, names: list[str]) -> RegistryDump:
        where.mkdir()
        orgs = "\n".join(f"organisation: ORG-1\norg-name: {name}\ncountry: nl\n" for name in names)
        for kind, text in [("organisation", orgs), ("role", ""), ("inetnum", _inetnum(1))]:
            (where / f"ripe.db.{kind}.gz").write_bytes(gzip.compress(("# terms\n\n" + text).encode()))
        kinds = ("organisation", "role", "inetnum")
        return RegistryDump("ripencc", [where / f"ripe.db.{k}.gz" for k in kinds], "1", "2026-12-06")
    day0, kept = world(tmp_path / "day0", ["Holder A", "Holder B"]), tmp_path / "day0.digest.npz"
    (was,) = dumps.read_registry("ripencc", day0.paths, "1", "2026-12-06", tmp_path, kept)[1]
    assert was.registrant == "Holder B"
    day1 = world(tmp_path / "day1", ["Holder B", "Holder A"])
    (got,) = changed.read_changed(day1, digest.Digest.load(kept), {(was.first, was.last)},
                                  tmp_path / "day1.digest.npz", tmp_path)[1]
    assert isinstance(got, NetworkRecord) and got.registrant == "Holder A"


@given(st.lists(st.lists(st.integers(0, 2**63)), max_size=12), st.data())
def test_flat_lists_made_and_placed_are_the_lists(lists: list[list[int]], data: st.DataObject):
    # one home for a flat list's offsets (`digest.offsets_of`): what the digest keeps and what a read
    # against it places of it (from the previous read and what it parsed, a run at a time) are each
    # the lists themselves
    def flat(got: list[list[int]], dtype: type = np.uint64) -> digest.Lists:
        return digest.Lists(np.arange(len(got), dtype=np.uint64), digest.offsets_of([len(k) for k in got]),
                            np.array([k for keys in got for k in keys], dtype))

    def listed(got: digest.Lists) -> list[list[int]]:
        return [got.keys[got.offsets[n]:got.offsets[n + 1]].tolist() for n in range(len(got.offsets) - 1)]

    assert digest.owners(flat(lists).offsets).tolist() == [i for i, keys in enumerate(lists) for _ in keys]
    sources = [lists, lists[::-1]]
    picks = data.draw(st.lists(st.tuples(st.integers(0, 1), st.integers(0, max(0, len(lists) - 1))),
                               max_size=3 * len(lists))) if lists else []
    parts = [(np.array([j for j, (p, _) in enumerate(picks) if p == part], np.int64),
              np.array([i for p, i in picks if p == part], np.int64),
              flat(sources[part]), flat([[k % 256 for k in keys] for keys in sources[part]], np.uint8))
             for part in (0, 1)]
    with tempfile.TemporaryDirectory() as folder:
        writer = digest.Writer(Path(folder) / "d.npz", "ripencc", None, None)
        keys, rows = writer.set_contacts(np.zeros(len(picks), np.uint64), np.ones(len(picks), bool), parts)
        assert listed(keys) == [sources[p][i] for p, i in picks]
        assert listed(rows) == [[k % 256 for k in sources[p][i]] for p, i in picks]
        writer.discard()


_TEXTS = st.lists(st.lists(st.integers(0, 5), max_size=4), max_size=8)  # each text's contact keys
_HASHES = st.lists(st.integers(0, 3), min_size=8, max_size=8)  # few: texts alike in both reads


@given(_TEXTS, _TEXTS, _HASHES, _HASHES)
def test_changed_keys_are_those_whose_texts_in_file_order_differ(
        before: list[list[int]], now: list[list[int]], b_hash: list[int], n_hash: list[int]):
    def lists(texts: list[list[int]], hashes: list[int]) -> digest.Lists:
        return digest.Lists(np.array(hashes[:len(texts)], np.uint64),
                            digest.offsets_of([len(t) for t in texts]),
                            np.array([k for t in texts for k in t], np.uint64))

    def texts_of(texts: list[list[int]], hashes: list[int], key: int) -> list[int]:
        return [hashes[i] for i, t in enumerate(texts) for k in t if k == key]

    want = sorted(k for k in range(6) if texts_of(before, b_hash, k) != texts_of(now, n_hash, k))
    assert digest.changed_keys(lists(before, b_hash), lists(now, n_hash)).tolist() == want
