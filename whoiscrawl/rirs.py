"""The five regional internet registries, catalogued once: names, addresses, listings, limits, statuses.

Dependency-free on purpose: the space model, the rate limiter, the registry client, the operator
and the simulator all read their registry facts from here, and nothing here reads them back.
Sources: RFC 9910, the registries' published limits, WHOIS manuals and download trees (docs/rate-limits.md,
docs/sources.md)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

# How a registry lists a network's children (one request for a whole level of the hierarchy), in
# the order the client prefers them. RFC 9910 relation search: RIPE NCC serves it; ARIN announced
# it in 2025 (endpoint list unverified, so the client follows it only where an answer links it);
# no evidence for APNIC, LACNIC or AFRINIC. RIPE NCC's WHOIS software (RIPE NCC, APNIC, AFRINIC)
# answers `-m`; ARIN's its own `r >`; LACNIC's takes single addresses only.
RDAP_DOWN = "rdap-down"  # RFC 9910 relation search, followed where an answer links it
WHOIS_MORE_SPECIFIC = "-m"  # RIPE-style WHOIS: `-r -m <range>`, one level more specific
WHOIS_ARIN_CHILDREN = "r >"  # ARIN's WHOIS: `r + > <cidr>`, every level more specific
# ARIN's WHOIS also answers `r + < <cidr>`: every network holding all of the CIDR, its own included
# (ARIN's Whois-RWS API documentation: "`<` to obtain records up the hierarchy"; the hierarchy
# flags apply to CIDR queries). A listing split in parts asks it at each cut (`whois.ArinListing`).

# Status words shared by every registry: a placeholder for free space, however it is spelled.
FREE_TYPE_WORD = "UNALLOCATED"  # in an RDAP "type" / WHOIS status or NetType
FREE_STATUSES = frozenset({"reserved", "available"})  # RDAP "status" values


# IANA IPv4 Special-Purpose Address Registry (RFC 6890 and updates): never probed blind
# (`space.plan_crawl`), never a registry's free space (the simulator's placeholders, the statistics'
# free rows as records: `sources.published.StatsPlan.free_records`). A few are delegated all the same
# and a registry publishes them: ARIN's 192.175.48.0/24 (NET-192-175-48-0-1, AS112, RFC 7534) is an
# `assigned` row of its statistics; a crawl that read them asks such a delegation (`space.crawlable`).
SPECIAL_PURPOSE = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.31.196.0/24",
    "192.52.193.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "192.175.48.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
)
# The same ranges as (first, last) integers, ascending: to cut them out of a span (`ipv4.less`).
SPECIAL_SPANS = tuple(sorted((int(n.network_address), int(n.broadcast_address))
                             for n in map(ipaddress.IPv4Network, SPECIAL_PURPOSE)))


@dataclass(frozen=True)
class Rir:
    """One registry: what it is called, where it answers, what it offers and what it allows."""

    id: str  # the crawler's name for it (records, metrics, rate-limit settings)
    name: str  # the organisation's full name
    iana_designation: str  # as IANA's IPv4 /8 table names it
    rdap_base: str  # its RDAP service (RFC 9224 base URL)
    whois_server: str  # its port-43 server, host:port
    whois_source: str  # the `source:` word of its RPSL objects
    listings: tuple[str, ...]  # RDAP_DOWN, WHOIS_MORE_SPECIFIC, WHOIS_ARIN_CHILDREN, or none
    default_rate: str  # published (or conservative) per-address limit, in the rate syntax
    default_connections: int  # simultaneous connections per address
    allocations: tuple[str, ...]  # its "type" words for allocations (may hold children anywhere)
    assignments: tuple[str, ...]  # its "type" words for assignments (hold end users: leaves)
    # Contact objects a WHOIS client may fetch a day per address (None: no published quota); where
    # there is one, queries ask `-r` (no contact objects), which keeps them out of it.
    personal_data_per_day: int | None = None
    # What it publishes (real download locations; docs/sources.md): its delegation statistics, its
    # bulk RPSL dumps (none at ARIN: Bulk Whois needs a signed agreement) and the dumps' serial file.
    stats_url: str = ""
    dump_urls: tuple[str, ...] = ()
    serial_url: str | None = None
    # Its "type" words for networks its database refuses children under, and the source that says
    # so. RIPE NCC's server (RIPE-NCC/whois, `InetnumStatus.PARENT_STATUS`) lists
    # no status whose allowed parents include ASSIGNED PA, ASSIGNED PI or ASSIGNED ANYCAST; AFRINIC
    # runs RIPE NCC's software. APNIC's fork accepts any parent (APNIC-net/whois `InetnumStatus.
    # worksWithParentStatus` answers true), ARIN documents "reallocations and reassignments may
    # only be made from an allocation" but whether its database refuses them is unverified, and
    # LACNIC's rule is unknown: none there. Objects older than a rule may still nest: a crawl
    # misses their children smaller than a grid cell (the grid never probes inside an assignment).
    childless: tuple[str, ...] = ()
    # Terms a user must accept before the crawler reads its dumps (None: no opt-in asked).
    dump_terms: str | None = None
    # The mailbox its answers name as abuse contact of space it holds but has handed to no one (its
    # placeholders for free and reserved space), with a remark that it operates no network there.
    # Real: APNIC's IANA-NETBLOCK-45 names IRT-APNIC-AP, helpdesk@apnic.net ("We do not operate the
    # referring network and are unable to investigate complaints of network abuse"); AFRINIC's own
    # 196.216.2.0/23 names abuse@afrinic.net (IRT-AFRINIC-IT); ARIN's 240.0.0.0/4 names IANA's
    # abuse@iana.org. ARIN's, RIPE NCC's and LACNIC's own for free space: unverified.
    abuse_mailbox: str = ""
    # Its dump names a network's abuse contact by handle only, without an address (LACNIC's,
    # "highly redacted": no contact objects): the fill asks each contact's entity live.
    dump_redacts_abuse: bool = False
    # Most networks one WHOIS listing answers; a listing that matched more is cut there and says so
    # (None: no cap known). ARIN: "the ARIN WHOIS query limit of 256 results has been in place since
    # ARIN's inception ... queries that return more than 256 results will stop displaying data after
    # the 256th result" (ARIN, arin-consult, 2007-03); Whois-RWS lists carry
    # `<limitExceeded limit="256">`, true when cut. Port 43's wording of the cut: unverified.
    whois_listing_limit: int | None = None
    # Its networks are CIDR blocks, each named by its CIDR (LACNIC: RDAP handles like
    # `200.68.34.56/29`, `inetnum: 5.183.80/22` in its dump), free space included: a statistics row
    # spanning several CIDRs is several of its placeholders, not one.
    cidr_objects: bool = False

    @property
    def whois_flags(self) -> str:
        """What a RIPE-style query starts with: `-r ` under a personal-data quota, else nothing
        (APNIC has none, and `-r` would drop the IRT object that holds its abuse address)."""
        return "-r " if self.personal_data_per_day is not None else ""

    @property
    def whois_host(self) -> str:
        return self.whois_server.rsplit(":", 1)[0]


# Limits: LACNIC allows about ten queries a minute before a five-minute block; RIPE NCC 429s past a
# threshold and allows three connections; AFRINIC caps daily volume; ARIN and APNIC publish no
# number, so stay modest (docs/rate-limits.md).
CATALOGUE: tuple[Rir, ...] = (
    Rir("arin", "American Registry for Internet Numbers", "ARIN", "https://rdap.arin.net/registry/",
        "whois.arin.net:43", "ARIN", (RDAP_DOWN, WHOIS_ARIN_CHILDREN), "10/s", 4,
        ("DIRECT ALLOCATION", "REALLOCATION"), ("DIRECT ASSIGNMENT", "REASSIGNMENT"),
        stats_url="https://ftp.arin.net/pub/stats/arin/delegated-arin-extended-latest",
        abuse_mailbox="abuse@arin.net", whois_listing_limit=256),
    Rir("ripencc", "RIPE Network Coordination Centre", "RIPE NCC", "https://rdap.db.ripe.net/",
        "whois.ripe.net:43", "RIPE", (RDAP_DOWN, WHOIS_MORE_SPECIFIC), "10/s", 3,
        ("ALLOCATED PA", "SUB-ALLOCATED PA", "LIR-PARTITIONED PA", "AGGREGATED-BY-LIR", "LEGACY"),
        ("ASSIGNED PA", "ASSIGNED PI"), personal_data_per_day=1_000,
        childless=("ASSIGNED PA", "ASSIGNED PI", "ASSIGNED ANYCAST"),
        stats_url="https://ftp.ripe.net/pub/stats/ripencc/delegated-ripencc-extended-latest",
        dump_urls=tuple(f"https://ftp.ripe.net/ripe/dbase/split/ripe.db.{t}.gz"
                        for t in ("inetnum", "organisation", "role")),
        serial_url="https://ftp.ripe.net/ripe/dbase/RIPE.CURRENTSERIAL",
        dump_terms="the RIPE Database Terms and Conditions and acceptable-use policy (copying a significant "
        "part is limited): https://docs.db.ripe.net/terms-conditions.html",
        abuse_mailbox="abuse@ripe.net"),
    Rir("apnic", "Asia Pacific Network Information Centre", "APNIC", "https://rdap.apnic.net/",
        "whois.apnic.net:43", "APNIC", (WHOIS_MORE_SPECIFIC,), "10/s", 4,
        ("ALLOCATED PORTABLE", "ALLOCATED NON-PORTABLE"),
        ("ASSIGNED PORTABLE", "ASSIGNED NON-PORTABLE"),
        stats_url="https://ftp.apnic.net/stats/apnic/delegated-apnic-extended-latest",
        dump_urls=tuple(f"https://ftp.apnic.net/apnic/whois/apnic.db.{t}.gz"
                        for t in ("inetnum", "organisation", "role", "irt")),
        serial_url="https://ftp.apnic.net/apnic/whois/APNIC.CURRENTSERIAL",
        abuse_mailbox="helpdesk@apnic.net"),
    Rir("lacnic", "Latin American and Caribbean IP address Regional Registry", "LACNIC",
        "https://rdap.lacnic.net/rdap/", "whois.lacnic.net:43", "LACNIC", (), "10/m", 1,
        ("ALLOCATED",), ("ASSIGNED",),
        stats_url="https://ftp.lacnic.net/pub/stats/lacnic/delegated-lacnic-extended-latest",
        dump_urls=("https://ftp.lacnic.net/lacnic/dbase/lacnic.db.gz",),
        abuse_mailbox="abuse@lacnic.net", dump_redacts_abuse=True, cidr_objects=True),
    Rir("afrinic", "African Network Information Center", "AFRINIC", "https://rdap.afrinic.net/rdap/",
        "whois.afrinic.net:43", "AFRINIC", (WHOIS_MORE_SPECIFIC,), "2/s", 2,
        ("ALLOCATED PA", "SUB-ALLOCATED PA"), ("ASSIGNED PA", "ASSIGNED PI"),
        personal_data_per_day=5_000, childless=("ASSIGNED PA", "ASSIGNED PI", "ASSIGNED ANYCAST"),
        stats_url="https://ftp.afrinic.net/pub/stats/afrinic/delegated-afrinic-extended-latest",
        dump_urls=("https://ftp.afrinic.net/pub/dbase/afrinic.db.gz",),
        dump_terms="AFRINIC's bulk WHOIS terms: the dump may not be redistributed",
        abuse_mailbox="abuse@afrinic.net"),
)
BY_ID: dict[str, Rir] = {r.id: r for r in CATALOGUE}
REGISTRIES: tuple[str, ...] = tuple(r.id for r in CATALOGUE)
# What a crawl can read of the registries: their delegation statistics, their bulk dumps, and their
# live RDAP/WHOIS services (docs/sources.md).
SOURCES: tuple[str, ...] = ("stats", "dumps", "live")


def published_at(url: str, files_base: str | None) -> str:
    """Where to fetch a published file: its real location, or the same host and path under a
    mirror's base (the simulator serves `<root>/published/<host>/<path>`)."""
    if not files_base:
        return url
    host_and_path = url.split("://", 1)[-1]
    return f"{files_base.rstrip('/')}/{host_and_path}"


