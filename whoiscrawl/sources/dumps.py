"""Bulk RPSL dumps read into the record schema: split files joined by key, single files in two passes.

Memory stays bounded: organisations, abuse roles and IRTs go to an sqlite3 index on disk (a dump
may hold as many of them as inetnums); inetnums are streamed, one record out per object read.
RIPE NCC and APNIC publish one file per object type, AFRINIC and LACNIC one file with everything
(read twice: first its contacts, then its inetnums). Formats and terms: docs/sources.md."""

from __future__ import annotations

import gzip
import sqlite3
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from whoiscrawl import ipv4, rirs
from whoiscrawl.ipv4 import ip_str
from whoiscrawl.records import NetworkRecord
from whoiscrawl.registry.contacts import remark_abuse_emails
from whoiscrawl.sources import digest, rpsl

# Objects a record is joined with, by the attribute that names them.
_CONTACTS = frozenset({"organisation", "role", "irt"})
_EMAIL_WORDS = ("abuse-mailbox",)


# A dumped record's `raw`, where the dump names its abuse contact by handle without the contact's
# address (LACNIC's `abuse-c:`, as its WHOIS prints it): {"abuse-c": [handles]}, for the fill
# (`seed.ask_again`) to ask the contact's entity once per handle. Dropped before the record is written.
UNRESOLVED = "abuse-c"


class DumpError(ValueError):
    """A dump that cannot be read at all (missing, not gzip); the text names the file."""


@dataclass
class DumpBlocks:
    """A dump's bytes in blocks, gzip or not. A truncated gzip ends the blocks early (what came
    before the cut included) and leaves `complete` False and `problem` said; a file that is no
    dump at all is a DumpError naming it."""

    path: Path
    complete: bool = True
    problem: str | None = None
    line_no: int = 0  # lines read so far

    BLOCK = 1 << 16  # bounded: what reading holds stays small whatever the file

    def __iter__(self) -> Iterator[bytes]:
        gzipped = self.path.name.endswith(".gz")
        read = False
        try:
            with gzip.open(self.path, "rb") if gzipped else open(self.path, "rb") as fh:
                while block := fh.read1(self.BLOCK):  # up to the cut, where a gzip ends early
                    read = True
                    self.line_no += block.count(b"\n")
                    yield block
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            if not read and not isinstance(exc, EOFError):
                raise DumpError(f"{self.path}: cannot be read as a dump ({exc})") from exc
            self.complete = False
            self.problem = f"{self.path}, line {self.line_no}: the file ends early ({exc})"


Row = tuple[str, str, str | None, str | None, str | None]  # a contact: kind, handle, name, country, extra


