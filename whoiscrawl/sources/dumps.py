"""Bulk RPSL dumps read into the record schema: split files joined by key, single files in two passes.

Memory stays bounded: organisations, abuse roles and IRTs (small) are held in memory; inetnums are
streamed, one record out per object read. RIPE NCC and APNIC publish one file per object type,
AFRINIC and LACNIC one file with everything (read twice: first its contacts, then its inetnums).
Formats and terms: docs/sources.md."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from whoiscrawl import ipv4, rirs
from whoiscrawl.ipv4 import ip_str
from whoiscrawl.records import NetworkRecord
from whoiscrawl.registry.contacts import remark_abuse_emails
from whoiscrawl.sources import rpsl

# Objects a record is joined with, by the attribute that names them.
_CONTACTS = frozenset({"organisation", "role", "irt"})
_EMAIL_WORDS = ("abuse-mailbox",)


class DumpError(ValueError):
    """A dump that cannot be read at all (missing, not gzip); the text names the file."""


@dataclass
class DumpLines:
    """A dump's lines as text, gzip or not: UTF-8 where a line is, else Latin-1 (LACNIC's); CRLF
    tolerated. A truncated gzip ends the lines early and leaves `complete` False and `problem` said."""

    path: Path
    complete: bool = True
    problem: str | None = None
    line_no: int = 0

    def __iter__(self) -> Iterator[str]:
        opener = gzip.open if self.path.name.endswith(".gz") else open
        try:
            with opener(self.path, "rb") as fh:
                for raw in fh:
                    self.line_no += 1
                    try:
                        yield raw.decode("utf-8")
                    except UnicodeDecodeError:
                        yield raw.decode("latin-1")
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            if self.line_no == 0 and not isinstance(exc, EOFError):
                raise DumpError(f"{self.path}: cannot be read as a dump ({exc})") from exc
            self.complete = False
            self.problem = f"{self.path}, line {self.line_no}: the file ends early ({exc})"


@dataclass
class Contacts:
    """A registry's organisations (name, country), abuse roles' and IRTs' mailboxes, by handle."""

    orgs: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    org_abuse: dict[str, str] = field(default_factory=dict)  # organisation -> its abuse-c
    mailboxes: dict[str, list[str]] = field(default_factory=dict)  # role nic-hdl or irt name -> mailboxes

    def add(self, obj: rpsl.RpslObject) -> None:
        if obj.kind == "organisation":
            self.orgs[obj.key] = (obj.first("org-name") or obj.key, _country(obj.first("country")))
            if obj.first("abuse-c"):
                self.org_abuse[obj.key] = str(obj.first("abuse-c"))
        elif obj.kind in ("role", "irt"):
            boxes = [m for word in _EMAIL_WORDS for m in obj.all(word)]
            handle = obj.first("nic-hdl") if obj.kind == "role" else obj.key
            if boxes and handle:
                self.mailboxes[handle] = boxes


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


def _objects(path: Path, report: DumpReport, again: bool = False) -> Iterator[rpsl.RpslObject]:
    """A file's objects; what is broken or cut off reported once (`again`: a single file's second
    read, whose first one reported it)."""
    lines = DumpLines(path)
    for obj in rpsl.objects(lines):
        if isinstance(obj, rpsl.Broken):
            if not again:
                report.skip(f"{path}, object at line {obj.line}: {obj.reason}", obj.kind, obj.key)
        else:
            yield obj
    if lines.problem and not again:
        report.problems.append(lines.problem)


