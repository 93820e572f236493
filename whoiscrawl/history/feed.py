"""The change feed: what changed in a store's generations after a date, a change a line."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

from whoiscrawl import queue
from whoiscrawl.history.store import (
    HistoryError,
    Store,
    change_line,
    date_text,
    moment,
    parse_date,
    read_changes,
)
from whoiscrawl.results.diff import KINDS, classify
from whoiscrawl.results.source import TOPIC_PREFIX, open_results

# A feed line's members, in order: the generation's date, the kind, the block, then what changed.
MEMBERS = ("date", "kind", "registry", "range", "start_address", "end_address", "handle", "fields", "from",
           "to", "source")
MARKER = "generation"  # the kind of the line that closes a generation on the topic


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
    return _lines(store, *_check(store, since, until))


def _check(store: Store, asked: date, up_to: date | None) -> tuple[datetime, datetime | None]:
    """`--since` and `--until` as times (a day: its end), checked against the store."""
    since, until = moment(asked, end=True), moment(up_to, end=True) if up_to is not None else None
    if not store.generations:
        raise HistoryError(f"{store.path} holds no generation yet")
    first = store.generations[0]
    if since < first.day:
        raise HistoryError(f"--since {date_text(asked)} is before the first kept generation, {first.date} "
                           f"({store.path}; older changes were never kept or were pruned): give a date "
                           f"from {first.date} on")
    if until is not None and until < since:
        raise HistoryError(f"--until {date_text(up_to or until)} is before --since {date_text(asked)}")
    return since, until


def _lines(store: Store, since: datetime, until: datetime | None) -> Iterator[dict[str, Any]]:
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


def change_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A change-feed topic's line as the change set's line it was made from (`line`'s inverse;
    the record whole is on the topic's lines): what a store keeps and `store.apply` applies."""
    change = {"change": doc["kind"], **{k: doc[k] for k in MEMBERS[2:] if k in doc and k != "range"}}
    return change | ({"record": doc["record"]} if "record" in doc else {})


def publish(store: Store, since: date, until: date | None, kafka: Kafka) -> dict[str, Any]:
    """Put the feed of the generations after `since` on the crawl's change-feed topic: those not
    on it yet. Each generation ends with a marker line (`kind` "generation", its change count), so
    one cut short (a crash, a broker gone) is published again whole: at least once, in order."""
    since, until = _check(store, since, until)
    topic = queue.ensure_changes_topic(kafka.bootstrap, kafka.prefix, kafka.crawl, kafka.config)
    newest = reached(queue.last_change(kafka.bootstrap, kafka.prefix, kafka.crawl, kafka.config), "date")
    done = None
    if newest is not None:
        day, whole = moment(parse_date(str(newest[0]), "the topic's newest date")), newest[1]
        done = day if whole else day - timedelta(microseconds=1)
    after = max(since, done) if done is not None else since
    dates = [g.date for g in store.generations[1:] if g.day > after and (until is None or g.day <= until)]
    published = 0
    for day_text in dates:
        gen = next(g for g in store.generations if g.date == day_text)
        published += queue.publish(kafka.bootstrap, topic, messages({"date": day_text},
                                   read_changes(store.path / gen.file), Counter()), kafka.config, "changes")
    return {"topic": topic, "generations": dates, "published": published,
            "already_on_topic": date_text(done) if done is not None else None}


def reached(last: Mapping[str, Any] | None, key: str) -> tuple[Any, bool] | None:
    """The marker rule, read off the newest message of a change-feed topic: the newest generation
    on it (its `key`: `date` for a store's, `generation` for a fleet's) and whether it is whole (its
    marker came last). One cut short is published again whole; one whole is not published again.
    None: nothing of ours on the topic (empty, or its newest message lacks `key`)."""
    if last is None or last.get(key) is None:
        return None
    return last[key], last.get("kind") == MARKER