class Contacts:
    """A registry's organisations (name, country, abuse-c) and abuse roles' and IRTs' mailboxes, by
    handle, in an sqlite3 file of their own: a dump may hold as many organisations and roles as
    inetnums (millions in RIPE NCC's), so they are never all in memory; the page cache is bounded
    (`CACHE_KIB`). Rows are streamed in as the files are read, indexed once, then looked up per
    inetnum; a handle given twice is the later object's, as the file reads. `close()` removes it."""

    CACHE_KIB = 32 * 1024

    def __init__(self, workdir: Path | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="dump-contacts-", dir=workdir)
        # One reader at a time, but not always on the thread that made it (the fleet stages in one).
        self._db = sqlite3.connect(Path(self._dir.name) / "contacts.sqlite", check_same_thread=False)
        for pragma in ("journal_mode = OFF", "synchronous = OFF", f"cache_size = -{self.CACHE_KIB}"):
            self._db.execute(f"PRAGMA {pragma}")  # a scratch index: rebuilt from the files if lost
        self._db.execute("CREATE TABLE contact (kind TEXT, handle TEXT, name TEXT, country TEXT, extra TEXT)")

    def load(self, objects: Iterable[rpsl.RpslObject]) -> None:
        """Every organisation, role and IRT of `objects` kept (the rest passed over), streamed."""
        with self._db:
            self._db.executemany("INSERT INTO contact VALUES (?, ?, ?, ?, ?)",
                                 (row for obj in objects if (row := self._row(obj)) is not None))

    def load_rows(self, rows: Iterable[Sequence[str | None]]) -> None:
        """Rows made before (`rows_of`, kept in a digest), streamed in as `load` puts them."""
        with self._db:
            self._db.executemany("INSERT INTO contact VALUES (?, ?, ?, ?, ?)", rows)

    @staticmethod
    def rows_of(objects: Iterable[rpsl.RpslObject]) -> list[Row]:
        """The rows `load` keeps of `objects`: a refresh's digest holds them, to look contacts up
        without reading their texts again."""
        return [row for obj in objects if (row := Contacts._row(obj)) is not None]

    @staticmethod
    def key_of(obj: rpsl.RpslObject) -> str | None:
        """The key a contact is looked up by: `org:` and an organisation's handle, `box:` and a role's
        nic-hdl or an IRT's name (`_row`'s handles); None for any other object."""
        if obj.kind == "organisation":
            return f"org:{obj.key}"
        handle = obj.first("nic-hdl") if obj.kind == "role" else obj.key if obj.kind == "irt" else None
        return f"box:{handle}" if handle else None

    @staticmethod
    def _row(obj: rpsl.RpslObject) -> Row | None:
        """("org", handle, name, country, abuse-c) or ("box", handle, None, None, mailboxes)."""
        if obj.kind == "organisation":
            return "org", obj.key, obj.first("org-name") or obj.key, _country(obj.first("country")), \
                obj.first("abuse-c")
        if obj.kind in ("role", "irt"):
            boxes = [m for word in _EMAIL_WORDS for m in obj.all(word)]
            handle = obj.first("nic-hdl") if obj.kind == "role" else obj.key
            if boxes and handle:
                return "box", handle, None, None, "\n".join(boxes)
        return None

    def index(self) -> None:
        """Made once every file's contacts are in: sorting them once costs less than keeping an
        index while rows arrive in no order."""
        self._db.execute("CREATE INDEX contact_handle ON contact (kind, handle)")

    def _latest(self, kind: str, handle: str) -> tuple[str | None, str | None, str | None] | None:
        row = self._db.execute("SELECT name, country, extra FROM contact WHERE kind = ? AND handle = ? "
                               "ORDER BY rowid DESC LIMIT 1", (kind, handle)).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def org(self, handle: str) -> tuple[str | None, str | None, str | None]:
        """An organisation's name, country and abuse-c; (None, None, None) when the dump has none."""
        return self._latest("org", handle) or (None, None, None)

    def mailboxes(self, handle: str) -> list[str]:
        """A role's or IRT's abuse mailboxes, [] when the dump has none for the handle."""
        found = self._latest("box", handle)
        return found[2].split("\n") if found and found[2] else []

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()


@dataclass
class DumpReport:
    """What reading a registry's dumps gave: records, objects skipped (the first few named), problems."""

    registry: str
    serial: str | None
    records: int = 0
    skipped: int = 0
    skipped_named: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # files cut off or unreadable: that registry goes live
    holes: list[tuple[int, int]] = field(default_factory=list)  # spans of inetnums skipped: to ask live
    unplaced: int = 0  # inetnums (or objects of no known type) skipped whose span could not be read
    reused: int = 0  # networks in scope unchanged since the previous read, not parsed (`changed`)
    digest_problem: str | None = None  # why the previous read's digest was not used, if it was not
    # the staging process's resident memory when it started and at its peak (`seed.stage_apart`), MB
    rss_mb: tuple[float, float] | None = None

    @property
    def complete(self) -> bool:
        return not self.problems

    def skip(self, where: str, kind: str | None = "inetnum", key: str | None = None) -> None:
        """An object left out: named, and its span kept (an inetnum's) so the crawl asks there live."""
        if kind in ("inetnum", None):
            try:
                self.holes.append(rpsl.parse_range(key or ""))
            except ValueError:
                self.unplaced += 1
        self.skipped += 1
        if len(self.skipped_named) < 20:
            self.skipped_named.append(where)


def _country(text: str | None) -> str | None:
    code = (text or "").strip().upper()
    return code if len(code) == 2 and code != "ZZ" else None


def _split_type(path: Path) -> str | None:
    """The object type of a split file (`ripe.db.inetnum.gz` -> inetnum), None for a single dump."""
    parts = path.name.removesuffix(".gz").split(".")
    return parts[2] if len(parts) == 3 and parts[1] == "db" else None


@dataclass(frozen=True)
class Text:
    """One text of a dump (`rpsl.texts`): its hash, its objects read well, and whether none was broken."""

    hash: int  # `digest.number`
    line: int
    objects: list[rpsl.RpslObject]
    clean: bool

    @property
    def single(self) -> rpsl.RpslObject | None:
        """Its one object, when it is one object read well (what a digest keeps)."""
        return self.objects[0] if self.clean and len(self.objects) == 1 else None


