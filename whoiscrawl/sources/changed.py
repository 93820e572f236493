"""A registry's dump read against the previous read of it (its `digest`): only the objects whose text,
or a contact they were joined with, changed are parsed and joined; every other network is the
previous read's record, unchanged (`Unchanged`). Splitting and hashing a dump's texts is seconds
where parsing every object is minutes; the networks given are those a whole read gives."""

from __future__ import annotations

from array import array
from collections.abc import Collection, Iterator
from dataclasses import dataclass
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
        known = set(before.contacts.hashes[before.clean].tolist())
        hashes, parsed = array("Q"), {}
        for path in dumps.contact_files(self.paths):
            for line, text, whole in dumps.texts_of(path, self.report):
                sum_ = digest.number(text)
                if sum_ not in known:
                    read = dumps.read_text(path, line, text, whole, self.report)
                    parsed[len(hashes)] = _Parsed(dumps.keys_of(read.objects), read.clean,
                                                  dumps.Contacts.rows_of(read.objects))
                hashes.append(sum_)
        self.now, clean, self.rows = _contact_texts(before, np.frombuffer(hashes, np.uint64), parsed)
        self.kept.set_contacts(self.now, clean, self.rows)
        return digest.changed_keys(before.contacts, self.now)

    def networks(self, changed: np.ndarray) -> tuple[list[Unchanged | tuple[Path, dumps.Text]], set[str]]:
        """In file order, each network unchanged, or each text to read again (new, edited, joined
        with a changed contact, broken before); and the contact keys those texts name."""
        before = self.before
        reusable = self._same(changed)
        same = dict(zip(before.networks.hashes[reusable].tolist(), np.flatnonzero(reusable).tolist(),
                        strict=True))
        others = set(before.networks.hashes[before.kind == digest.OTHER].tolist())
        firsts, lasts = before.firsts.tolist(), before.lasts.tolist()
        found: list[Unchanged | tuple[Path, dumps.Text]] = []
        named: set[str] = set()
        taken = array("q")
        for path, again in dumps.network_files(self.paths):
            for line, text, whole in dumps.texts_of(path, self.report, again):
                sum_ = digest.number(text)
                if (i := same.get(sum_)) is not None:
                    taken.append(i)
                    found.append(Unchanged(firsts[i], lasts[i]))
                elif sum_ in others:
                    self.kept.other(sum_)
                else:
                    read = dumps.read_text(path, line, text, whole, None if again else self.report)
                    found.append((path, read))
                    named |= {k for obj in read.objects if obj.kind == "inetnum" for k in _names(obj)}
        self.report.records += len(taken)
        self.kept.take(before, np.frombuffer(taken, np.int64))
        return found, named

    def _same(self, changed: np.ndarray) -> np.ndarray:
        """Which of `before`'s texts gave a network that may be taken as it was: its span held by
        the previous map (or outside the scope: staged by no one), given by no other text, joined
        with no changed contact."""
        before = self.before
        span = span_keys(before.firsts, before.lasts)
        held_keys = self.held if isinstance(self.held, np.ndarray) else \
            np.fromiter((first << 32 | last for first, last in self.held), np.uint64, len(self.held))
        held = np.isin(span, held_keys)
        if self.scope is not None:
            held |= ~self.scope.overlapping(before.firsts, before.lasts)
        touched = np.isin(before.networks.keys, changed)
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


def _contact_texts(before: digest.Digest, hashes: np.ndarray, parsed: dict[int, _Parsed]
                   ) -> tuple[digest.Lists, np.ndarray, digest.Lists]:
    """This read's contact texts (`hashes`, file order) with their keys: those `parsed`, and every
    other's as `before` (read clean) had them; whether each is clean; their rows."""
    new = np.fromiter(parsed, np.int64, len(parsed))
    known = np.ones(len(hashes), dtype=bool)
    known[new] = False
    clean_before = np.flatnonzero(before.clean)
    by_hash = clean_before[np.argsort(before.contacts.hashes[clean_before], kind="stable")]
    at = np.searchsorted(before.contacts.hashes[by_hash], hashes[known])
    old = by_hash[at]
    keys = np.fromiter((digest.key_number(k) for p in parsed.values() for k in p.keys), np.uint64)
    rows = [orjson.dumps(p.rows) for p in parsed.values()]
    lists = digest.Lists.placed(len(hashes), [
        (np.flatnonzero(known), before.contacts.take(old)),
        (new, digest.Lists(hashes[new], digest.offsets_of([len(p.keys) for p in parsed.values()]), keys))])
    made = np.frombuffer(b"".join(rows), np.uint8)
    row_lists = digest.Lists.placed(len(hashes), [
        (np.flatnonzero(known), before.rows.take(old)),
        (new, digest.Lists(hashes[new], digest.offsets_of([len(r) for r in rows]), made))])
    clean = known.copy()
    clean[new] = [p.clean for p in parsed.values()]
    return lists, clean, row_lists


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
            for item in found:
                if isinstance(item, Unchanged):
                    yield item
                else:
                    yield from dumps.networks_of(item[0], item[1], reading, report, kept)
            done = report.complete
        finally:
            contacts.close()
            kept.commit() if done else kept.discard()

    return report, records()