def messages(head: Mapping[str, Any], changes: Iterable[Mapping[str, Any]],
             counts: Counter[str]) -> Iterator[tuple[bytes, bytes]]:
    """One generation's feed as keyed messages: each change a feed line (`line`) with `head`'s other
    members (a fleet's `generation`) and `n`, its place in the generation (0 begins it, again if it
    is published again); then the marker `{date, kind: "generation", changes, counts}` with `head`.
    `counts` is filled by kind as the changes go by."""
    day, extra = str(head["date"]), {k: v for k, v in head.items() if k != "date"}
    n = 0
    for change in changes:
        record = {"record": change["record"]} if "record" in change else {}  # the topic rebuilds maps
        doc = {**line(day, dict(change)), **extra, "n": n, **record}
        counts[doc["kind"]] += 1
        n += 1
        yield f"{doc['registry']} {doc['range']}".encode(), json.dumps(doc, separators=(",", ":")).encode()
    marker = {"date": day, "kind": MARKER, **extra, "changes": n,
              "counts": {kind: counts[kind] for kind in KINDS}}
    yield f"{MARKER} {day}".encode(), json.dumps(marker).encode()


def publish_generation(kafka: Kafka, generation: int, when: str, before: str | None,
                       after: str) -> dict[str, Any]:
    """A fleet generation's change feed: crawl `after`'s map (its compacted results topic) against
    crawl `before`'s, the one classifier's changes (`results.diff.classify`), each with its new
    record whole, published on `kafka.crawl`'s change-feed topic with `generation` and `time`
    (`when`, its time in UTC; `date` its day) in every line and in the marker, unless the marker
    rule finds it there already. With no `before` (generation 1, or one whose predecessor is gone)
    it is the map whole, every block `added`, and its marker says `base`: the topic then holds a
    first map and the change sets after it, which is a history (`history.topic`). Returns `{topic,
    generation, published, counts, base, already_on_topic}` (the counts and base read back from its
    marker when it was there). A previous map that holds no record (its data gone) is a
    HistoryError: nothing is published."""
    topic = queue.ensure_changes_topic(kafka.bootstrap, kafka.prefix, kafka.crawl, kafka.config)
    last = queue.last_change(kafka.bootstrap, kafka.prefix, kafka.crawl, kafka.config)
    if generation_on_topic(last, generation):
        mine = (last or {}).get("generation") == generation and not (last or {}).get("rebase")
        marker = last if mine else {}  # a rebase's marker counts the history, not this generation
        return {"topic": topic, "generation": generation, "published": 0, "already_on_topic": True,
                "counts": dict((marker or {}).get("counts") or {}), "base": bool((marker or {}).get("base"))}
    opened = partial(open_results, kafka_bootstrap=kafka.bootstrap, topic_prefix=kafka.prefix,
                     seekable=True, kafka_config=kafka.config, spill=True)
    counts: Counter[str] = Counter()
    head: dict[str, Any] = {"date": when[:10], "time": when, "generation": generation}
    with contextlib.ExitStack() as stack:
        new = stack.enter_context(opened(f"{TOPIC_PREFIX}{after}"))
        old = stack.enter_context(opened(f"{TOPIC_PREFIX}{before}")) if before is not None else None
        if old is not None and not old.blocks:
            raise HistoryError(f"{before}'s results topic holds no record (its data gone): generation "
                               f"{generation}'s changes cannot be told")
        changes = map(change_line, classify(old.nested() if old is not None else [], new.nested()))
        head |= {} if old is not None else {"base": True}
        sent = queue.publish(kafka.bootstrap, topic, messages(head, changes, counts), kafka.config, "changes")
    return {"topic": topic, "generation": generation, "published": sent, "base": before is None,
            "counts": {kind: counts[kind] for kind in KINDS}, "already_on_topic": False}


def generation_on_topic(last: Mapping[str, Any] | None, generation: int) -> bool:
    """Is a fleet's generation whole on its change-feed topic, by the marker rule (`reached`) read
    off the topic's newest message? Yes if that is its marker or anything of a later generation;
    no if it is a change of it (cut short: published again whole), of an earlier one, or none."""
    newest = reached(last, "generation")
    if newest is None:
        return False
    on, whole = int(newest[0]), newest[1]
    return on > generation or (on == generation and whole)
