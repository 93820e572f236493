"""The difference of two maps: blocks added, removed, changed (which fields) and transferred (from -> to)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any

import numpy as np
import orjson

from whoiscrawl.results.source import ResultsError, ResultSet, block_key
from whoiscrawl.results.summary import holder_of

KINDS = ("added", "removed", "changed", "transferred")
# What is compared of one block. Not its handle (a published file and an RDAP answer spell it
# differently), nor when or where it was read (fetched_at, serial, source change every crawl).
FIELDS = ("registry", "holder", "country", "abuse_emails", "name", "type")
OWNER = ("registry", "holder")  # a change of either is a transfer (between registries, or holders)


def facts(doc: dict[str, Any]) -> dict[str, Any]:
    """What a diff compares of one block."""
    return {"registry": doc["registry"], "holder": holder_of(doc), "country": doc.get("country"),
            "abuse_emails": sorted(doc.get("abuse_emails") or []), "name": doc.get("name"),
            "type": doc.get("type")}


@dataclass
class Change:
    """One block that differs between the two maps. A block is its range at its registry (as the
    scorer keys it); a range that moved to another registry is one `transferred`, not two changes."""

    kind: str  # added | removed | changed | transferred
    start_address: str
    end_address: str
    handle: str
    registry: str  # the new record's (the old one's if removed)
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name -> (old, new)
    source: str = "rdap"  # where the record shown was read (the new one; the old one if removed)
    record: dict[str, Any] | None = field(default=None, repr=False)  # that record, whole

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"change": self.kind, "registry": self.registry,
                               "start_address": self.start_address, "end_address": self.end_address,
                               "handle": self.handle, "source": self.source}
        if self.fields:
            doc["fields"] = {k: {"old": o, "new": n} for k, (o, n) in self.fields.items()}
        if self.kind == "transferred":
            was, now = ({k: self.fields[k][i] if k in self.fields else self._same(k) for k in OWNER}
                        for i in (0, 1))
            doc["from"], doc["to"] = was, now
        return doc

    def _same(self, name: str) -> Any:
        assert self.record is not None
        return facts(self.record)[name]


def classify(old: Iterable[dict[str, Any]], new: Iterable[dict[str, Any]]) -> Iterator[Change]:
    """The changes from map `old` to map `new`, each an iterable of records as `parse_line` reads
    them, in hierarchy order (`ResultSet.nested()`): a streaming merge, one range of each in memory.
    Input out of that order is refused (ResultsError), since a merge of it would be wrong."""
    a, b = _ranges(old, "old"), _ranges(new, "new")
    x, y = next(a, None), next(b, None)
    while x is not None or y is not None:
        kx, ky = (x[0] if x else 1 << 64), (y[0] if y else 1 << 64)  # past every key when done
        if kx < ky:
            assert x is not None
            yield from (_change("removed", doc) for doc in x[1])
            x = next(a, None)
        elif ky < kx:
            assert y is not None
            yield from (_change("added", doc) for doc in y[1])
            y = next(b, None)
        else:
            assert x is not None and y is not None
            yield from _one_range(x[1], y[1])
            x, y = next(a, None), next(b, None)


def _ranges(docs: Iterable[dict[str, Any]], side: str) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """The records grouped by range (key), each group's records by registry."""
    key, group = -1, list[dict[str, Any]]()
    for doc in docs:
        k = block_key(doc["_first"], doc["_last"])
        if k < key:
            raise ResultsError(f"the {side} map is not in hierarchy order at {doc['start_address']} - "
                               f"{doc['end_address']} (read it with ResultSet(..., seekable=True).nested())")
        if k != key and group:
            yield key, sorted(group, key=lambda d: d["registry"])
            group = []
        key = k
        group.append(doc)
    if group:
        yield key, sorted(group, key=lambda d: d["registry"])


