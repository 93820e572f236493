"""A fleet's history read off its change-feed topic (a first map, then change sets) into a store.

A scheduled crawl's operator publishes generation 1 whole (every block `added`, its marker `base`)
and each later generation's change set against the one before, each line with its new record
whole (`feed.publish_generation`): the local store's own design, first map + change sets, kept on
Kafka for as long as the topic is. `sync` brings a store folder up to the topic's newest whole
generation, writing each generation in the store's format (`store.keep_full`, `keep_changes`), so
every reader of a store answers from it (`lookup --at`, `changes --since`, `map --diff`, `export
--at`, the mirror's `?at=`). Only whole generations count, by the feed's marker rule: a generation
cut short and published again begins again at `n` 0, and is taken once its marker follows.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from whoiscrawl import queue
from whoiscrawl.history.feed import MARKER, Kafka, change_of
from whoiscrawl.history.store import (
    Generation,
    HistoryError,
    Store,
    change_line,
    date_text,
    keep_changes,
    keep_full,
    moment,
    parse_date,
)
from whoiscrawl.results.diff import classify
from whoiscrawl.results.source import TOPIC_PREFIX, parse_line


@dataclass(frozen=True)
class Whole:
    """A generation found whole on the topic: its lines' offsets [first, marker) and its marker."""

    first: int
    marker: int
    doc: dict[str, Any]

    @property
    def generation(self) -> int:
        return int(self.doc["generation"])


def whole_generations(lines: Iterator[tuple[int, dict[str, Any]]]) -> list[Whole]:
    """The generations whole on the topic, in order, by the marker rule: a generation's lines run
    from its `n` 0 (the last one, if it was published again) to its marker with as many lines.
    Lines of no fleet generation (a store's `changes --publish`, by date) are passed over."""
    found: list[Whole] = []
    start: tuple[int, int] | None = None  # (generation, offset of its n 0)
    for offset, doc in lines:
        gen = doc.get("generation")
        if not isinstance(gen, int):
            continue
        if doc.get("kind") == MARKER:
            first = start[1] if start is not None and start[0] == gen else offset
            if offset - first == int(doc.get("changes", -1)):
                found.append(Whole(first, offset, doc))
            start = None
        elif doc.get("n") == 0:
            start = (gen, offset)
    return found


def sync(store_dir: Path, kafka: Kafka) -> list[Generation]:
    """Keep in `store_dir` every whole generation on `kafka.crawl`'s change-feed topic that is newer
    than its newest (the store made if missing); returns those kept. A later generation whose
    predecessor the store lacks, and no base to start from, is a HistoryError (nothing of it
    written). Each generation is written (file, then manifest) before the next is read: one cut
    short by an interruption is read again next time."""
    store = Store.open(store_dir, create=True)
    newest = store.generations[-1].generation if store.generations else None
    lines = queue.iter_changes_from(kafka.bootstrap, kafka.prefix, kafka.crawl, kafka.config)
    kept: list[Generation] = []
    for whole in whole_generations(lines):
        if newest is not None and whole.generation <= newest:
            continue
        gen = _keep(store, whole, kafka, newest)
        store.generations.append(gen)
        store.save()
        kept.append(gen)
        newest = whole.generation
    return kept


def _keep(store: Store, whole: Whole, kafka: Kafka, newest: int | None) -> Generation:
    """One whole generation written into the store, from its lines on the topic."""
    day = date_text(parse_date(str(whole.doc.get("time") or whole.doc["date"]), "a generation's time"))
    if store.generations and moment(parse_date(day)) <= store.generations[-1].day:
        topic = queue.changes_topic(kafka.prefix, kafka.crawl)
        raise HistoryError(f"generation {whole.generation} on {topic} ({day}) is not after the newest "
                           f"kept ({store.generations[-1].date})")
    source = f"topic:{kafka.crawl}.changes generation {whole.generation}"
    lines = _lines(whole, kafka)
    if whole.doc.get("base"):
        records = (parse_line(json.dumps(doc["record"])) or {} for doc in lines)
        if not store.generations:
            return keep_full(store, day, records, int(whole.doc["changes"]), source, whole.generation)
        changes = classify(store.records(store.generations[-1]), records)  # a new start: against ours
        return keep_changes(store, day, map(change_line, changes), int(whole.doc["changes"]), source,
                            whole.generation)
    if newest != whole.generation - 1:
        raise HistoryError(f"generation {whole.generation} on the change feed follows generation "
                           f"{whole.generation - 1}, which {store.path} does not hold (it holds "
                           f"{newest or 'none'}): its changes cannot be applied")
    gen = keep_changes(store, day, map(change_of, lines), 0, source, whole.generation)
    gen.blocks = store.generations[-1].blocks + gen.counts.get("added", 0) - gen.counts.get("removed", 0)
    return gen


def _lines(whole: Whole, kafka: Kafka) -> Iterator[dict[str, Any]]:
    """A whole generation's lines, read again from the topic (streamed: a first map is millions)."""
    for offset, doc in queue.iter_changes_from(kafka.bootstrap, kafka.prefix, kafka.crawl, kafka.config,
                                               whole.first):
        if offset >= whole.marker:
            return
        yield doc


def cache_dir(kafka: Kafka) -> Path:
    """Where `--history topic:CRAWL` keeps its store: one per Kafka, prefix and crawl, under
    `WHOISCRAWL_HISTORY_CACHE` (default `~/.cache/whoiscrawl/history`)."""
    root = os.environ.get("WHOISCRAWL_HISTORY_CACHE") or Path.home() / ".cache" / "whoiscrawl" / "history"
    where = hashlib.sha256(kafka.bootstrap.encode()).hexdigest()[:12]
    return Path(root) / where / f"{kafka.prefix}{kafka.crawl}"


def history_of(history: Path | None, kafka_bootstrap: str | None, prefix: str) -> Path | None:
    """A command's optional `--history`, as `store_path` reads it."""
    return store_path(history, kafka_bootstrap, prefix) if history is not None else None


def store_path(history: Path, kafka_bootstrap: str | None, prefix: str) -> Path:
    """A command's `--history`: a store folder as given, or `topic:CRAWL`, the fleet crawl's
    history on its change-feed topic, brought up to date in its cache folder (`sync`) and that
    folder returned."""
    text = str(history)
    if not text.startswith(TOPIC_PREFIX):
        return history
    if not kafka_bootstrap:
        raise HistoryError(f"--history {text} needs --kafka-bootstrap (or WHOISCRAWL_KAFKA_BOOTSTRAP)")
    kafka = Kafka(kafka_bootstrap, text[len(TOPIC_PREFIX):], prefix, queue.kafka_config_from(os.environ))
    store_dir = cache_dir(kafka)
    try:
        sync(store_dir, kafka)
    except KafkaException as exc:
        raise HistoryError(f"reading {queue.changes_topic(prefix, kafka.crawl)} failed: {exc}") from exc
    if not Store.open(store_dir, create=True).generations:
        raise HistoryError(f"{queue.changes_topic(prefix, kafka.crawl)} holds no whole first map yet: "
                           "the operator publishes it when the crawl's generation 1 completes")
    return store_dir
