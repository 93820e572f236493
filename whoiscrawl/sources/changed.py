"""A registry's dump read against the previous read of it (its `digest`): only the objects whose text,
or a contact they were joined with, changed are parsed and joined; every other network is the
previous read's record, unchanged (`Unchanged`). Splitting and hashing a dump's texts is seconds
where parsing every object is minutes; the networks given are those a whole read gives."""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from whoiscrawl.ipv4 import span_keys
from whoiscrawl.records import NetworkRecord
from whoiscrawl.sources import digest, dumps, rpsl
from whoiscrawl.sources.published import RegistryDump
from whoiscrawl.space import Scope

# The spans the previous map holds from a read: (first, last) pairs, or their `span_keys` (a uint64
# each: the previous map's own, `difference.Previous.reuse`, for RIPE NCC's millions of networks).
Held = Collection[tuple[int, int]] | np.ndarray


@dataclass(frozen=True)
class Unchanged:
    """A network as the previous read gave it: its object's text and every contact it was joined
    with are the same, so its record is that read's, but for when and from which files it was read."""

    first: int
    last: int


@dataclass(frozen=True)
class Reuse:
    """What a read may take from the previous one: its digest, made of the read with this serial and
    date, and the spans the previous map holds from that read (any other is read again)."""

    path: Path
    serial: str | None
    observed_at: str | None
    held: Held

    def load(self, registry: str) -> digest.Digest:
        """The digest, if it is this registry's and of the read the previous map holds; else DigestError."""
        got = digest.Digest.load(self.path)
        if (got.registry, got.serial, got.observed_at) != (registry, self.serial, self.observed_at):
            raise digest.DigestError(f"{self.path}: made of another read than the previous map's "
                                     f"({got.registry} {got.serial} {got.observed_at})")
        return got


@dataclass
class _Read:
    """One read against `before`: this read's contact texts (hashes and keys), the digest written."""

    paths: list[Path]
    before: digest.Digest
    held: Held
    report: dumps.DumpReport
    kept: digest.Writer
    workdir: Path | None = None  # where the contacts' index goes
    scope: Scope | None = None  # the networks staged: one outside needs no record from the previous map
    now: digest.Lists | None = None  # this read's contact texts, in file order, and their keys
    rows: digest.Lists | None = None  # ... and the rows they gave

    def contacts_changed(self) -> np.ndarray:
        """Every contact text hashed (parsed only when new, or broken before: reported again);
        the contact keys (`digest.key_number`) whose texts are not the previous read's."""
        before = self.before
        known = _Index(before.contacts.hashes, np.flatnonzero(before.clean))
        hashes, parsed = array("Q"), {}
        for path in dumps.contact_files(self.paths):
            for batch, sums in _hashed(path, self.report):
                for n in np.flatnonzero(known.find(sums) < 0).tolist():
                    line, text, whole = batch[n]
                    read = dumps.read_text(path, line, text, whole, self.report)
                    parsed[len(hashes) + n] = _Parsed(dumps.keys_of(read.objects), read.clean,
                                                      dumps.Contacts.rows_of(read.objects))
                hashes.extend(sums.tolist())
        got = np.frombuffer(hashes, np.uint64)
        self.now, self.rows = _contact_texts(before, known, self.kept, got, parsed)
        return digest.changed_keys(before.contacts, self.now)

    def networks(self, changed: np.ndarray) -> tuple[_Found, set[str]]:
        """In file order, each network unchanged, or each text to read again (new, edited, joined
        with a changed contact, broken before); and the contact keys those texts name."""
        before = self.before
        same = _Index(before.networks.hashes, np.flatnonzero(self._same(changed)), last=True)
        others = _Index(before.networks.hashes, np.flatnonzero(before.kind == digest.OTHER))
        found = _Found()
        named: set[str] = set()
        for path, again in dumps.network_files(self.paths):
            for batch, sums in _hashed(path, self.report, again):
                at, other = same.find(sums).tolist(), (others.find(sums) >= 0).tolist()
                for n, (line, text, whole) in enumerate(batch):
                    if at[n] >= 0:
                        found.order.append(at[n])
                    elif other[n]:
                        self.kept.other(int(sums[n]))
                    else:
                        read = dumps.read_text(path, line, text, whole, None if again else self.report)
                        found.add(path, read)
                        named |= {k for obj in read.objects if obj.kind == "inetnum" for k in _names(obj)}
        taken = found.taken()
        self.report.records += len(taken)
        self.kept.take(before, taken)
        return found, named

    def _same(self, changed: np.ndarray) -> np.ndarray:
        """Which of `before`'s texts gave a network that may be taken as it was: its span held by
        the previous map (or outside the scope: staged by no one), given by no other text, joined
        with no changed contact."""
        before = self.before
        span = span_keys(before.firsts, before.lasts)
        held_keys = self.held if isinstance(self.held, np.ndarray) else \
            np.fromiter((first << 32 | last for first, last in self.held), np.uint64, len(self.held))
        held = digest.among(span, np.sort(held_keys))
        if self.scope is not None:
            held |= ~self.scope.overlapping(before.firsts, before.lasts)
        touched = digest.among(before.networks.keys, changed)  # `changed_keys`: sorted
        joined_changed = np.bincount(digest.owners(before.networks.offsets)[touched],
                                     minlength=len(span)) > 0
        return (before.kind == digest.NETWORK) & held & ~before.twice() & ~joined_changed

    def contacts(self, named: set[str]) -> dumps.Contacts:
        """The contacts `named` (and the abuse-c of each organisation among them), each read from
        every text holding it, in file order: looked up as a whole read looks them up."""
        contacts = dumps.Contacts(self.workdir)
        contacts.index()  # before the rows: an organisation's abuse-c is looked up between loads
        wanted = {digest.key_number(k): k for k in named}
        loaded: set[int] = set()
        while todo := wanted.keys() - loaded:
            contacts.load_rows(self._rows_of(todo))
            loaded |= todo
            for key in todo:
                if wanted[key].startswith("org:") and (abuse := contacts.org(wanted[key][4:])[2]):
                    wanted.setdefault(digest.key_number(f"box:{abuse}"), f"box:{abuse}")
        return contacts

    def _rows_of(self, todo: set[int]) -> Iterator[list[str | None]]:
        """The contact rows keyed `todo`, in file order, from the texts holding them (this read's
        rows, kept with its digest: no text read again)."""
        assert self.now is not None and self.rows is not None
        hit = np.isin(self.now.keys, np.fromiter(todo, np.uint64, len(todo)))
        for text in np.unique(digest.owners(self.now.offsets)[hit]).tolist():
            yield from (row for row in self.rows.rows(text)
                        if digest.key_number(f"{row[0]}:{row[1]}") in todo)