def texts_of(path: Path, report: DumpReport, again: bool = False) -> Iterator[tuple[int, bytes, bool]]:
    """A file's texts (`rpsl.texts`), each with whether the file is known whole up to it; a cut
    reported once (`again`: a single file's second read, whose first one reported it)."""
    blocks = DumpBlocks(path)
    for line, text, last in rpsl.texts(blocks):
        yield line, text, not last or blocks.complete
    if blocks.problem and not again:
        report.problems.append(blocks.problem)


def read_text(path: Path, line: int, text: bytes, whole: bool, report: DumpReport | None) -> Text:
    """A text parsed; what is broken reported (to `report`, unless None: already reported)."""
    found, clean = [], True
    for obj in rpsl.parse_text(text, line, whole):
        if isinstance(obj, rpsl.Broken):
            clean = False
            if report is not None:
                report.skip(f"{path}, object at line {obj.line}: {obj.reason}", obj.kind, obj.key)
        else:
            found.append(obj)
    return Text(digest.number(text), line, found, clean)


def _parsed(path: Path, report: DumpReport, again: bool = False) -> Iterator[Text]:
    for line, text, whole in texts_of(path, report, again):
        yield read_text(path, line, text, whole, None if again else report)


def contact_files(paths: list[Path]) -> list[Path]:
    """The files read for contacts: split files of other types than inetnum, or the single file."""
    return [p for p in paths if _split_type(p) not in ("inetnum",)]


def network_files(paths: list[Path]) -> list[tuple[Path, bool]]:
    """The files read for networks, each with whether it is read a second time (a single file)."""
    return [(p, _split_type(p) is None) for p in paths if _split_type(p) in ("inetnum", None)]


def _contact_objects(paths: list[Path], report: DumpReport,
                     kept: digest.Writer | None) -> Iterator[rpsl.RpslObject]:
    """The objects of every file read for contacts (split files of other types, or the single file's
    first pass), each text's contact keys kept in the digest."""
    for path in contact_files(paths):
        for text in _parsed(path, report):
            if kept is not None:
                kept.contacts(text.hash, keys_of(text.objects), text.clean, Contacts.rows_of(text.objects))
            yield from text.objects


def keys_of(objects: Iterable[rpsl.RpslObject]) -> list[str]:
    return [key for obj in objects if (key := Contacts.key_of(obj)) is not None]


def read_registry(
    registry: str, paths: list[Path], serial: str | None, observed_at: str | None = None,
    workdir: Path | None = None, digest_to: Path | None = None,
) -> tuple[DumpReport, Iterator[NetworkRecord]]:
    """A registry's dump files as records: first every file's contacts (split files of other types,
    or the single file's first pass) into an index on disk (under `workdir`, else the system's
    temporary directory), then its inetnums streamed. Iterate the records through before reading
    the report's `problems`; the index is removed once they are (or when the iterator is closed).
    With `digest_to`, what each object's text gave is written there as it is read (`digest`),
    kept only once the dump read through whole."""
    report = DumpReport(registry, serial)
    contacts = Contacts(workdir)
    kept = digest.Writer(digest_to, registry, serial, observed_at) if digest_to else None
    try:
        contacts.load(_contact_objects(paths, report, kept))
        contacts.index()
    except BaseException:
        contacts.close()
        if kept is not None:
            kept.discard()
        raise

    def records() -> Iterator[NetworkRecord]:
        done = False
        try:
            for path, again in network_files(paths):
                for text in _parsed(path, report, again):
                    yield from networks_of(path, text, Reading(registry, contacts, serial, observed_at),
                                         report, kept)
            done = report.complete
        finally:
            contacts.close()
            if kept is not None:
                kept.commit() if done else kept.discard()

    return report, records()


@dataclass(frozen=True)
class Reading:
    """What every network of one read is read with: its registry, contacts and provenance."""

    registry: str
    contacts: Contacts
    serial: str | None
    observed_at: str | None


def networks_of(path: Path, text: Text, reading: Reading, report: DumpReport,
              kept: digest.Writer | None) -> Iterator[NetworkRecord]:
    """The records of one text's inetnums (others passed over); what it gave kept in the digest
    where it is one object read well."""
    for obj in text.objects:
        if obj.kind != "inetnum":
            if kept is not None and text.single is not None:
                kept.other(text.hash)
            continue
        record, joined = _network(reading, obj)
        if isinstance(record, str):
            report.skip(f"{path}, object at line {obj.line}: {record}", obj.kind, obj.key)
            continue
        report.records += 1
        if kept is not None and text.single is not None:
            span = ipv4.ip_int(record.start_address), ipv4.ip_int(record.end_address)
            kept.network(text.hash, *span, joined)
        yield record


