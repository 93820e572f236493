"""The IPv4 space: IANA /8 -> registry, RFC 9224 bootstrap, special-purpose ranges, and shards."""

from __future__ import annotations

import itertools
import json
import os
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from netaddr import AddrFormatError, IPAddress, IPNetwork, IPRange, IPSet
from netaddr.ip import iana

from whoiscrawl import rirs
from whoiscrawl.records import Shard
from whoiscrawl.rirs import SPECIAL_PURPOSE  # its home: the catalogue, which the simulator reads too


class SpaceError(ValueError):
    """A range or bootstrap the user gave cannot be used; the text says which and why."""


@cache
def iana_registry_by_slash8() -> dict[int, str | None]:
    """First octet -> registry id (legacy "Administered by X" space counts as X), None if IANA keeps it."""
    if not iana.IANA_INFO.get("IPv4"):
        iana.load_info()
    table: dict[int, str | None] = {}
    for net, info in iana.IANA_INFO["IPv4"].items():
        designation = info.get("designation", "").replace("Administered by ", "")
        registry = rirs.by_designation(designation) or rirs.by_whois_host(info.get("whois", ""))
        for octet in range(int(net.first) >> 24, (int(net.last) >> 24) + 1):
            table[octet] = registry
    return table


def registry_for(address: int) -> str | None:
    """The registry IANA assigned the address's /8 to: a table look-up, no network call."""
    return iana_registry_by_slash8().get(address >> 24)


# --- RFC 9224 bootstrap --------------------------------------------------------------------------