@dataclass(frozen=True)
class _Parsed:
    """A contact text parsed: its keys, whether it was read clean, the rows it gave."""

    keys: list[str]
    clean: bool
    rows: list[dumps.Row]


BATCH = 1024  # texts hashed, then looked up in the previous read's at once (a lookup a text: ~1 µs)


def _hashed(path: Path, report: dumps.DumpReport, again: bool = False
            ) -> Iterator[tuple[list[tuple[int, bytes, bool]], np.ndarray]]:
    """A file's texts (`dumps.texts_of`), `BATCH` at a time, with their hashes. What the file itself
    says is wrong (cut off) is reported after the last batch, as `texts_of` reports it after its
    last text: after what parsing those texts reports."""
    said = dumps.DumpReport(report.registry, report.serial)
    texts = dumps.texts_of(path, said, again)
    while batch := list(itertools.islice(texts, BATCH)):
        yield batch, np.fromiter((digest.number(text) for _, text, _ in batch), np.uint64, len(batch))
    report.problems += said.problems


class _Index:
    """Texts `which` of a previous read, found by hash (`find`): a sorted copy of their hashes and
    their places, 16 bytes a text (the sets and dicts it replaced: ~100)."""

    def __init__(self, hashes: np.ndarray, which: np.ndarray, last: bool = False) -> None:
        order = which[np.argsort(hashes[which], kind="stable")]  # a hash's texts in file order
        self.hashes, self.at, self.last = hashes[order], order, last

    def find(self, hashes: np.ndarray) -> np.ndarray:
        """For each of `hashes`, the text of this hash (the first in file order; the last with
        `last`), or -1."""
        if not len(self.hashes):
            return np.full(len(hashes), -1, dtype=np.int64)
        if self.last:
            at = np.searchsorted(self.hashes, hashes, side="right") - 1
        else:
            at = np.searchsorted(self.hashes, hashes)
        at = np.clip(at, 0, len(self.hashes) - 1)
        return np.where(self.hashes[at] == hashes, self.at[at], -1)