def _one_range(was: list[dict[str, Any]], now: list[dict[str, Any]]) -> Iterator[Change]:
    """One range in both maps: the same registry on both sides is compared; what is left pairs up
    as transfers between registries, and past those, added or removed."""
    olds = {d["registry"]: d for d in was}
    news = {d["registry"]: d for d in now}
    for registry in sorted(olds.keys() & news.keys()):
        change = _compare(olds[registry], news[registry])
        if change is not None:
            yield change
    gone = [olds[r] for r in sorted(olds.keys() - news.keys())]
    came = [news[r] for r in sorted(news.keys() - olds.keys())]
    for x, y in zip_longest(gone, came):
        if x is None:
            yield _change("added", y)
        elif y is None:
            yield _change("removed", x)
        else:
            change = _compare(x, y)
            assert change is not None  # the registries differ
            yield change


def _compare(x: dict[str, Any], y: dict[str, Any]) -> Change | None:
    was, now = facts(x), facts(y)
    diff = {k: (was[k], now[k]) for k in FIELDS if was[k] != now[k]}
    if not diff:
        return None
    return _change("transferred" if diff.keys() & set(OWNER) else "changed", y, diff)


def _change(kind: str, doc: dict[str, Any], fields: dict[str, tuple[Any, Any]] | None = None) -> Change:
    return Change(kind, doc["start_address"], doc["end_address"], doc["handle"], doc["registry"],
                  fields or {}, str(doc.get("source") or "rdap"), doc)


def changes(old: ResultSet, new: ResultSet) -> Iterator[Change]:
    """The changes between two result sets (both opened `seekable`), streaming. A block whose two
    winning lines give the same facts by their bytes (`same_facts`) is passed over unparsed: a
    refresh's map is mostly its previous map's records read again."""
    both, in_old, in_new = np.intersect1d(old.keys, new.keys, assume_unique=True, return_indices=True)
    same = np.fromiter(map(same_facts, old.lines_at(in_old), new.lines_at(in_new)), bool, len(both))
    return classify(old.records_at(_without(len(old.keys), in_old[same])),
                    new.records_at(_without(len(new.keys), in_new[same])))


# Where a record's provenance begins as `NetworkRecord.to_json` writes it: every key `facts` reads
# (`FACT_KEYS`) comes before it.
_PROVENANCE = b',"query_address":'
FACT_KEYS = frozenset({"registry", "registrant", "name", "handle", "country", "abuse_emails", "type"})


def same_facts(a: bytes, b: bytes) -> bool:
    """Do two records' lines give the same `facts`, told from their bytes? True where they are the
    same up to where provenance begins, and what follows is the rest of the record (not the inside
    of a field) with no key `facts` reads (JSON's last key would win); False is "not known": parse."""
    cut = a.find(_PROVENANCE)
    if cut < 0 or a[:cut] != b[:cut] or not b.startswith(_PROVENANCE, cut):
        return False
    try:
        rests = [orjson.loads(b"{" + line[cut + 1:]) for line in (a, b)]
    except orjson.JSONDecodeError:  # the cut inside a field: what follows closes more than the record
        return False
    return all(isinstance(rest, dict) and not rest.keys() & FACT_KEYS for rest in rests)


def _without(count: int, dropped: np.ndarray) -> np.ndarray:
    """Positions 0..count-1 but `dropped`, in order."""
    keep = np.ones(count, dtype=bool)
    keep[dropped] = False
    return np.flatnonzero(keep)


def diff_report(old: ResultSet, new: ResultSet, keep: int | None = None) -> dict[str, Any]:
    """Counts by kind and by changed field, and the changes themselves (the first `keep`, or all)."""
    kinds: Counter[str] = Counter()
    by_field: Counter[str] = Counter()
    listed: list[dict[str, Any]] = []
    for change in changes(old, new):
        kinds[change.kind] += 1
        by_field.update(change.fields.keys())
        if keep is None or len(listed) < keep:
            listed.append(change.to_dict())
    return {
        "old_blocks": old.blocks, "new_blocks": new.blocks,
        **{kind: kinds[kind] for kind in KINDS},
        "changed_fields": {f: by_field[f] for f in FIELDS},
        "changes": listed,
    }