@dataclass(frozen=True)
class Bootstrap:
    """Prefix -> RDAP base URL, from an RFC 9224 `ipv4.json`; registries are named by the IANA table."""

    starts: tuple[int, ...]
    entries: tuple[tuple[int, int, str], ...]  # (first, last, base_url), sorted, non-overlapping
    registry_of_base: dict[str, str]
    # registry -> its base URL (the first in `registry_of_base` naming it): asked per lookup, a
    # walk over every base was ~5.8% of the crawler's CPU in `full`'s live part
    _base_of_registry: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        bases: dict[str, str] = {}
        for base, registry in self.registry_of_base.items():
            bases.setdefault(registry, base)
        object.__setattr__(self, "_base_of_registry", bases)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Bootstrap:
        rows = _service_rows(doc)
        entries = []
        votes: dict[str, dict[str, int]] = {}
        for net, urls in rows:
            base = next((u for u in urls if u.startswith("https://")), urls[0])
            base = base if base.endswith("/") else base + "/"
            entries.append((int(net.first), int(net.last), base))
            registry = registry_for(int(net.first))
            if registry:
                votes.setdefault(base, {}).setdefault(registry, 0)
                votes[base][registry] += net.size
        entries.sort()
        registry_of_base = {b: max(v, key=lambda r: v[r]) for b, v in votes.items()}
        return cls(tuple(e[0] for e in entries), tuple(entries), registry_of_base)

    @classmethod
    def from_json(cls, body: bytes | str) -> Bootstrap:
        """A bootstrap from the bytes of an RFC 9224 document (SpaceError: not one)."""
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError) as exc:  # RecursionError: nesting no decoder follows
            raise SpaceError(f"the RDAP bootstrap is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise SpaceError("the RDAP bootstrap is not a JSON object")
        return cls.from_document(doc)

    @classmethod
    def bundled(cls) -> Bootstrap:
        return cls.from_document(bundled_bootstrap_document())

    def base_url(self, address: int) -> str | None:
        i = bisect_right(self.starts, address) - 1
        if i >= 0 and self.entries[i][0] <= address <= self.entries[i][1]:
            return self.entries[i][2]
        return None

    def base_of(self, registry: str) -> str | None:
        """The RDAP base URL of a registry (None: the bootstrap names no service of it)."""
        return self._base_of_registry.get(registry)

    def registry_of_url(self, url: str) -> str | None:
        """Which registry a URL (a redirect target, say) belongs to: the longest matching base URL."""
        matches = [b for b in self.registry_of_base if url.startswith(b)]
        return self.registry_of_base[max(matches, key=len)] if matches else None


def _service_rows(doc: Any) -> list[tuple[IPNetwork, list[str]]]:
    """An RFC 9224 document's services as (IPv4 prefix, base URLs), or SpaceError naming what is wrong."""
    services = doc.get("services") if isinstance(doc, dict) else None
    if not isinstance(services, list):
        raise SpaceError("not an RFC 9224 bootstrap document: no list of services")
    rows = []
    for service in services:
        pair = isinstance(service, list) and len(service) == 2
        if not (pair and all(isinstance(x, list) for x in service)):
            raise SpaceError(f"not an RFC 9224 bootstrap service (two lists): {str(service)[:80]}")
        prefixes, urls = service
        if not urls or not all(isinstance(u, str) and u for u in urls):
            raise SpaceError(f"a bootstrap service without base URLs: {str(service)[:80]}")
        for prefix in prefixes:
            try:
                net = IPNetwork(str(prefix))
            except (AddrFormatError, ValueError, TypeError) as exc:
                raise SpaceError(f"a bootstrap prefix that is no CIDR: {str(prefix)[:40]}") from exc
            if net.version == 4:
                rows.append((net, urls))
    return rows


@cache
def bundled_bootstrap_document() -> dict[str, Any]:
    text = resources.files("whoiscrawl").joinpath("data/ipv4.json").read_text()
    doc: dict[str, Any] = json.loads(text)
    return doc


async def fetch_bootstrap(source: str | None) -> Bootstrap:
    """The bundled snapshot, a local file, or an RFC 9224 document at a URL."""
    if not source:
        return Bootstrap.bundled()
    if source.startswith(("http://", "https://")):
        try:
            async with aiohttp.ClientSession() as session, session.get(source) as resp:
                resp.raise_for_status()
                body = await resp.read()
        except (aiohttp.ClientError, ValueError) as exc:
            raise SpaceError(f"cannot read the RDAP bootstrap at {source}: {exc}") from exc
        return Bootstrap.from_json(body)
    path = Path(os.path.expanduser(source))
    if not path.is_file():
        raise SpaceError(f"bootstrap file {path} does not exist")
    return Bootstrap.from_json(path.read_bytes())


def build_bootstrap_document(bases: dict[str, str], description: str) -> dict[str, Any]:
    """An RFC 9224 document mapping every IANA-assigned /8 to its registry's base URL."""
    by_base: dict[str, list[str]] = {}
    for octet, registry in sorted(iana_registry_by_slash8().items()):
        if registry:
            by_base.setdefault(bases[registry], []).append(f"{octet}.0.0.0/8")
    return {
        "version": "1.0",
        "publication": "2026-11-01T00:00:00Z",
        "description": description,
        "services": [[prefixes, [base]] for base, prefixes in by_base.items()],
    }


# --- what to crawl, and how it is cut ----------------------------------------------------------


def parse_ranges(texts: Iterable[str]) -> IPSet:
    """CIDRs, `a.b.c.d-e.f.g.h` ranges or single addresses; 'all' means the whole IPv4 space.
    The set is built once from all of them: adding ranges one by one is quadratic (the statistics'
    5,387 free ranges took 132 s)."""
    nets: list[IPNetwork] = []
    for text in texts:
        text = text.strip()
        try:
            if text in ("all", "0.0.0.0/0"):
                nets.append(IPNetwork("0.0.0.0/0"))
            elif "-" in text:
                first, last = (p.strip() for p in text.split("-", 1))
                nets.extend(IPRange(first, last).cidrs())
            else:
                net = IPNetwork(text)
                if net.version != 4:
                    raise SpaceError(f"{text!r}: only IPv4 is crawled")
                nets.append(net.cidr if net.cidr != net else net)
        except (AddrFormatError, ValueError, TypeError) as exc:
            raise SpaceError(f"{text!r} is not a CIDR, range or IPv4 address ({exc})") from exc
    return IPSet(nets)


def crawlable(ranges: Iterable[str], excludes: Iterable[str] = (), delegated: Iterable[str] = ()) -> IPSet:
    """The addresses to crawl: ranges less excludes, special-purpose space and IANA-held /8s.
    Special-purpose space is never probed blind, but a delegation a registry's statistics list in it
    (`delegated`: `StatsPlan.special_delegations`, such as ARIN's AS112 block 192.175.48.0/24) is a
    network the registry holds and answers: it stays in the crawl."""
    special = IPSet(SPECIAL_PURPOSE) - parse_ranges(delegated)
    space = parse_ranges(ranges) - parse_ranges(excludes) - special
    unassigned = [f"{o}.0.0.0/8" for o, r in iana_registry_by_slash8().items() if r is None]
    return space - IPSet(unassigned)


@dataclass(frozen=True)
class Scope:
    """The crawled space as sorted, disjoint intervals: does a network reach into it? O(log n).

    Listings return a parent's children wherever they lie; the crawl keeps only those it was
    asked for."""

    firsts: tuple[int, ...]
    lasts: tuple[int, ...]

    @classmethod
    def of(cls, spans: Iterable[tuple[int, int]]) -> Scope:
        merged: list[list[int]] = []
        for first, last in sorted(spans):
            if merged and first <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], last)
            else:
                merged.append([first, last])
        return cls(tuple(m[0] for m in merged), tuple(m[1] for m in merged))

    @classmethod
    def of_shards(cls, shards: Iterable[Shard]) -> Scope:
        return cls.of((s.first, s.last) for s in shards)

    def overlaps(self, first: int, last: int) -> bool:
        i = bisect_right(self.firsts, last) - 1
        return i >= 0 and self.lasts[i] >= first

    def hull(self, first: int, last: int) -> tuple[int, int] | None:
        """The smallest span holding all of the scope inside first..last (None: none of it is):
        the part of a network's subtree worth listing."""
        end = self.last_within(first, last)
        return None if end is None else (max(first, self.firsts[bisect_left(self.lasts, first)]), end)

    def overlapping(self, firsts: np.ndarray, lasts: np.ndarray) -> np.ndarray:
        """`overlaps` of many spans at once (a bool each): millions of a dump's networks."""
        if not self.firsts:
            return np.zeros(len(firsts), dtype=bool)
        starts, ends = np.asarray(self.firsts, dtype=np.int64), np.asarray(self.lasts, dtype=np.int64)
        at = np.searchsorted(starts, lasts.astype(np.int64), side="right") - 1  # the last starting in it
        return (at >= 0) & (ends[np.maximum(at, 0)] >= firsts.astype(np.int64))

    def last_within(self, first: int, last: int) -> int | None:
        """The last crawled address in first..last (None: none is): where listing it can stop."""
        i = bisect_right(self.firsts, last) - 1
        return min(self.lasts[i], last) if i >= 0 and self.lasts[i] >= first else None

    def encode(self) -> str:
        return ",".join(f"{f}-{t}" for f, t in zip(self.firsts, self.lasts, strict=True))

    @classmethod
    def decode(cls, text: str) -> Scope:
        spans = [part.split("-") for part in text.split(",") if part]
        return cls.of((int(f), int(t)) for f, t in spans)


