"""Ground truth of a scenario and the scorer that compares a crawl's results and log with it."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from whoiscrawl import rirs
from whoiscrawl.ipv4 import cidrs, ip_int, ip_str
from whoiscrawl.records import NetworkRecord, RecordError
from whoiscrawl.sim import policy, render, scenarios
from whoiscrawl.sim.model import World, is_assignment
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


def truth_record(world: World, i: int, addresses: int) -> dict[str, Any]:
    p = world.parent[i]
    s, e = world.start[i], world.end[i]
    _, registrant, _, abuse = render.contacts(world, i)
    return {
        "registry": world.registry(i),
        "handle": world.handle(i),
        "start_address": ip_str(s),
        "end_address": ip_str(e),
        "cidrs": cidrs(s, e),
        "name": render.object_name(world, i),
        "country": render.country(world, i),
        "parent_handle": world.handle(p) if p >= 0 else None,
        "type": world.type_word(i),
        "status": ["reserved"] if world.is_placeholder(i) else ["active"],
        "abuse_emails": [abuse],
        "registrant": registrant,
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


def _read_results(path: str | Path) -> Iterator[dict[str, Any] | None]:
    """A results file's records through the one record reader (records.py), None for a line it
    refuses (counted as a bad record); blank lines skipped."""
    with open(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                yield NetworkRecord.from_json(line).to_dict()
            except RecordError:
                yield None


def _key(doc: dict[str, Any]) -> tuple[str, int, int] | None:
    """A block is its range at its registry. Not its handle: a published file spells none (the
    statistics' free space) or its own, where the RDAP answer has another (ARIN's `NET-...`)."""
    try:
        str(doc["handle"])  # every record has one all the same
        return (str(doc["registry"]), ip_int(doc["start_address"]), ip_int(doc["end_address"]))
    except (KeyError, ValueError, TypeError):
        return None


def score(scenario: str | Scenario, results_path: str | Path, log_path: str | Path | None = None,
          resolution: int = 24, time_scale: float = 1.0, seed: int | None = None) -> dict[str, Any]:
    """Compare a crawl's results file (and the simulator's request log) with the ground truth of a
    scenario (by name: its first day; a `Scenario`: its own day)."""
    scen = scenarios.get(scenario, seed) if isinstance(scenario, str) else scenario.with_seed(seed)
    world = scen.world()
    truth = scen.truth()
    results, bad_records = _latest_by_block(results_path)
    by_key = {(world.registry(i), world.start[i], world.end[i]): i for i in truth}
    found = {by_key[k]: doc for k, doc in results.items() if k in by_key}
    field_errors, accuracy = _fields(world, truth, found)
    out: dict[str, Any] = {
        "scenario": scen.name,
        "seed": scen.seed,
        "day": scen.day,
        "resolution": resolution,
        "blocks_truth": len(truth),
        "blocks_found": len(found),
        "blocks_extra": len(results) - len(found),
        "bad_records": bad_records,
        "recall": _ratio(len(found), len(truth)),
        **_recalls(world, truth, found, resolution),
        "address_coverage": _ratio(sum(truth[i] for i in found), scen.addresses()),
        "field_errors": field_errors,
        "field_accuracy": accuracy,
    }
    out["wasted_floor"] = absence_proofs(world, truth, resolution)
    out.update(_log_figures(world, log_path, len(found), time_scale))
    return out


def _latest_by_block(results_path: str | Path) -> tuple[dict[tuple[str, int, int], dict[str, Any]], int]:
    """The results' records by block (the latest record of a block wins, as in every reader of
    results) and how many lines were no record."""
    results: dict[tuple[str, int, int], dict[str, Any]] = {}
    bad_records = 0
    for doc in _read_results(results_path):
        if doc is None or (k := _key(doc)) is None:
            bad_records += 1
            continue
        results[k] = doc
    return results, bad_records


def _recalls(world: World, truth: dict[int, int], found: dict[int, Any], resolution: int) -> dict[str, Any]:
    """Recall by prefix size, by registry, by both, and over the networks the resolution can see."""
    min_size = 1 << (32 - resolution)
    in_truth: Counter[tuple[str, str]] = Counter()  # (registry, prefix bucket) -> networks
    in_found: Counter[tuple[str, str]] = Counter()
    res_truth = res_found = 0
    for i in truth:
        size = world.end[i] - world.start[i] + 1
        cell = (world.registry(i), bucket_of(size))
        in_truth[cell] += 1
        in_found[cell] += i in found
        if size >= min_size:
            res_truth += 1
            res_found += i in found

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


def _fields(world: World, truth: dict[int, int], found: dict[int, dict[str, Any]]
            ) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
    """Field errors over the found blocks, and the accuracy of holder, country and abuse e-mail
    per registry (the share of found blocks whose field equals the truth's)."""
    errors: dict[str, int] = dict.fromkeys(FIELDS, 0)
    right: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(PEOPLE_FIELDS, 0))
    seen: dict[str, int] = defaultdict(int)
    for i, doc in found.items():
        rec = truth_record(world, i, truth[i])
        reg = rec["registry"]
        seen[reg] += 1
        for f in FIELDS:
            errors[f] += not _same(f, rec[f], doc.get(f))
        for name, f in PEOPLE_FIELDS.items():
            right[reg][name] += _same(f, rec[f], doc.get(f))
    accuracy = {reg: {"blocks": seen[reg],
                      **{name: _ratio(right[reg][name], seen[reg]) for name in PEOPLE_FIELDS}}
                for reg in sorted(seen)}
    return errors, accuracy


def absence_proofs(world: World, truth: dict[int, int], resolution: int) -> int:
    """Lookups that any crawl complete at the resolution must spend on re-answers: an allocation
    with no children, at a registry that lists none (neither RDAP `rdap-down` nor WHOIS `-m`),
    can be proved empty only by asking at every grid cell of it, and each answer after the first
    repeats the allocation. (Assignments and free space are not probed inside.)"""
    listing = {r.id for r in rirs.CATALOGUE if r.listings}  # relation search, WHOIS -m or r >
    cell = 1 << (32 - resolution)
    floor = 0
    for i, addresses in truth.items():
        if world.nchildren[i] or world.is_placeholder(i) or is_assignment(world.type_word(i)):
            continue
        if world.registry(i) not in listing:
            floor += max(addresses // cell - 1, 0)
    return floor


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