def read_registry(
    registry: str, paths: list[Path], serial: str | None, observed_at: str | None = None
) -> tuple[DumpReport, Iterator[NetworkRecord]]:
    """A registry's dump files as records: first every file's contacts (split files of other types,
    or the single file's first pass), then its inetnums streamed. Iterate the records through
    before reading the report's `problems`."""
    report = DumpReport(registry, serial)
    contacts = Contacts()
    for path in paths:
        if _split_type(path) not in ("inetnum",):
            for obj in _objects(path, report):
                if obj.kind in _CONTACTS:
                    contacts.add(obj)
    inetnum_files = [p for p in paths if _split_type(p) in ("inetnum", None)]

    def records() -> Iterator[NetworkRecord]:
        for path in inetnum_files:
            for obj in _objects(path, report, again=_split_type(path) is None):
                if obj.kind != "inetnum":
                    continue
                record = to_record(registry, obj, contacts, serial, observed_at)
                if isinstance(record, str):
                    report.skip(f"{path}, object at line {obj.line}: {record}", obj.kind, obj.key)
                    continue
                report.records += 1
                yield record

    return report, records()


def handle_of(registry: str, first: int, last: int, cidrs: list[str] | None = None) -> str:
    """The handle the registry's RDAP gives a network: LACNIC's CIDR, everyone else's `a - b`."""
    if registry == "lacnic":
        cidrs = cidrs or ipv4.cidrs(first, last)
        if len(cidrs) == 1:
            return cidrs[0]
    return f"{ip_str(first)} - {ip_str(last)}"


def to_record(
    registry: str, obj: rpsl.RpslObject, contacts: Contacts, serial: str | None, observed_at: str | None
) -> NetworkRecord | str:
    """An inetnum as a record, joined with its organisation and abuse contacts; a string saying why not."""
    try:
        first, last = rpsl.parse_range(obj.key)
    except ValueError as exc:
        return str(exc)
    cidrs = ipv4.cidrs(first, last)
    org = obj.first("org")
    org_name, org_country = contacts.orgs.get(org, (None, None)) if org else (None, None)
    # LACNIC names the holder in the object itself; elsewhere the organisation, else the description.
    holder = obj.first("owner") or org_name or (obj.first("descr") or "").split("\n")[0] or None
    country = _country(obj.first("country"))
    return NetworkRecord(
        registry=registry,
        handle=handle_of(registry, first, last, cidrs),
        start_address=ip_str(first),
        end_address=ip_str(last),
        cidrs=cidrs,
        name=obj.first("netname") or obj.first("ownerid"),
        country=country or org_country,
        country_source="network" if country else ("holder" if org_country else None),
        parent_handle=_parent(registry, obj.first("parent")),
        type=(obj.first("status") or "").upper() or None,
        status=["active"],
        abuse_emails=_abuse(obj, contacts, org),
        registrant=holder,
        registration_date=obj.first("created"),
        last_changed=obj.first("last-modified") or obj.first("changed"),
        source="dump",
        serial=serial,
        observed_at=observed_at,
    )


def _parent(registry: str, text: str | None) -> str | None:
    """AFRINIC's and LACNIC's `parent:` as the parent's handle (None when it is not a range)."""
    try:
        return handle_of(registry, *rpsl.parse_range(text)) if text else None
    except ValueError:
        return None


def _abuse(obj: rpsl.RpslObject, contacts: Contacts, org: str | None) -> list[str]:
    """The object's own abuse-mailbox, else its abuse-c role's, else its organisation's abuse-c role's,
    else its IRT's (APNIC's `mnt-irt`), else the addresses its remarks give for abuse (AFRINIC's
    "please send abuse reports to ...", read as the WHOIS parser reads them)."""
    own = obj.all("abuse-mailbox")
    if own:
        return own
    for handle in (obj.first("abuse-c"), contacts.org_abuse.get(org or ""), *obj.all("mnt-irt")):
        if handle and handle in contacts.mailboxes:
            return list(contacts.mailboxes[handle])
    return remark_abuse_emails(obj.all("remarks"))


def registries_with_dumps() -> tuple[str, ...]:
    """The registries that publish a dump (not ARIN: its Bulk Whois needs a signed agreement)."""
    return tuple(r.id for r in rirs.CATALOGUE if r.dump_urls)