def offering(method: str) -> frozenset[str]:
    """The registries that offer a listing method."""
    return frozenset(r.id for r in CATALOGUE if method in r.listings)


def by_designation(designation: str) -> str | None:
    """The registry IANA's /8 table names (`RIPE NCC` -> `ripencc`), None for anything else."""
    return next((r.id for r in CATALOGUE if r.iana_designation == designation), None)


def by_whois_host(host: str) -> str | None:
    """The registry whose port-43 server this is (`whois.ripe.net` -> `ripencc`)."""
    return next((r.id for r in CATALOGUE if host and r.whois_server.startswith(host)), None)


def by_whois_source(source: str) -> str | None:
    """The registry an RPSL `source:` word names (`RIPE` -> `ripencc`)."""
    return next((r.id for r in CATALOGUE if r.whois_source == source), None)


def is_free(net_type: str | None, status: Sequence[str]) -> bool:
    """A registry's placeholder for space it has not handed out."""
    if FREE_TYPE_WORD in (net_type or "").upper():
        return True
    return any(s.lower() in FREE_STATUSES for s in status)


def is_childless(registry: str, net_type: str | None) -> bool:
    """A network whose registry refuses children under its status (RIPE NCC's ASSIGNED PA)."""
    rir = BY_ID.get(registry)
    return rir is not None and (net_type or "").upper() in rir.childless


def is_assignment(net_type: str | None) -> bool:
    """An assignment in any registry's words (`ASSIGNED PA`, ARIN `REASSIGNMENT`, WHOIS `Reassigned`)."""
    word = (net_type or "").upper()
    return "ASSIGN" in word and "ALLOC" not in word
