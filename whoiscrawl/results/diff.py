"""`whoiscrawl diff`: blocks added, removed, and changed (holder, country, abuse contact, registry)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from whoiscrawl.results.source import ResultSet, block_key
from whoiscrawl.results.summary import holder_of

FIELDS = ("holder", "country", "abuse_emails", "registry")


def facts(doc: dict[str, Any]) -> dict[str, Any]:
    """What a diff compares of one block."""
    return {"holder": holder_of(doc), "country": doc.get("country"),
            "abuse_emails": sorted(doc.get("abuse_emails") or []), "registry": doc["registry"]}


@dataclass
class Change:
    """One block that differs between the two result sets."""

    kind: str  # added | removed | changed
    start_address: str
    end_address: str
    handle: str
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name -> (old, new)
    source: str = "rdap"  # where the record shown was read (the new one; the old one if removed)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"change": self.kind, "start_address": self.start_address,
                               "end_address": self.end_address, "handle": self.handle, "source": self.source}
        if self.fields:
            doc["fields"] = {k: {"old": o, "new": n} for k, (o, n) in self.fields.items()}
        return doc


def changes(old: ResultSet, new: ResultSet) -> Iterator[Change]:
    """A merge of the two sets in hierarchy order (both opened `seekable`): streaming, one block of
    each in memory at a time."""
    a, b = old.nested(), new.nested()
    x, y = next(a, None), next(b, None)
    while x is not None or y is not None:
        kx, ky = _key(x), _key(y)
        if kx < ky:
            assert x is not None
            yield _change("removed", x)
            x = next(a, None)
        elif ky < kx:
            assert y is not None
            yield _change("added", y)
            y = next(b, None)
        else:
            assert x is not None and y is not None
            was, now = facts(x), facts(y)
            diff = {k: (was[k], now[k]) for k in FIELDS if was[k] != now[k]}
            if diff:
                yield _change("changed", y, diff)
            x, y = next(a, None), next(b, None)


def _key(doc: dict[str, Any] | None) -> int:
    return block_key(doc["_first"], doc["_last"]) if doc is not None else 1 << 64  # past every key


def _change(kind: str, doc: dict[str, Any], fields: dict[str, tuple[Any, Any]] | None = None) -> Change:
    return Change(kind, doc["start_address"], doc["end_address"], doc["handle"], fields or {},
                  str(doc.get("source") or "rdap"))


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
        "added": kinds["added"], "removed": kinds["removed"], "changed": kinds["changed"],
        "changed_fields": {f: by_field[f] for f in FIELDS},
        "changes": listed,
    }