@dataclass
class _Found:
    """A read's networks in file order, 8 bytes each: a previous read's text, taken unchanged (its
    index), or a text read again (-1 - its index in `texts`): a list of `Unchanged` held ~70 bytes a
    network (RIPE NCC's millions in `full`)."""

    order: array = field(default_factory=lambda: array("q"))
    texts: list[tuple[Path, dumps.Text]] = field(default_factory=list)

    def add(self, path: Path, text: dumps.Text) -> None:
        self.order.append(-1 - len(self.texts))
        self.texts.append((path, text))

    def taken(self) -> np.ndarray:
        """The previous read's texts taken, in file order."""
        codes = np.frombuffer(self.order, np.int64)
        return codes[codes >= 0]

    def items(self, before: digest.Digest) -> Iterator[Unchanged | tuple[Path, dumps.Text]]:
        """Each network unchanged (its span `before`'s), or each text to read again, in file order."""
        for start in range(0, len(self.order), BATCH):
            codes = np.frombuffer(self.order, np.int64)[start:start + BATCH]
            at = np.maximum(codes, 0)
            firsts, lasts = before.firsts[at].tolist(), before.lasts[at].tolist()
            for n, code in enumerate(codes.tolist()):
                yield Unchanged(firsts[n], lasts[n]) if code >= 0 else self.texts[-1 - code]


def _contact_texts(before: digest.Digest, known: _Index, kept: digest.Writer, hashes: np.ndarray,
                   parsed: dict[int, _Parsed]) -> tuple[digest.Lists, digest.Lists]:
    """This read's contact texts (`hashes`, file order) with their keys and rows, written to `kept`:
    those `parsed`, and every other's as the previous read (`known`: its texts read clean) had
    them; given back mapped from what `kept` wrote."""
    new = np.fromiter(parsed, np.int64, len(parsed))
    old = np.ones(len(hashes), dtype=bool)
    old[new] = False
    keys = np.fromiter((digest.key_number(k) for p in parsed.values() for k in p.keys), np.uint64)
    rows = [orjson.dumps(p.rows) for p in parsed.values()]
    made = digest.Lists(hashes[new], digest.offsets_of([len(p.keys) for p in parsed.values()]), keys)
    made_rows = digest.Lists(hashes[new], digest.offsets_of([len(r) for r in rows]),
                             np.frombuffer(b"".join(rows), np.uint8))
    clean = old.copy()
    clean[new] = [p.clean for p in parsed.values()]
    return kept.set_contacts(hashes, clean, [
        (np.flatnonzero(old), known.find(hashes[old]), before.contacts, before.rows),
        (new, np.arange(len(new)), made, made_rows)])


def _names(obj: rpsl.RpslObject) -> set[str]:
    """The contacts an inetnum names itself (its organisation's abuse-c is found once that is read)."""
    org = obj.first("org")
    boxes = {f"box:{h}" for h in (obj.first("abuse-c"), *obj.all("mnt-irt")) if h}
    return boxes | {f"org:{org}"} if org else boxes


def read_changed(
    dump: RegistryDump, before: digest.Digest, held: Held, digest_to: Path,
    workdir: Path | None = None, scope: Scope | None = None,
) -> tuple[dumps.DumpReport, Iterator[NetworkRecord | Unchanged]]:
    """A registry's dump as `dumps.read_registry` reads it, but each network whose text and contacts
    are as `before`'s and whose span `held` holds (or lies outside `scope`, where no record of it is
    wanted) is `Unchanged`; its digest written to `digest_to` (kept once read through whole).
    Iterate the records through before reading the report."""
    report = dumps.DumpReport(dump.registry, dump.serial)
    kept = digest.Writer(digest_to, dump.registry, dump.serial, dump.observed_at)
    read = _Read(dump.paths, before, held, report, kept, workdir, scope)
    try:
        found, named = read.networks(read.contacts_changed())
        contacts = read.contacts(named)
    except BaseException:
        kept.discard()
        raise
    reading = dumps.Reading(dump.registry, contacts, dump.serial, dump.observed_at)

    def records() -> Iterator[NetworkRecord | Unchanged]:
        done = False
        try:
            for item in found.items(read.before):
                if isinstance(item, Unchanged):
                    yield item
                else:
                    yield from dumps.networks_of(item[0], item[1], reading, report, kept)
            done = report.complete
        finally:
            contacts.close()
            kept.commit() if done else kept.discard()

    return report, records()