def handle_of(registry: str, first: int, last: int, cidrs: list[str] | None = None) -> str:
    """The handle the registry's RDAP gives a network: its CIDR where the registry's objects are
    CIDRs (`rirs.Rir.cidr_objects`: LACNIC), everyone else's `a - b`."""
    if rirs.BY_ID[registry].cidr_objects:
        cidrs = cidrs or ipv4.cidrs(first, last)
        if len(cidrs) == 1:
            return cidrs[0]
    return f"{ip_str(first)} - {ip_str(last)}"


def to_record(
    registry: str, obj: rpsl.RpslObject, contacts: Contacts, serial: str | None, observed_at: str | None
) -> NetworkRecord | str:
    """An inetnum as a record, joined with its organisation and abuse contacts; a string saying why not."""
    return _network(Reading(registry, contacts, serial, observed_at), obj)[0]


def _network(reading: Reading, obj: rpsl.RpslObject) -> tuple[NetworkRecord | str, list[str]]:
    """`to_record`, and the keys of the contacts it was joined with (`Contacts.key_of`): a change
    in any of them reads it again."""
    try:
        first, last = rpsl.parse_range(obj.key)
    except ValueError as exc:
        return str(exc), []
    registry, contacts = reading.registry, reading.contacts
    cidrs = ipv4.cidrs(first, last)
    org = obj.first("org")
    org_name, org_country, org_abuse = contacts.org(org) if org else (None, None, None)
    joined = [f"org:{org}"] if org else []
    joined += [f"box:{h}" for h in (obj.first("abuse-c"), org_abuse, *obj.all("mnt-irt")) if h]
    # LACNIC names the holder in the object itself; elsewhere the organisation, else the description.
    holder = obj.first("owner") or org_name or (obj.first("descr") or "").split("\n")[0] or None
    country = _country(obj.first("country"))
    abuse = _abuse(obj, contacts, org_abuse)
    unresolved = [] if abuse else obj.all("abuse-c")
    return NetworkRecord(
        registry=registry,
        handle=handle_of(registry, first, last, cidrs),
        start_address=ip_str(first),
        end_address=ip_str(last),
        cidrs=cidrs,
        # LACNIC writes no netname: its RDAP names a network by its holder, the dump's `owner:`
        name=obj.first("netname") or obj.first("owner") or obj.first("ownerid"),
        country=country or org_country,
        country_source="network" if country else ("holder" if org_country else None),
        parent_handle=_parent(registry, obj.first("parent")),
        type=(obj.first("status") or "").upper() or None,
        status=["active"],
        abuse_emails=abuse,
        registrant=holder,
        registration_date=obj.first("created"),
        last_changed=obj.first("last-modified") or obj.first("changed"),
        source="dump",
        serial=reading.serial,
        observed_at=reading.observed_at,
        raw={UNRESOLVED: unresolved} if unresolved else None,
    ), joined


def unresolved_abuse(record: NetworkRecord) -> str | None:
    """The abuse contact a dumped record names by handle only (`UNRESOLVED`), None if none."""
    handles = (record.raw or {}).get(UNRESOLVED) or []
    return str(handles[0]) if handles else None


def _parent(registry: str, text: str | None) -> str | None:
    """AFRINIC's and LACNIC's `parent:` as the parent's handle (None when it is not a range)."""
    try:
        return handle_of(registry, *rpsl.parse_range(text)) if text else None
    except ValueError:
        return None


def _abuse(obj: rpsl.RpslObject, contacts: Contacts, org_abuse: str | None) -> list[str]:
    """The object's own abuse-mailbox, else its abuse-c role's, else its organisation's abuse-c role's,
    else its IRT's (APNIC's `mnt-irt`), else the addresses its remarks give for abuse (AFRINIC's
    "please send abuse reports to ...", read as the WHOIS parser reads them)."""
    own = obj.all("abuse-mailbox")
    if own:
        return own
    for handle in (obj.first("abuse-c"), org_abuse, *obj.all("mnt-irt")):
        if handle and (boxes := contacts.mailboxes(handle)):
            return boxes
    return remark_abuse_emails(obj.all("remarks"))


def registries_with_dumps() -> tuple[str, ...]:
    """The registries that publish a dump (not ARIN: its Bulk Whois needs a signed agreement)."""
    return tuple(r.id for r in rirs.CATALOGUE if r.dump_urls)
