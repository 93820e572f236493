"""Ground truth of a scenario and the scorer that compares a crawl's results and log with it."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from whoiscrawl import rirs
from whoiscrawl.ipv4 import cidrs, ip_int, ip_str, span_keys
from whoiscrawl.records import NetworkRecord, RecordError
from whoiscrawl.rirs import REGISTRIES
from whoiscrawl.sim import policy, render, scenarios
from whoiscrawl.sim.model import ASSIGNMENT_TYPES, TYPES, World
from whoiscrawl.sim.scenarios import Scenario

BUCKETS: tuple[tuple[str, int, int], ...] = (
    ("/8-/15", 8, 15), ("/16-/19", 16, 19), ("/20-/23", 20, 23), ("/24", 24, 24),
    ("/25-/32", 25, 32),
)
FIELDS = ("name", "country", "cidrs", "parent_handle", "type", "registrant", "abuse_emails")
# What a person reads off a record, scored per registry: holder (the `registrant` field), country,
# abuse e-mails.
PEOPLE_FIELDS = {"holder": "registrant", "country": "country", "abuse_email": "abuse_emails"}


def prefix_len(size: int) -> int:
    """Prefix length of the largest power of two not above size (a range's size class)."""
    return 33 - size.bit_length()


def bucket_of(size: int) -> str:
    plen = prefix_len(size)
    for name, lo, hi in BUCKETS:
        if lo <= plen <= hi:
            return name
    return BUCKETS[0][0] if plen < 8 else BUCKETS[-1][0]


def compared(world: World, i: int) -> dict[str, Any]:
    """Object i's fields the scorer compares with a record (FIELDS), as the registry answers them."""
    p = world.parent[i]
    _, registrant, _, abuse = render.contacts(world, i)
    return {
        "name": render.object_name(world, i),
        "country": render.country(world, i),
        "cidrs": cidrs(world.start[i], world.end[i]),
        "parent_handle": world.handle(p) if p >= 0 else None,
        "type": world.type_word(i),
        "registrant": registrant,
        "abuse_emails": [abuse],
    }


def truth_record(world: World, i: int, addresses: int) -> dict[str, Any]:
    s, e = world.start[i], world.end[i]
    f = compared(world, i)
    return {
        "registry": world.registry(i),
        "handle": world.handle(i),
        "start_address": ip_str(s),
        "end_address": ip_str(e),
        "cidrs": f["cidrs"],
        "name": f["name"],
        "country": f["country"],
        "parent_handle": f["parent_handle"],
        "type": f["type"],
        "status": ["reserved"] if world.is_placeholder(i) else ["active"],
        "abuse_emails": f["abuse_emails"],
        "registrant": f["registrant"],
        "size": e - s + 1,
        "prefix_len": prefix_len(e - s + 1),
        "leaf": world.nchildren[i] == 0,
        "placeholder": world.is_placeholder(i),
        "findable_addresses": addresses,
    }


def truth_records(scenario: Scenario) -> Iterator[dict[str, Any]]:
    """The findable objects of a scenario, in address order."""
    world = scenario.world()
    truth = scenario.truth()
    for i in sorted(truth, key=lambda k: (world.start[k], -world.end[k])):
        yield truth_record(world, i, truth[i])


def write_truth(scenario: Scenario, out: str | Path) -> int:
    n = 0
    with open(out, "w", encoding="utf-8") as fh:
        for rec in truth_records(scenario):
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
            n += 1
    return n


def _read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(doc, dict):
                yield doc


CHUNK = 1 << 16  # result lines read and matched at a time: memory bounded by it, not by the map
_REG = {r: n for n, r in enumerate(REGISTRIES)}


def _record(line: bytes) -> tuple[NetworkRecord, int, int, int] | None:
    """A results line as (record, registry index, first, last), or None where it is no record: not
    the one record reader's (`NetworkRecord.from_own_json`, a file the crawl wrote), or a registry,
    handle or address no record has. A block is its range at its registry. Not its handle: a
    published file spells none (the statistics' free space) or its own, where the RDAP answer has
    another (ARIN's `NET-...`)."""
    try:
        rec = NetworkRecord.from_own_json(line)
        if rec.registry not in _REG or not isinstance(rec.handle, str) or not rec.handle:
            return None
        return rec, _REG[rec.registry], ip_int(rec.start_address), ip_int(rec.end_address)
    except (RecordError, ValueError, TypeError):
        return None


class _Truth:
    """The truth's blocks as arrays: per registry, their (first, last) keys sorted, to find the
    truth block of a chunk of records at once."""

    def __init__(self, world: World, truth: dict[int, int]) -> None:
        self.idx = np.fromiter(truth, np.int64, len(truth))
        self.addresses = np.fromiter(truth.values(), np.int64, len(truth))
        reg = np.frombuffer(world.reg, np.uint8)[self.idx]
        key = span_keys(np.frombuffer(world.start, np.uint32)[self.idx],
                         np.frombuffer(world.end, np.uint32)[self.idx])
        self.sorted: list[tuple[np.ndarray, np.ndarray]] = []  # per registry: keys, positions
        for r in range(len(REGISTRIES)):
            at = np.flatnonzero(reg == r)
            order = np.argsort(key[at], kind="stable")
            self.sorted.append((key[at][order], at[order]))

    def positions(self, reg: np.ndarray, key: np.ndarray) -> np.ndarray:
        """Position in the truth of each (registry, key), -1 where none."""
        out = np.full(len(key), -1, np.int64)
        for r, (keys, at) in enumerate(self.sorted):
            mine = np.flatnonzero(reg == r)
            if not len(mine) or not len(keys):
                continue
            k = np.minimum(np.searchsorted(keys, key[mine]), len(keys) - 1)
            hit = keys[k] == key[mine]
            out[mine[hit]] = at[k[hit]]
        return out


class Distinct:
    """Distinct spans per registry (`span_keys`), added a chunk at a time. A registry's new spans
    wait and are merged into its sorted distinct ones only once they outnumber them, so each span
    is sorted a few times in all, not once per chunk: merging every chunk re-sorted every extra
    block so far each time (1.2M extras met over 60 chunks: 29 s)."""

    def __init__(self) -> None:
        self.kept = [np.zeros(0, np.uint64) for _ in REGISTRIES]
        self.waiting: list[list[np.ndarray]] = [[] for _ in REGISTRIES]

    def add(self, reg: np.ndarray, key: np.ndarray) -> None:
        for r in np.unique(reg).tolist():
            self.waiting[r].append(key[reg == r])
            if sum(len(k) for k in self.waiting[r]) > len(self.kept[r]):
                self._merge(r)

    def _merge(self, r: int) -> None:
        self.kept[r] = np.unique(np.concatenate([self.kept[r], *self.waiting[r]]))
        self.waiting[r] = []

    def __len__(self) -> int:
        for r in range(len(REGISTRIES)):
            self._merge(r)
        return sum(len(k) for k in self.kept)


class _Found:
    """The results read against the truth, streamed: for each truth block whether a record found
    it and which of FIELDS its latest record got right (a bit each), the distinct blocks outside
    the truth, and the lines that were no record."""

    def __init__(self, world: World, truth: _Truth) -> None:
        self.world, self.truth = world, truth
        self.found = np.zeros(len(truth.idx), bool)
        self.right = np.zeros(len(truth.idx), np.uint8)  # bit j: FIELDS[j] equals the truth's
        self.extra = Distinct()  # the blocks outside the truth
        self.bad = 0

    def read(self, path: str | Path) -> None:
        chunk: list[tuple[NetworkRecord, int, int, int]] = []
        with open(path, "rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                got = _record(line)
                if got is None:
                    self.bad += 1
                    continue
                chunk.append(got)
                if len(chunk) >= CHUNK:
                    self._match(chunk)
                    chunk = []
        self._match(chunk)

    def _match(self, chunk: list[tuple[NetworkRecord, int, int, int]]) -> None:
        if not chunk:
            return
        reg = np.fromiter((c[1] for c in chunk), np.uint8, len(chunk))
        key = span_keys(np.fromiter((c[2] for c in chunk), np.uint32, len(chunk)),
                         np.fromiter((c[3] for c in chunk), np.uint32, len(chunk)))
        pos = self.truth.positions(reg, key)
        for (rec, *_), p in zip(chunk, pos.tolist(), strict=True):
            if p >= 0:  # in file order: the latest record of a block is the one that stays
                self.found[p] = True
                self.right[p] = _right_bits(self.world, int(self.truth.idx[p]), rec)
        out = pos < 0
        self.extra.add(reg[out], key[out])

    def extras(self) -> int:
        return len(self.extra)


def _right_bits(world: World, i: int, rec: NetworkRecord) -> int:
    want = compared(world, i)
    return sum(_same(f, want[f], getattr(rec, f)) << j for j, f in enumerate(FIELDS))


def score(scenario: str | Scenario, results_path: str | Path, log_path: str | Path | None = None,
          resolution: int = 24, time_scale: float = 1.0, seed: int | None = None) -> dict[str, Any]:
    """Compare a crawl's results file (and the simulator's request log) with the ground truth of a
    scenario (by name: its first day; a `Scenario`: its own day). The results are streamed: memory
    grows with the truth's blocks (a few bytes each) and a chunk of records, not with the file."""
    scen = scenarios.get(scenario, seed) if isinstance(scenario, str) else scenario.with_seed(seed)
    world = scen.world()
    truth = _Truth(world, scen.truth())
    got = _Found(world, truth)
    got.read(results_path)
    found = int(got.found.sum())
    field_errors, accuracy = _fields(world, truth, got)
    out: dict[str, Any] = {
        "scenario": scen.name,
        "seed": scen.seed,
        "day": scen.day,
        "resolution": resolution,
        "blocks_truth": len(truth.idx),
        "blocks_found": found,
        "blocks_extra": got.extras(),
        "bad_records": got.bad,
        "recall": _ratio(found, len(truth.idx)),
        **_recalls(world, truth, got.found, resolution),
        "address_coverage": _ratio(int(truth.addresses[got.found].sum()), scen.addresses()),
        "field_errors": field_errors,
        "field_accuracy": accuracy,
        "missed": missed(world, truth.idx[~got.found]),
    }
    out["wasted_floor"] = absence_proofs(world, scen.truth(), resolution)
    out.update(_log_figures(world, log_path, found, time_scale))
    return out


MISSED_SHOWN = 20  # missed blocks named in the score: enough to see a pattern, a line each


def missed(world: World, idx: np.ndarray) -> list[dict[str, Any]]:
    """The first MISSED_SHOWN truth blocks no record found (by address), each with its registry,
    status and parent: where a crawl's gaps are, not only how many."""
    def span(i: int) -> str:
        return f"{ip_str(world.start[i])}-{ip_str(world.end[i])}"

    start = np.frombuffer(world.start, np.uint32)[idx]
    end = np.frombuffer(world.end, np.uint32)[idx].astype(np.int64)
    first = idx[np.lexsort((-end, start))[:MISSED_SHOWN]].tolist()
    return [{"registry": REGISTRIES[world.reg[i]], "range": span(i), "status": TYPES[world.typ[i]],
             "parent": span(world.parent[i]) if world.parent[i] >= 0 else None} for i in first]


def buckets_of(size: np.ndarray) -> np.ndarray:
    """`bucket_of` of an array of sizes, as positions in BUCKETS."""
    plen = 33 - np.frexp(size.astype(np.float64))[1]  # frexp's exponent: size's bit length, exact
    bucket = np.where(plen < BUCKETS[0][1], 0, len(BUCKETS) - 1)
    for b, (_, lo, hi) in enumerate(BUCKETS):
        bucket[(plen >= lo) & (plen <= hi)] = b
    return bucket


def _cells(world: World, truth: _Truth, where: np.ndarray) -> Counter[tuple[str, str]]:
    """(registry, prefix bucket) -> truth blocks among `where` (a mask over the truth)."""
    idx = truth.idx[where]
    size = (np.frombuffer(world.end, np.uint32)[idx].astype(np.int64)
            - np.frombuffer(world.start, np.uint32)[idx] + 1)
    bucket = buckets_of(size)
    reg = np.frombuffer(world.reg, np.uint8)[idx]
    counts = np.bincount(reg.astype(np.int64) * len(BUCKETS) + bucket,
                         minlength=len(REGISTRIES) * len(BUCKETS))
    return Counter({(REGISTRIES[c // len(BUCKETS)], BUCKETS[c % len(BUCKETS)][0]): int(n)
                    for c, n in enumerate(counts.tolist()) if n})


def _recalls(world: World, truth: _Truth, found: np.ndarray, resolution: int) -> dict[str, Any]:
    """Recall by prefix size, by registry, by both, and over the networks the resolution can see."""
    min_size = 1 << (32 - resolution)
    in_truth = _cells(world, truth, np.ones(len(found), bool))
    in_found = _cells(world, truth, found)
    size = (np.frombuffer(world.end, np.uint32)[truth.idx].astype(np.int64)
            - np.frombuffer(world.start, np.uint32)[truth.idx] + 1)
    seen = size >= min_size
    res_truth, res_found = int(seen.sum()), int((seen & found).sum())

    def recall(cells: list[tuple[str, str]]) -> dict[str, Any]:
        t, f = sum(in_truth[c] for c in cells), sum(in_found[c] for c in cells)
        return {"truth": t, "found": f, "recall": _ratio(f, t)}

    registries = sorted({r for r, _ in in_truth})
    return {
        "recall_by_prefix": {name: recall([c for c in in_truth if c[1] == name]) for name, _, _ in BUCKETS},
        "recall_by_registry": {r: recall([c for c in in_truth if c[0] == r]) for r in registries},
        "recall_by_registry_prefix": {
            r: {name: recall([(r, name)]) for name, _, _ in BUCKETS if in_truth[r, name]}
            for r in registries},
        "recall_resolution": _ratio(res_found, res_truth),
        "blocks_truth_resolution": res_truth,
    }


def _same(field: str, want: Any, got: Any) -> bool:
    if field in ("cidrs", "abuse_emails"):
        return sorted(str(c) for c in (got or [])) == sorted(str(c) for c in (want or []))
    return (got or None) == (want or None)


def _fields(world: World, truth: _Truth, got: _Found) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
    """Field errors over the found blocks, and the accuracy of holder, country and abuse e-mail
    per registry (the share of found blocks whose field equals the truth's)."""
    right = got.right[got.found]
    reg = np.frombuffer(world.reg, np.uint8)[truth.idx[got.found]]
    ok = {f: (right >> j) & 1 for j, f in enumerate(FIELDS)}
    errors = {f: int(len(right) - ok[f].sum()) for f in FIELDS}
    accuracy: dict[str, dict[str, Any]] = {}
    for r in sorted({REGISTRIES[n] for n in np.unique(reg).tolist()}):
        mine = reg == _REG[r]
        seen = int(mine.sum())
        accuracy[r] = {"blocks": seen, **{name: _ratio(int(ok[f][mine].sum()), seen)
                                          for name, f in PEOPLE_FIELDS.items()}}
    return errors, accuracy


def absence_proofs(world: World, truth: dict[int, int], resolution: int) -> int:
    """Lookups that any crawl complete at the resolution must spend on re-answers: an allocation
    with no children, at a registry that lists none (neither RDAP `rdap-down` nor WHOIS `-m`),
    can be proved empty only by asking at every grid cell of it, and each answer after the first
    repeats the allocation. (Assignments and free space are not probed inside.)"""
    # registries that list children: relation search, WHOIS -m or r >
    listing = [REGISTRIES.index(r.id) for r in rirs.CATALOGUE if r.listings]
    cell = 1 << (32 - resolution)
    idx = np.fromiter(truth, np.int64, len(truth))
    addresses = np.fromiter(truth.values(), np.int64, len(truth))
    typ = np.frombuffer(world.typ, np.uint8)[idx]
    probed = ((np.frombuffer(world.nchildren, np.uint32)[idx] == 0) & (typ != 0)
              & ~np.isin(typ, list(ASSIGNMENT_TYPES))
              & ~np.isin(np.frombuffer(world.reg, np.uint8)[idx], listing))
    return int(np.maximum(addresses[probed] // cell - 1, 0).sum())


def _ratio(a: int | float, b: int | float) -> float | None:
    return round(a / b, 6) if b else None


def _log_figures(world: World, log_path: str | Path | None, found: int,
                 time_scale: float) -> dict[str, Any]:
    if log_path is None or not Path(log_path).is_file():
        return {"lookups": None, "wasted_lookups": None, "lookups_per_block": None,
                "rate_limited": None, "utilization": None}
    lim = policy.limits(time_scale)
    lookups = wasted = limited = 0
    outcomes: dict[str, int] = defaultdict(int)
    seen: set[int] = set()
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    answered: dict[str, int] = defaultdict(int)
    sources: dict[str, set[str]] = defaultdict(set)
    for e in _read_jsonl(log_path):
        lookups += 1
        outcome = str(e.get("outcome"))
        outcomes[outcome] += 1
        reg = e.get("registry")
        if outcome in ("rate_limited", "blocked"):
            limited += 1
        # a listing answers with many networks, and re-answers none: never wasted
        if outcome == "ok" and e.get("protocol") in render.LOOKUP_PROTOCOLS:
            a = e.get("address")
            try:
                obj = world.lookup(ip_int(str(a)))
            except ValueError:
                obj = -1
            if obj >= 0:
                if obj in seen and world.nchildren[obj] == 0:
                    wasted += 1
                seen.add(obj)
        if isinstance(reg, str) and reg in lim:
            t = float(e.get("t", 0.0))
            first.setdefault(reg, t)
            first[reg] = min(first[reg], t)
            last[reg] = max(last.get(reg, t), t)
            sources[reg].add(str(e.get("source")))
            if outcome not in ("rate_limited", "blocked", "fault"):
                answered[reg] += 1
    util: dict[str, Any] = {}
    for reg in sorted(first):
        dur = last[reg] - first[reg]
        allowed = lim[reg]["rate_per_s"] * len(sources[reg])
        achieved = answered[reg] / dur if dur > 0 else None
        util[reg] = {
            "answered": answered[reg],
            "lookups_per_s": round(achieved, 3) if achieved is not None else None,
            "allowed_per_s": round(allowed, 3),
            "sources": len(sources[reg]),
            "utilization": round(achieved / allowed, 4) if achieved is not None and allowed
            else None,
        }
    return {
        "lookups": lookups,
        "wasted_lookups": wasted,
        "lookups_per_block": _ratio(lookups, found),
        "rate_limited": limited,
        "outcomes": dict(outcomes),
        "utilization": util,
    }
