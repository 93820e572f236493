"""Fault injection per registry: latency, timeouts, 5xx, resets, bad JSON, 429 storms, bans.

A faults file (JSON or YAML) maps a registry id, or "*" for all, to a spec; times are in
simulated seconds (divided by the time scale like every policy window):

    seed: 7
    "*":     {latency: {median_ms: 50, sigma: 0.6}}
    arin:    {timeout: 0.01, http_5xx: 0.02, reset: 0.01, truncated: 0.01, malformed: 0.01,
              storm: {period_s: 120, duration_s: 10},
              ban: {period_s: 600, duration_s: 60, fraction: 0.5}}

Rates are probabilities per lookup. `latency` replaces the policy's default service time.
`storm`: every period_s, for duration_s, every lookup answers 429. `ban`: every period_s, for
duration_s, a `fraction` of source addresses (chosen by hash) answer 429 with the ban's end as
Retry-After. `protocols` (default [rdap, whois]) limits a spec to one service: an RDAP outage
with port 43 still answering is `{http_5xx: 1.0, protocols: [rdap]}`. `timeout_s` (default 60)
is how long a timed-out request hangs before the connection is dropped. `ranges` (CIDRs; default
everywhere) limits a spec to requests for addresses inside them: one network whose answer is
always broken while the rest of the registry answers is `{malformed: 1.0, ranges: [186.0.0.0/24]}`.

`files` maps a registry to the faults of the files it publishes (`published.py` applies them):

    files: {ripencc: [truncated_gzip, stale_serial], arin: [md5_mismatch]}

`truncated_gzip`, `broken_object`, `wrong_encoding` hit the registry's first dump; `record_count`
and `md5_mismatch` its delegation statistics; `stale_serial` its serial file. `dropped_download`
spoils no byte: the first dump's download is cut halfway on every other attempt from an address
(long transfers from the registries' servers do drop).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from whoiscrawl import rirs
from whoiscrawl.rirs import REGISTRIES

KINDS = ("timeout", "http_5xx", "reset", "truncated", "malformed")
DUMP_FAULTS = ("truncated_gzip", "broken_object", "wrong_encoding")
TRANSFER_FAULTS = ("dropped_download",)
FILE_FAULTS = (*DUMP_FAULTS, "record_count", "md5_mismatch", "stale_serial", *TRANSFER_FAULTS)
FileFaults = dict[str, frozenset[str]]


def file_faults(doc: dict[str, Any]) -> FileFaults:
    """The file faults of a `files` mapping (registry -> kinds), checked against what each
    registry publishes: an error names the registry and the kind to fix."""
    out: FileFaults = {}
    for registry, kinds in (doc or {}).items():
        if registry not in REGISTRIES:
            raise ValueError(f"files: unknown registry {registry!r}; choose one of {', '.join(REGISTRIES)}")
        wanted = [kinds] if isinstance(kinds, str) else list(kinds or ())
        for kind in wanted:
            if kind not in FILE_FAULTS:
                raise ValueError(f"files.{registry}: unknown fault {kind!r}; "
                                 f"choose from {', '.join(FILE_FAULTS)}")
            rir = rirs.BY_ID[registry]
            dumped = kind in (*DUMP_FAULTS, *TRANSFER_FAULTS)
            if (dumped and not rir.dump_urls) or (kind == "stale_serial" and not rir.serial_url):
                raise ValueError(f"files.{registry}: {kind} needs a file {registry} does not publish")
        out[registry] = frozenset(wanted)
    return out


@dataclass(frozen=True)
class FaultSpec:
    """The faults configured for one registry."""

    latency_median_ms: float | None = None
    latency_sigma: float = 0.4
    timeout: float = 0.0
    http_5xx: float = 0.0
    reset: float = 0.0
    truncated: float = 0.0
    malformed: float = 0.0
    timeout_s: float = 60.0
    storm_period_s: float = 0.0
    storm_duration_s: float = 0.0
    ban_period_s: float = 0.0
    ban_duration_s: float = 0.0
    ban_fraction: float = 1.0
    protocols: tuple[str, ...] = ("rdap", "whois")  # which services misbehave (an RDAP-only outage)
    ranges: tuple[tuple[int, int], ...] = ()  # (first, last) address spans it applies to; () everywhere

    def applies(self, protocol: str, address: int | None) -> bool:
        if protocol not in self.protocols:
            return False
        return not self.ranges or (address is not None and any(a <= address <= b for a, b in self.ranges))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FaultSpec:
        known = {"latency", "timeout", "http_5xx", "reset", "truncated", "malformed",
                 "timeout_s", "storm", "ban", "protocols", "ranges"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown fault keys: {sorted(unknown)}")
        lat = d.get("latency") or {}
        storm = d.get("storm") or {}
        ban = d.get("ban") or {}
        return cls(
            latency_median_ms=float(lat["median_ms"]) if "median_ms" in lat else None,
            latency_sigma=float(lat.get("sigma", 0.4)),
            timeout=float(d.get("timeout", 0.0)),
            http_5xx=float(d.get("http_5xx", 0.0)),
            reset=float(d.get("reset", 0.0)),
            truncated=float(d.get("truncated", 0.0)),
            malformed=float(d.get("malformed", 0.0)),
            timeout_s=float(d.get("timeout_s", 60.0)),
            storm_period_s=float(storm.get("period_s", 0.0)),
            storm_duration_s=float(storm.get("duration_s", 0.0)),
            ban_period_s=float(ban.get("period_s", 0.0)),
            ban_duration_s=float(ban.get("duration_s", 0.0)),
            ban_fraction=float(ban.get("fraction", 1.0)),
            protocols=tuple(d.get("protocols") or ("rdap", "whois")),
            ranges=tuple(_span(str(cidr)) for cidr in d.get("ranges") or ()),
        )


def _span(cidr: str) -> tuple[int, int]:
    net = ipaddress.ip_network(cidr, strict=False)
    return int(net.network_address), int(net.broadcast_address)


@dataclass
class Decision:
    """What to do to one lookup."""

    kind: str | None = None  # None | timeout | http_5xx | reset | truncated | malformed | storm | ban
    retry_after: float = 0.0


class Faults:
    """Decides per lookup which fault (if any) hits it."""

    def __init__(self, specs: dict[str, FaultSpec] | None = None, seed: int = 0,
                 time_scale: float = 1.0, t0: float = 0.0, files: FileFaults | None = None) -> None:
        self.specs = specs or {}
        self.files = files or {}  # registry -> faults of the files it publishes
        self.rng = random.Random(seed)
        self.x = float(time_scale)
        self.t0 = t0

    @classmethod
    def load(cls, path: str | Path | None, time_scale: float = 1.0, t0: float = 0.0) -> Faults:
        if path is None:
            return cls(time_scale=time_scale, t0=t0)
        text = Path(path).read_text()
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            import yaml

            doc = yaml.safe_load(text)
        return cls.from_doc(doc or {}, time_scale=time_scale, t0=t0)

    @classmethod
    def from_doc(cls, doc: dict[str, Any], time_scale: float = 1.0, t0: float = 0.0) -> Faults:
        doc = dict(doc)
        seed = int(doc.pop("seed", 0))
        files = file_faults(doc.pop("files", None) or {})
        default = doc.pop("*", None)
        specs: dict[str, FaultSpec] = {}
        for r in REGISTRIES:
            merged = dict(default or {})
            merged.update(doc.pop(r, None) or {})
            if merged:
                specs[r] = FaultSpec.from_dict(merged)
        if doc:
            raise ValueError(f"unknown registries in faults: {sorted(doc)}")
        return cls(specs, seed=seed, time_scale=time_scale, t0=t0, files=files)

    def latency_s(self, registry: str, default_ms: float) -> float:
        spec = self.specs.get(registry)
        median = default_ms
        sigma = 0.4
        if spec is not None and spec.latency_median_ms is not None:
            median, sigma = spec.latency_median_ms, spec.latency_sigma
        if median <= 0:
            return 0.0
        return median / 1000.0 * math.exp(self.rng.gauss(0.0, sigma)) / self.x

    def timeout_s(self, registry: str) -> float:
        spec = self.specs.get(registry)
        return (spec.timeout_s if spec else 60.0) / self.x

    def decide(self, registry: str, source: str, now: float, protocol: str = "rdap",
               address: int | None = None) -> Decision:
        spec = self.specs.get(registry)
        if spec is None or not spec.applies(protocol, address):
            return Decision()
        t = (now - self.t0) * self.x  # simulated seconds since start
        if spec.ban_period_s > 0 and spec.ban_duration_s > 0:
            phase = t % spec.ban_period_s
            if phase < spec.ban_duration_s and _hash01(source) < spec.ban_fraction:
                return Decision("ban", (spec.ban_duration_s - phase) / self.x)
        if spec.storm_period_s > 0 and spec.storm_duration_s > 0:
            phase = t % spec.storm_period_s
            if phase < spec.storm_duration_s:
                return Decision("storm", (spec.storm_duration_s - phase) / self.x)
        u = self.rng.random()
        for kind in KINDS:
            p = getattr(spec, kind)
            if u < p:
                return Decision(kind)
            u -= p
        return Decision()


def _hash01(text: str) -> float:
    h = hashlib.blake2b(text.encode(), digest_size=4).digest()
    return int.from_bytes(h, "big") / 2**32