def auto_shard_prefix(addresses: int, target_shards: int = 256) -> int:
    """Shard size for a crawl: at least `target_shards` shards, so work spreads over many lanes and
    egress addresses, but never larger than a /16 (progress and redo stay fine-grained) nor smaller
    than a /24."""
    if addresses <= 0:
        return 16
    return max(16, min(24, 32 - max(0, (addresses // target_shards).bit_length() - 1)))


@dataclass(frozen=True)
class Plan:
    """A crawl's work: its shards in publishing order, the addresses they hold and their scope."""

    crawl: str
    shards: tuple[Shard, ...]
    # The special-purpose space of the ranges (less excludes) left out of the shards, a shard-shaped
    # span each (never walked as such): a fleet's loader, which reads the statistics the operator
    # plans without, adds the delegations they list there (`special_shards`, worker/sources.py).
    special: tuple[Shard, ...] = ()

    @property
    def addresses(self) -> int:
        return sum(s.last - s.first + 1 for s in self.shards)

    @property
    def scope(self) -> Scope:
        return Scope.of_shards(self.shards)


def plan_crawl(
    *,
    crawl: str,
    ranges: Iterable[str],
    excludes: Iterable[str] = (),
    strategy: str = "sweep",
    resolution: int = 24,
    shard_prefix: int | None = None,
    samples: int = 0,
    delegated: Iterable[str] = (),
) -> Plan:
    """Cut the crawlable space (`crawlable`: `delegated` the special-purpose space a registry's
    statistics list as delegated) into shards aligned on /shard_prefix boundaries (chosen from the
    size of the space when not given). Each range's shards are in address order, and the ranges
    take turns: lanes that start together then start in different ranges, not side by side inside
    one network that each would pay a lookup to learn (a free /16 spans 16 shards)."""
    space = crawlable(ranges, excludes, delegated)
    withheld = crawlable(ranges, excludes, SPECIAL_PURPOSE) - space
    prefix = shard_prefix if shard_prefix is not None else auto_shard_prefix(space.size)
    if not 8 <= prefix <= 32 or not 8 <= resolution <= 32:
        raise SpaceError("shard_prefix and resolution must be prefix lengths from 8 to 32")
    if strategy not in ("sweep", "sample"):
        raise SpaceError(f"unknown strategy {strategy!r}: use sweep or sample")
    by_range: list[list[Shard]] = []
    for rng in space.iter_ipranges():
        shards: list[Shard] = []
        by_range.append(shards)
        first, last = int(rng.first), int(rng.last)
        # A range is walked by as many lanes as it has shards: cut even a small one into at least
        # 16, so several workers and egress addresses can share it.
        per_range = 32 - max(0, (last - first + 1).bit_length() - 1) + 4
        size = 1 << (32 - (prefix if shard_prefix is not None else max(prefix, min(24, per_range))))
        while first <= last:
            end = min(last, (first // size + 1) * size - 1)
            shard_id = f"{IPAddress(first)}-{IPAddress(end)}"
            shards.append(Shard(crawl, shard_id, first, end, strategy, resolution, samples))
            first = end + 1
    turns = itertools.zip_longest(*by_range)
    special = tuple(Shard(crawl, f"{r[0]}-{r[-1]}", int(r.first), int(r.last), strategy, resolution, samples)
                    for r in withheld.iter_ipranges())
    return Plan(crawl, tuple(s for turn in turns for s in turn if s is not None), special)


def special_shards(withheld: Iterable[Shard], delegated: Iterable[str]) -> tuple[Shard, ...]:
    """The shards of the delegations a registry's statistics list in special-purpose space
    (`delegated`: `StatsPlan.special_delegations`) where a plan withheld it (`Plan.special`), each
    with the withheld span's strategy, resolution and samples: what a crawl that read the
    statistics after the plan was made (a fleet's loader) adds to it. Nothing else of special space."""
    listed = parse_ranges(delegated)
    out: list[Shard] = []
    for span in withheld:
        inside = [str(c) for c in (listed & IPSet(IPRange(span.first, span.last))).iter_cidrs()]
        if inside:
            out += plan_crawl(crawl=span.crawl, ranges=inside, delegated=inside, strategy=span.strategy,
                              resolution=span.resolution, samples=span.samples).shards
    return tuple(out)
