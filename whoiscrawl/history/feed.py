"""The change feed: what changed in a store's generations after a date, a change a line."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

from whoiscrawl.history.store import HistoryError, Store, read_changes

# A feed line's members, in order: the generation's date, the kind, the block, then what changed.
MEMBERS = ("date", "kind", "registry", "range", "start_address", "end_address", "handle", "fields", "from",
           "to", "source")


def feed(store: Store, since: date, until: date | None = None) -> Iterator[dict[str, Any]]:
    """Every change of the generations dated after `since` (up to `until`), oldest first, each as
    `{date, kind, registry, range, start_address, end_address, handle, fields, from, to, source}`
    (`fields`, `from` and `to` where the kind has them)."""
    if not store.generations:
        raise HistoryError(f"{store.path} holds no generation yet")
    first = store.generations[0]
    if since < first.day:
        raise HistoryError(f"--since {since} is before the first generation of {store.path} "
                           f"({first.date}; older changes were never kept or were pruned): give a date "
                           f"from {first.date} on")
    if until is not None and until < since:
        raise HistoryError(f"--until {until} is before --since {since}")
    for gen in store.generations[1:]:
        if gen.day <= since or (until is not None and gen.day > until):
            continue
        for change in read_changes(store.path / gen.file):
            yield line(gen.date, change)


def line(day: str, change: dict[str, Any]) -> dict[str, Any]:
    """One change of a change set as a feed line."""
    doc = {"date": day, "kind": change["change"],
           "range": f"{change['start_address']} - {change['end_address']}", **change}
    return {k: doc[k] for k in MEMBERS if k in doc}
