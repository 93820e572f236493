"""A registry's dump read against the previous read of it (its `digest`): only the objects whose text,
or a contact they were joined with, changed are parsed and joined; every other network is the
previous read's record, unchanged (`Unchanged`). Splitting and hashing a dump's texts is seconds
where parsing every object is minutes; the networks given are those a whole read gives."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from whoiscrawl.records import NetworkRecord
from whoiscrawl.sources import digest, dumps, rpsl
from whoiscrawl.sources.published import RegistryDump
from whoiscrawl.space import Scope


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
    held: Collection[tuple[int, int]]

    def load(self, registry: str) -> digest.Digest:
        """The digest, if it is this registry's and of the read the previous map holds; else DigestError."""
        got = digest.Digest.load(self.path)
        if (got.registry, got.serial, got.observed_at) != (registry, self.serial, self.observed_at):
            raise digest.DigestError(f"{self.path}: made of another read than the previous map's "
                                     f"({got.registry} {got.serial} {got.observed_at})")
        return got


@dataclass
class _Read:
    """One read against `before`: the texts' contact keys found so far, the digest written."""

    paths: list[Path]
    before: digest.Digest
    held: Collection[tuple[int, int]]
    report: dumps.DumpReport
    kept: digest.Writer
    workdir: Path | None = None  # where the contacts' index goes
    scope: Scope | None = None  # the networks staged: one outside needs no record from the previous map
    keys: dict[str, list[str]] = field(default_factory=dict)  # this read's texts -> their contact keys

    def contacts_changed(self) -> set[str]:
        """Every contact text hashed (parsed only when new, or broken before: reported again);
        the contact keys whose texts are not the previous read's."""
        state: dict[str, list[str]] = defaultdict(list)
        for path in dumps.contact_files(self.paths):
            for line, text, whole in dumps.texts_of(path, self.report):
                sum_ = digest.fingerprint(text)
                known = self.before.contacts.get(sum_)
                if known is not None and known[1]:
                    keys, clean = list(known[0]), True
                else:
                    read = dumps.read_text(path, line, text, whole, self.report)
                    keys, clean = dumps.keys_of(read.objects), read.clean
                self.keys[sum_] = keys
                self.kept.contacts(sum_, keys, clean)
                for key in keys:
                    state[key].append(sum_)
        return self.before.changed(state)

    def networks(self, changed: set[str]) -> tuple[list[Unchanged | tuple[Path, dumps.Text]], set[str]]:
        """In file order, each network unchanged, or each text to read again (new, edited, joined
        with a changed contact, broken before); and the contact keys those texts name."""
        found: list[Unchanged | tuple[Path, dumps.Text]] = []
        named: set[str] = set()
        for path, again in dumps.network_files(self.paths):
            for line, text, whole in dumps.texts_of(path, self.report, again):
                sum_ = digest.fingerprint(text)
                was = self.before.found.get(sum_)
                if was == digest.OTHER:
                    self.kept.other(sum_)
                elif isinstance(was, digest.Network) and self._same(was, changed):
                    self.kept.network(sum_, was.first, was.last, was.joined)
                    self.report.records += 1
                    found.append(Unchanged(was.first, was.last))
                else:
                    read = dumps.read_text(path, line, text, whole, None if again else self.report)
                    found.append((path, read))
                    named |= {k for obj in read.objects if obj.kind == "inetnum" for k in _names(obj)}
        return found, named

    def _same(self, was: digest.Network, changed: set[str]) -> bool:
        span = (was.first, was.last)
        outside = self.scope is not None and not self.scope.overlaps(*span)  # staged by no one
        held = span in self.held or outside
        return held and span not in self.before.twice and changed.isdisjoint(was.joined)

    def contacts(self, named: set[str]) -> dumps.Contacts:
        """The contacts `named` (and the abuse-c of each organisation among them), each read from
        every text holding it, in file order: looked up as a whole read looks them up."""
        contacts = dumps.Contacts(self.workdir)
        contacts.index()  # before the rows: an organisation's abuse-c is looked up between loads
        loaded: set[str] = set()
        while wanted := named - loaded:
            contacts.load(self._objects(wanted))
            loaded |= wanted
            named |= {f"box:{abuse}" for k in wanted if k.startswith("org:")
                      if (abuse := contacts.org(k.removeprefix("org:"))[2])}
        return contacts

    def _objects(self, wanted: set[str]) -> Iterator[rpsl.RpslObject]:
        for path in dumps.contact_files(self.paths):
            for line, text, whole in dumps.texts_of(path, self.report, again=True):
                if wanted.isdisjoint(self.keys.get(digest.fingerprint(text), ())):
                    continue
                read = dumps.read_text(path, line, text, whole, None)
                yield from (obj for obj in read.objects if dumps.Contacts.key_of(obj) in wanted)


def _names(obj: rpsl.RpslObject) -> set[str]:
    """The contacts an inetnum names itself (its organisation's abuse-c is found once that is read)."""
    org = obj.first("org")
    boxes = {f"box:{h}" for h in (obj.first("abuse-c"), *obj.all("mnt-irt")) if h}
    return boxes | {f"org:{org}"} if org else boxes


def read_changed(
    dump: RegistryDump, before: digest.Digest, held: Collection[tuple[int, int]], digest_to: Path,
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
