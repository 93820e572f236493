"""Dated generations of a map: the first kept whole, each later one as its change set; any one rebuilt.

A store is a folder: `history.json` (the manifest: the scope and each generation's date, kind, file
and counts), `<date>.full.jsonl.gz` (the oldest generation kept, every block's record in hierarchy
order) and `<date>.changes.jsonl.gz` (each later generation: what `results.diff.classify` found
against the one before, a change a line, with the new record whole). A generation is rebuilt by
streaming the full file through each change set in turn (each a merge in hierarchy order), so memory
stays flat however large the map. Every write goes to a temporary file renamed into place, the
manifest last: a refused or interrupted `add` or `prune` leaves the store as it was.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import IO, Any

from whoiscrawl.ipv4 import ip_int
from whoiscrawl.results.diff import KINDS, Change, classify
from whoiscrawl.results.source import ResultSet, block_key, parse_line
from whoiscrawl.space import SpaceError, crawlable

MANIFEST = "history.json"
FORMAT = 1
CACHE = "cache"  # generations rebuilt as JSONL for the index (serve/index.py saves its own beside)
_LEVEL = 6  # gzip: within a few % of 9's size, several times faster
Opener = Callable[[str], "contextlib.AbstractContextManager[ResultSet]"]  # a map's name to its result set
LATEST = datetime.max.replace(tzinfo=UTC)  # after every generation: the newest


class HistoryError(ValueError):
    """A store, a date or a map that cannot be used; the text says what to fix."""


@dataclass
class Generation:
    """One dated map in a store."""

    date: str  # YYYY-MM-DD, or a time in UTC, YYYY-MM-DDTHH:MM:SSZ (a fleet's generations, several a day)
    kind: str  # full | changes
    file: str
    blocks: int
    counts: dict[str, int] = field(default_factory=dict)  # changes by kind (against the one before)
    source: str = ""  # the map file it was added from
    generation: int | None = None  # a fleet's generation number (read off its change-feed topic)

    @property
    def day(self) -> datetime:
        """When the generation was made: its time, or the start of its day (UTC)."""
        return moment(parse_date(self.date, "a generation's date"))


def parse_date(text: str, what: str = "--date") -> date:
    """A day (YYYY-MM-DD, a `date`) or a time (ISO 8601, UTC unless it says otherwise; a
    `datetime`). Where a day is compared with times (`moment`), `--at 2026-12-07` is the map at the
    end of that day, whatever time of it a generation was made; `--date` is its start."""
    try:
        if "T" not in text and " " not in text:
            return date.fromisoformat(text)
        return moment(datetime.fromisoformat(text))
    except ValueError:
        raise HistoryError(f"{what} {text!r} is not a date: give YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ"
                           ) from None


def moment(when: date, end: bool = False) -> datetime:
    """A day or a time as a time in UTC: a day is its start, or with `end` its last moment."""
    if isinstance(when, datetime):
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
    return datetime.combine(when, time.max if end else time(), UTC)


def date_text(when: date) -> str:
    """A generation's `date` (and how a date asked is named): a day when it is one or the start of
    one, else its time (UTC, to the second)."""
    if not isinstance(when, datetime):
        return when.isoformat()
    when = moment(when)
    return when.date().isoformat() if when.time() == time() else when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _stem(date_field: str) -> str:
    return date_field.replace(":", "")  # a file name without colons


def scope_cidrs(ranges: Iterable[str] | None) -> list[str]:
    """A scope as the CIDRs of its crawlable part (what two generations must agree on)."""
    try:
        return [str(c) for c in crawlable(list(ranges or []) or ["all"]).iter_cidrs()]
    except SpaceError as exc:
        raise HistoryError(f"--scope: {exc}") from exc


@dataclass
class Store:
    """A folder of dated generations."""

    path: Path
    scope: list[str] = field(default_factory=list)
    generations: list[Generation] = field(default_factory=list)
    offset: int | None = None  # a topic's store (`history.topic`): the topic's next offset to read

    @classmethod
    def open(cls, path: Path, create: bool = False) -> Store:
        manifest = path / MANIFEST
        if not manifest.is_file():
            if create and (not path.exists() or path.is_dir()):
                return cls(path)
            raise HistoryError(f"{path} is not a history store (no {MANIFEST}): "
                               "make one with `whoiscrawl history add MAP --date DATE --store DIR`")
        try:
            doc = json.loads(manifest.read_text())
            if doc.get("format") != FORMAT:
                raise HistoryError(f"{manifest} has format {doc.get('format')}, this version reads {FORMAT}")
            return cls(path, doc["scope"], [Generation(**g) for g in doc["generations"]], doc.get("offset"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, HistoryError):
                raise
            raise HistoryError(f"{manifest} is unreadable ({type(exc).__name__}: {exc})") from exc

    def save(self) -> None:
        """Write the manifest (atomically: the last step of every change to the store)."""
        doc = {"format": FORMAT, "scope": self.scope, "generations": [asdict(g) for g in self.generations],
               **({"offset": self.offset} if self.offset is not None else {})}
        _atomic(self.path / MANIFEST, lambda fh: fh.write(json.dumps(doc, indent=1).encode()))

    def at(self, when: date) -> Generation:
        """The generation current on `when`: the newest dated on or before it (a day: by its end)."""
        day = moment(when, end=True)
        if not self.generations:
            raise HistoryError(f"{self.path} holds no generation yet")
        first = self.generations[0]
        if day < first.day:
            raise HistoryError(f"{date_text(when)} is before the first kept generation, {first.date} "
                               f"({self.path}; older ones were never kept or were pruned): give a date "
                               f"from {first.date} on")
        return [g for g in self.generations if g.day <= day][-1]

    def records(self, gen: Generation) -> Iterator[dict[str, Any]]:
        """A generation's map, every block's record in hierarchy order (`parse_line`'s dicts)."""
        upto = self.generations.index(gen)
        stream: Iterator[dict[str, Any]] = _read(self.path / self.generations[0].file, parse_line)
        for later in self.generations[1 : upto + 1]:
            stream = apply(stream, read_changes(self.path / later.file))
        return stream

    def bytes(self) -> int:
        """What the generations take on disk (the manifest included, the rebuilt cache not)."""
        files = [self.path / MANIFEST, *(self.path / g.file for g in self.generations)]
        return sum(f.stat().st_size for f in files if f.is_file())


def add(store_dir: Path, map_path: Path | str, when: date, scope: Iterable[str] | None = None,
        opener: Opener | None = None) -> Generation:
    """Keep a map as the store's generation of `day`: whole if it is the first, else as the change
    set from the newest one. A date not after the newest, or another scope: HistoryError, nothing
    written (and the map not read). `opener` reads `map_path` (default: a results file;
    `results.source.open_results` reads a crawl's topic too)."""
    store, day = Store.open(store_dir, create=True), moment(when)
    cidrs = scope_cidrs(scope)
    if store.generations:
        newest = store.generations[-1]
        if day <= newest.day:
            raise HistoryError(f"--date {date_text(day)} is not after the newest generation ({newest.date}): "
                               "generations go forward in time; nothing was written")
        if cidrs != store.scope:
            raise HistoryError(f"{map_path} is of another scope than {store_dir} "
                               f"({_brief(cidrs)} against {_brief(store.scope)}): nothing was written")
    with (opener or _open_file)(str(map_path)) as results:
        gen = _keep(store, results, day, str(map_path))
    store.scope = store.scope or cidrs
    store.generations.append(gen)
    store.save()
    return gen


def _open_file(path: str) -> contextlib.AbstractContextManager[ResultSet]:
    return contextlib.nullcontext(ResultSet(Path(path), seekable=True))


def _keep(store: Store, results: ResultSet, day: datetime, source: str) -> Generation:
    """Write a map's generation file: the map whole, or its change set from the newest generation."""
    if not store.generations:
        return keep_full(store, date_text(day), results.nested(), results.blocks, source)
    changes = classify(store.records(store.generations[-1]), results.nested())
    return keep_changes(store, date_text(day), map(change_line, changes),
                        results.blocks, source)


def keep_full(store: Store, day: str, records: Iterable[dict[str, Any]], blocks: int, source: str,
              generation: int | None = None) -> Generation:
    """Write a first generation's file, the map whole (records in hierarchy order)."""
    store.path.mkdir(parents=True, exist_ok=True)
    gen = Generation(day, "full", f"{_stem(day)}.full.jsonl.gz", blocks, source=source, generation=generation)
    _atomic(store.path / gen.file, lambda fh: _write_records(fh, records))
    return gen


def keep_changes(store: Store, day: str, changes: Iterable[dict[str, Any]], blocks: int, source: str,
                 generation: int | None = None) -> Generation:
    """Write a later generation's file: its change set's lines (`change_line`'s form) in hierarchy order."""
    store.path.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    gen = Generation(day, "changes", f"{_stem(day)}.changes.jsonl.gz", blocks, source=source,
                     generation=generation)
    _atomic(store.path / gen.file, lambda fh: _write_changes(fh, changes, counts))
    gen.counts = {kind: counts[kind] for kind in KINDS}
    return gen


def prune(store_dir: Path, keep: int) -> list[Generation]:
    """Keep the newest `keep` generations: the oldest kept is written whole, the older ones go.
    Returns the generations removed."""
    if keep < 1:
        raise HistoryError(f"--keep {keep}: keep at least 1 generation")
    store = Store.open(store_dir)
    if len(store.generations) <= keep:
        return []
    gone, kept = store.generations[:-keep], store.generations[-keep:]
    base = kept[0]
    if base.kind != "full":
        full = Generation(base.date, "full", f"{_stem(base.date)}.full.jsonl.gz", base.blocks, base.counts,
                          base.source, base.generation)
        _atomic(store.path / full.file, lambda fh: _write_records(fh, store.records(base)))
        kept[0] = full
    replace_generations(store, kept)
    return gone


def replace_generations(store: Store, kept: list[Generation]) -> None:
    """The store's generations made `kept` (the manifest saved), then the files and rebuilt caches
    of those it held and no longer does removed."""
    gone = [g for g in store.generations if g.date not in {k.date for k in kept}]
    old_files = {g.file for g in store.generations} - {g.file for g in kept}
    store.generations = kept
    store.save()
    for name in old_files:
        (store.path / name).unlink(missing_ok=True)
    for g in gone:
        for cached in (store.path / CACHE).glob(f"{_stem(g.date)}.jsonl*"):
            cached.unlink()


def map_at(store: Store, day: date) -> Path:
    """The generation current on `day` as a results file (rebuilt once into the store's cache; a
    generation never changes, so the file and the index saved beside it stay valid)."""
    gen = store.at(day)
    out = store.path / CACHE / f"{_stem(gen.date)}.jsonl"
    if not out.is_file():
        out.parent.mkdir(exist_ok=True)
        _atomic(out, lambda fh: _write_records(fh, store.records(gen), gz=False))
    return out


def apply(before: Iterable[dict[str, Any]], changes: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """A map with a change set applied: both in hierarchy order, merged range by range."""
    olds, news = _by_range(before), _by_range(changes)
    x, y = next(olds, None), next(news, None)
    while x is not None or y is not None:
        kx, ky = (x[0] if x else 1 << 64), (y[0] if y else 1 << 64)
        if kx < ky:
            assert x is not None
            yield from x[1]
            x = next(olds, None)
            continue
        assert y is not None
        held = {d["registry"]: d for d in (x[1] if x and kx == ky else [])}
        for change in y[1]:
            _apply_one(held, change)
        yield from (held[r] for r in sorted(held))
        if x is not None and kx == ky:
            x = next(olds, None)
        y = next(news, None)


def _apply_one(held: dict[str, dict[str, Any]], change: dict[str, Any]) -> None:
    kind, registry = change["change"], change["registry"]
    if kind == "removed":
        held.pop(registry, None)
        return
    moved = change.get("fields", {}).get("registry")
    if moved:
        held.pop(moved["old"], None)
    doc = parse_line(json.dumps(change["record"]))
    assert doc is not None
    held[registry] = doc


def _by_range(docs: Iterable[dict[str, Any]]) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    key, group = -1, list[dict[str, Any]]()
    for doc in docs:
        if "_first" not in doc:  # a change line
            doc["_first"], doc["_last"] = _span(doc)
        k = block_key(doc["_first"], doc["_last"])
        if k != key and group:
            yield key, group
            group = []
        key = k
        group.append(doc)
    if group:
        yield key, group


def _span(doc: dict[str, Any]) -> tuple[int, int]:
    return ip_int(doc["start_address"]), ip_int(doc["end_address"])


def _read(path: Path, parse: Callable[[bytes], dict[str, Any] | None]) -> Iterator[dict[str, Any]]:
    """A stored file's lines, each parsed; a line that is none (a damaged file) is an error."""
    try:
        with gzip.open(path, "rb") as fh:
            for line in fh:
                doc = parse(line)
                if doc is None:
                    raise ValueError(f"a line is no record: {line[:80]!r}")
                yield doc
    except (OSError, EOFError, ValueError) as exc:
        raise HistoryError(f"{path} is unreadable ({type(exc).__name__}: {exc}): the store is "
                           "damaged") from exc


def read_changes(path: Path) -> Iterator[dict[str, Any]]:
    """A change set's lines, as written (the new record under `record`)."""
    return _read(path, json.loads)


def _clean(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def _write_records(fh: IO[bytes], docs: Iterable[dict[str, Any]], gz: bool = True) -> None:
    out = gzip.GzipFile(fileobj=fh, mode="wb", compresslevel=_LEVEL, mtime=0) if gz else fh
    for doc in docs:
        out.write(json.dumps(_clean(doc), separators=(",", ":")).encode() + b"\n")
    if gz:
        out.close()


def _record_of(change: Change) -> dict[str, Any]:
    """What a change set's line adds to the classifier's change: the new record whole."""
    if change.kind != "removed" and change.record is not None:
        return {"record": _clean(change.record)}
    return {}


def change_line(change: Change) -> dict[str, Any]:
    """A change as a change set keeps it (and a change-feed topic carries it): the classifier's
    change with the new record whole, which is what rebuilds the map (`apply`)."""
    return change.to_dict() | _record_of(change)


def _write_changes(fh: IO[bytes], changes: Iterable[dict[str, Any]], counts: Counter[str]) -> None:
    with gzip.GzipFile(fileobj=fh, mode="wb", compresslevel=_LEVEL, mtime=0) as out:
        for doc in changes:
            counts[doc["change"]] += 1
            out.write(json.dumps(doc, separators=(",", ":")).encode() + b"\n")


def _atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _brief(cidrs: list[str]) -> str:
    return ", ".join(cidrs[:3]) + (f" and {len(cidrs) - 3} more" if len(cidrs) > 3 else "")


def day_before(store: Store, day: date) -> tuple[Path, Path]:
    """The maps of the generation current on `day` and of the one before it (`map --diff`: that
    day's changes)."""
    gen = store.at(day)
    at = store.generations.index(gen)
    if at == 0:
        raise HistoryError(f"{gen.date} is the first generation of {store.path}: no day before it to "
                           "compare with; give a later --at")
    return map_at(store, store.generations[at - 1].day), map_at(store, gen.day)


def results_for(results: str | None, history: Path | None, at: str | None) -> str:
    """What a command reads: RESULTS, or with `--history DIR` the generation current on `--at`
    (the newest without it), rebuilt as a results file. The two ways exclude each other."""
    if history is None:
        if at is not None:
            raise HistoryError("--at needs --history DIR: the store of dated generations to answer from")
        if results is None:
            raise HistoryError("give a results file, or --history DIR (and --at DATE)")
        return results
    if results is not None:
        raise HistoryError(f"give either a results file ({results}) or --history {history}, not both")
    store = Store.open(history)
    day = parse_date(at, "--at") if at is not None else LATEST
    return str(map_at(store, day))
