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

import contextlib
import fcntl
import hashlib
import itertools
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from whoiscrawl import queue
from whoiscrawl.history.feed import MARKER, Kafka, change_of, messages
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
    prune,
    read_changes,
    replace_generations,
)
from whoiscrawl.results.diff import classify
from whoiscrawl.results.source import TOPIC_PREFIX, parse_line

LOCK = ".sync.lock"  # held while a store is brought up to its topic (`sync`, `rebase`)


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
    than its newest (the store made if missing); returns those kept. Only what is past the offset
    the store holds is read (`Store.offset`: after the last generation it took or passed over). A
    later generation whose predecessor the store lacks, and no base to start from, is a
    HistoryError (nothing of it written). Each generation is written (file, then manifest with the
    offset) before the next is read: one cut short by an interruption is read again next time. A
    history pruned on the topic (`rebase`) is pruned in the store too. One sync of a store at a
    time (a lock file in it: the mirror's processes follow one topic)."""
    with _locked(store_dir):
        return _sync(Store.open(store_dir, create=True), kafka)


def _sync(store: Store, kafka: Kafka) -> list[Generation]:
    low, high = queue.changes_bounds(kafka.bootstrap, kafka.prefix, kafka.crawl, kafka.config)
    start = store.offset if store.offset is not None and store.offset <= high else 0  # else: a new topic
    start = _past_rebase(store, kafka, max(start, low))  # records before `low` deleted (a rebase)
    kept: list[Generation] = []
    lines = queue.iter_changes_from(kafka.bootstrap, kafka.prefix, kafka.crawl, kafka.config, start)
    for whole in whole_generations(lines):
        gen = _take(store, whole, kafka)
        store.offset = whole.marker + 1
        store.save()
        kept += [gen] if gen is not None else []
    return kept


def _take(store: Store, whole: Whole, kafka: Kafka) -> Generation | None:
    """A whole generation read off the topic, kept in the store if it is newer than its newest
    (None: passed over); a rebase's base prunes the store to begin where the topic's history does."""
    if whole.doc.get("base") and whole.doc.get("rebase"):
        return _rebased(store, whole, kafka)
    newest = store.generations[-1].generation if store.generations else None
    if newest is not None and whole.generation <= newest:
        return None
    gen = _keep(store, whole, kafka, newest)
    store.generations.append(gen)
    return gen


def _rebased(store: Store, whole: Whole, kafka: Kafka) -> Generation | None:
    """The topic's history now begins at `whole`'s generation (`rebase`): the store's older
    generations go (the one it begins at written whole), or, if the store holds none as new, it
    starts over from this base. Returns the generation kept (None: the store held it)."""
    held = [g.generation for g in store.generations]
    if whole.generation in held:
        _prune_to(store, whole.generation)
        return None
    if held and whole.generation < (held[-1] or 0):
        return None  # the store's history began later than this base: nothing of it to drop
    old, store.generations = store.generations, []
    try:
        gen = _keep(store, whole, kafka, None)
    finally:
        store.generations = old
    replace_generations(store, [gen])
    return gen


def _prune_to(store: Store, generation: int) -> None:
    """The store's generations before fleet generation `generation` removed (`store.prune`)."""
    held = [g.generation for g in store.generations]
    keep = len(held) - held.index(generation)
    if keep < len(held):
        prune(store.path, keep)
        store.generations = Store.open(store.path).generations


def _past_rebase(store: Store, kafka: Kafka, start: int) -> int:
    """Where to read from: past a rebase that begins at `start` and republishes only generations the
    store holds (its first line says how many lines it has, `segment`; its last checked to be its
    newest generation's marker), the store pruned as it says, so a reader up to date does not read
    a whole map again each time the history is pruned. Else `start`."""
    first = queue.change_at(kafka.bootstrap, kafka.prefix, kafka.crawl, kafka.config, start)
    if not _begins_rebase(first) or not isinstance((first or {}).get("segment"), int):
        return start
    assert first is not None
    held = [g.generation for g in store.generations]
    end = start + int(first["segment"])
    last = queue.change_at(kafka.bootstrap, kafka.prefix, kafka.crawl, kafka.config, end - 1)
    whole = (last or {}).get("kind") == MARKER and (last or {}).get("rebase")
    if first["generation"] not in held or not whole or int((last or {})["generation"]) > (held[-1] or 0):
        return start
    _prune_to(store, int(first["generation"]))
    store.offset = end
    store.save()
    return end


def _begins_rebase(doc: dict[str, Any] | None, generation: int | None = None) -> bool:
    """Is `doc` the first line of a rebase's base (of `generation`, if given)?"""
    return (doc is not None and doc.get("n") == 0 and bool(doc.get("base")) and bool(doc.get("rebase"))
            and isinstance(doc.get("generation"), int) and generation in (None, doc["generation"]))


@contextlib.contextmanager
def _locked(store_dir: Path) -> Iterator[None]:
    store_dir.mkdir(parents=True, exist_ok=True)
    with open(store_dir / LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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


def rebase(store_dir: Path, kafka: Kafka, generation: int) -> dict[str, Any]:
    """Prune a fleet's history on its change-feed topic to begin at fleet generation `generation`
    (the oldest the crawl keeps; if the topic never held it whole, the first after it that it
    holds): the topic read into `store_dir` (`sync`), the store pruned there (that generation's map
    written whole), the history from it published again after the topic's newest message
    (`history_messages`), checked to have landed where the topic ended, and every record before it
    deleted. Once: a topic that begins with that base already is left as it is. Returns `{topic,
    generation, date, published, start}` (`start`: the topic's first offset now)."""
    topic = queue.changes_topic(kafka.prefix, kafka.crawl)
    with _locked(store_dir):
        store = Store.open(store_dir, create=True)
        _sync(store, kafka)
        gen = _first_kept(store, generation, topic)
        low, high = queue.changes_bounds(kafka.bootstrap, kafka.prefix, kafka.crawl, kafka.config)
        first = queue.change_at(kafka.bootstrap, kafka.prefix, kafka.crawl, kafka.config, low)
        done = {"topic": topic, "generation": gen.generation, "date": gen.date}
        if (first or {}).get("n") == 0 and (first or {}).get("base") and (first or {}).get(
                "generation") == gen.generation:
            return done | {"published": 0, "start": low}
        _prune_to(store, int(gen.generation or 0))
        sent = queue.publish(kafka.bootstrap, topic, history_messages(store), kafka.config, "history")
        landed = queue.change_at(kafka.bootstrap, kafka.prefix, kafka.crawl, kafka.config, high)
        if not _begins_rebase(landed, gen.generation):
            raise HistoryError(f"the history published on {topic} did not begin where the topic ended "
                               f"({high}; another publisher?): nothing was deleted")
        start = queue.delete_changes_before(kafka.bootstrap, kafka.prefix, kafka.crawl, high, kafka.config)
        store.offset = high + sent
        store.save()
    return done | {"published": sent, "start": start}


def _first_kept(store: Store, generation: int, topic: str) -> Generation:
    """The store's generation a history kept from fleet generation `generation` begins at."""
    later = [g for g in store.generations if (g.generation or 0) >= generation]
    if not later:
        held = [g.generation for g in store.generations]
        span = f"generations {held[0]} to {held[-1]}" if held else "no whole generation"
        raise HistoryError(f"{topic} holds no whole generation from {generation} on (it holds {span}): "
                           "its history cannot begin there")
    return later[0]


def history_messages(store: Store) -> Iterator[tuple[bytes, bytes]]:
    """A store's history as a rebase puts it on the topic: each generation as the fleet's feed put
    it (`generation_messages`), every line and marker with `rebase`; the first line says how many
    lines the rebase has in all, itself included (`segment`), so a reader holding them all can
    pass over them."""
    base, *later = store.generations
    total = sum(1 for _ in store.records(base)) + 1 + sum(sum(g.counts.values()) + 1 for g in later)
    parts = (generation_messages(store, g, {"rebase": True}) for g in store.generations)
    for n, (key, value) in enumerate(itertools.chain.from_iterable(parts)):
        yield key, (value if n else json.dumps({**json.loads(value), "segment": total},
                                               separators=(",", ":")).encode())


def generation_messages(store: Store, gen: Generation,
                        extra: dict[str, Any]) -> Iterator[tuple[bytes, bytes]]:
    """One of a store's generations as a fleet's feed puts it on the topic (`feed.messages`), with
    its number, its time and `extra` on every line: the store's first generation its map whole
    (every block `added`, the marker `base`), a later one its change set."""
    when = moment(gen.day).strftime("%Y-%m-%dT%H:%M:%SZ")
    first = gen is store.generations[0]
    head = {"date": when[:10], "time": when, "generation": gen.generation, **extra}
    if not first:
        return messages(head, read_changes(store.path / gen.file), Counter())
    return messages(head | {"base": True}, map(change_line, classify([], store.records(gen))), Counter())


def cache_dir(kafka: Kafka, root: Path | None = None) -> Path:
    """Where `--history topic:CRAWL` keeps its store: one per Kafka, prefix and crawl, under `root`,
    else `WHOISCRAWL_HISTORY_CACHE` (default `~/.cache/whoiscrawl/history`)."""
    root = root or Path(os.environ.get("WHOISCRAWL_HISTORY_CACHE") or Path.home() / ".cache" / "whoiscrawl"
                        / "history")
    where = hashlib.sha256(kafka.bootstrap.encode()).hexdigest()[:12]
    return Path(root) / where / f"{kafka.prefix}{kafka.crawl}"


def history_of(history: Path | None, kafka_bootstrap: str | None, prefix: str) -> Path | None:
    """A command's optional `--history`, as `store_path` reads it."""
    return store_path(history, kafka_bootstrap, prefix) if history is not None else None


def store_path(history: Path, kafka_bootstrap: str | None, prefix: str) -> Path:
    """A command's `--history`: a store folder as given, or `topic:CRAWL`, the fleet crawl's
    history on its change-feed topic, brought up to date in its cache folder (`sync`) and that
    folder returned."""
    follow = follower(history, kafka_bootstrap, prefix)
    if follow is None:
        return history
    store_dir = follow()
    if not Store.open(store_dir, create=True).generations:
        raise HistoryError(f"{_topic_of(history, prefix)} holds no whole first map yet: the operator "
                           "publishes it when the crawl's generation 1 completes")
    return store_dir


def follower(history: Path, kafka_bootstrap: str | None, prefix: str) -> Callable[[], Path] | None:
    """For `--history topic:CRAWL`, what brings its cache folder up to the topic (`sync`; a Kafka
    error a HistoryError) and returns it: called again, it reads only what is new (the mirror
    follows the topic so). None for a store folder."""
    text = str(history)
    if not text.startswith(TOPIC_PREFIX):
        return None
    if not kafka_bootstrap:
        raise HistoryError(f"--history {text} needs --kafka-bootstrap (or WHOISCRAWL_KAFKA_BOOTSTRAP)")
    kafka = Kafka(kafka_bootstrap, text[len(TOPIC_PREFIX):], prefix, queue.kafka_config_from(os.environ))
    store_dir = cache_dir(kafka)

    def follow() -> Path:
        try:
            sync(store_dir, kafka)
        except KafkaException as exc:
            raise HistoryError(f"reading {_topic_of(history, prefix)} failed: {exc}") from exc
        return store_dir

    return follow


def _topic_of(history: Path, prefix: str) -> str:
    return queue.changes_topic(prefix, str(history)[len(TOPIC_PREFIX):])
