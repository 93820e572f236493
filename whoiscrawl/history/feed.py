"""The change feed: what changed in a store's generations after a date, a change a line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from whoiscrawl import queue
from whoiscrawl.history.store import HistoryError, Store, read_changes

# A feed line's members, in order: the generation's date, the kind, the block, then what changed.
MEMBERS = ("date", "kind", "registry", "range", "start_address", "end_address", "handle", "fields", "from",
           "to", "source")


@dataclass(frozen=True)
class Kafka:
    """Where the feed is published: a crawl's change-feed topic (`queue.changes_topic`)."""

    bootstrap: str
    crawl: str
    prefix: str = "whoiscrawl."
    config: dict[str, str] = field(default_factory=dict)


def feed(store: Store, since: date, until: date | None = None) -> Iterator[dict[str, Any]]:
    """Every change of the generations dated after `since` (up to `until`), oldest first, each as
    `{date, kind, registry, range, start_address, end_address, handle, fields, from, to, source}`
    (`fields`, `from` and `to` where the kind has them). The dates are checked at the call."""
    _check(store, since, until)
    return _lines(store, since, until)


def _check(store: Store, since: date, until: date | None) -> None:
    if not store.generations:
        raise HistoryError(f"{store.path} holds no generation yet")
    first = store.generations[0]
    if since < first.day:
        raise HistoryError(f"--since {since} is before the first generation of {store.path} "
                           f"({first.date}; older changes were never kept or were pruned): give a date "
                           f"from {first.date} on")
    if until is not None and until < since:
        raise HistoryError(f"--until {until} is before --since {since}")


def _lines(store: Store, since: date, until: date | None) -> Iterator[dict[str, Any]]:
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


def publish(store: Store, since: date, until: date | None, kafka: Kafka) -> dict[str, Any]:
    """Put the feed of the generations after `since` on the crawl's change-feed topic: those not
    on it yet. Each generation ends with a marker line (`kind` "generation", its change count), so
    one cut short (a crash, a broker gone) is published again whole: at least once, in order."""
    _check(store, since, until)
    topic = queue.ensure_changes_topic(kafka.bootstrap, kafka.prefix, kafka.crawl, kafka.config)
    last = queue.last_change(kafka.bootstrap, kafka.prefix, kafka.crawl, kafka.config)
    done = None
    if last is not None:  # the newest generation on the topic: complete if its marker came last
        done = date.fromisoformat(last["date"]) - (timedelta(0) if last["kind"] == "generation" else
                                                   timedelta(days=1))
    after = max(since, done) if done is not None else since
    dates = [g.date for g in store.generations[1:] if g.day > after and (until is None or g.day <= until)]
    published = 0
    for day in dates:
        published += queue.publish(kafka.bootstrap, topic, _messages(store, day), kafka.config, "changes")
    return {"topic": topic, "generations": dates, "published": published,
            "already_on_topic": str(done) if done is not None else None}


def _messages(store: Store, day: str) -> Iterator[tuple[bytes, bytes]]:
    gen = next(g for g in store.generations if g.date == day)
    n = 0
    for change in read_changes(store.path / gen.file):
        doc = {**line(day, change), "n": n}  # its place in the generation: 0 begins it (again)
        n += 1
        yield f"{doc['registry']} {doc['range']}".encode(), json.dumps(doc, separators=(",", ":")).encode()
    yield f"generation {day}".encode(), json.dumps({"date": day, "kind": "generation", "changes": n}).encode()
