"""The rate syntax `N[/s|m|h|d][:connections]`, parsed and formatted once, and the default limits (pure).

The operator writes `WHOISCRAWL_RATE_LIMITS` with `format_limits` and the workers read it with
`parse_limits`; the CRD's pattern is `RATE_PATTERN`, derived from the same grammar. See
docs/rate-limits.md."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

from whoiscrawl import rirs

SAFETY = 0.95  # pace a little under the limit: network jitter can bunch requests at the registry
UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

# One grammar: a number of lookups, per unit (default s), and optionally a connection cap.
_GRAMMAR = (
    r"(?P<n>[0-9]+(?:\.[0-9]+)?)"
    rf"(?:/(?P<unit>{'|'.join(UNIT_SECONDS)}))?"
    r"(?::(?P<conn>[0-9]+))?"
)
_RATE = re.compile(_GRAMMAR)
RATE_PATTERN = "^" + re.sub(r"\?(P<\w+>|:)", "", _GRAMMAR) + "$"  # the same grammar, for JSON Schema
RATE_FORM = "N[/s|m|h|d][:CONNECTIONS]"


@dataclass(frozen=True)
class Limit:
    """What one source address may send one registry: a sustained rate and a connection cap."""

    rate_per_s: float
    max_connections: int | None = None

    @property
    def interval_ms(self) -> float:
        return 1000.0 / (self.rate_per_s * SAFETY) if self.rate_per_s > 0 else float("inf")


class LimitError(ValueError):
    """A rate-limit setting that cannot be used; the text shows the expected form."""


def parse_rate(text: str, connections: int | None = None) -> Limit:
    """'10/s' -> 10 a second, '10/m' -> 1/6 a second, '8:3' -> 8 a second on 3 connections, '0' ->
    disabled. `connections` is the cap when the text names none."""
    match = _RATE.fullmatch(str(text))
    if not match:
        raise LimitError(f"{text!r} is not a rate like '10/s', '10/m', '600/h' or '0' ({RATE_FORM})")
    rate = float(match["n"]) / UNIT_SECONDS[match["unit"] or "s"]
    return Limit(rate, int(match["conn"]) if match["conn"] else connections)


def format_rate(limit: Limit) -> str:
    """The text `parse_rate` reads back: the largest whole number per unit (`10/m`), else per second."""
    text = "0"
    if limit.rate_per_s > 0:
        text = f"{limit.rate_per_s:.9f}".rstrip("0").rstrip(".") + "/s"  # never an exponent
        for unit, seconds in UNIT_SECONDS.items():
            count = limit.rate_per_s * seconds
            if count >= 1 and abs(count - round(count)) < 1e-9 * count:
                text = f"{round(count)}/{unit}"
                break
    return text + (f":{limit.max_connections}" if limit.max_connections else "")


DEFAULT_LIMITS: dict[str, Limit] = {
    r.id: parse_rate(r.default_rate, r.default_connections) for r in rirs.CATALOGUE
}


def parse_limits(text: str | None, base: dict[str, Limit] | None = None) -> dict[str, Limit]:
    """`arin=10/s,lacnic=10/m,ripencc=8/s:3` -> limits (`:N` caps connections; 0 disables)."""
    limits = dict(base or DEFAULT_LIMITS)
    for part in (text or "").split(","):
        if not part.strip():
            continue
        registry, _, rate = (p.strip() for p in part.partition("="))
        try:
            if registry not in rirs.REGISTRIES:
                raise LimitError(f"unknown registry {registry!r}")
            limits[registry] = parse_rate(rate, limits[registry].max_connections)
        except LimitError as exc:
            raise LimitError(
                f"bad rate limit {part.strip()!r}: expected REGISTRY={RATE_FORM} "
                f"with REGISTRY one of {', '.join(rirs.REGISTRIES)} ({exc})"
            ) from exc
    return limits


def format_limits(limits: dict[str, Limit]) -> str:
    """The text `parse_limits` reads back: `arin=10/s:4,lacnic=10/m:1`."""
    return ",".join(f"{r}={format_rate(lim)}" for r, lim in limits.items())


def scaled(limits: dict[str, Limit], share: float) -> dict[str, Limit]:
    """The budget of an egress key that stands for `share` addresses (a pool of NAT gateways)."""
    return {
        r: replace(
            lim,
            rate_per_s=lim.rate_per_s * share,
            max_connections=None if lim.max_connections is None else int(lim.max_connections * share),
        )
        for r, lim in limits.items()
    }


def projected_real_hours(
    requests: dict[str, int], egresses: int = 1, deadline_hours: float = 24.0
) -> dict[str, Any]:
    """How long requests take at the registries' real published limits (`DEFAULT_LIMITS`, never the
    simulator's time-scaled ones): per registry requests / limit / egress addresses, the largest of
    them (registries are asked in parallel, so it is the crawl's), and the egress addresses that
    would bring it under `deadline_hours`."""
    egresses = max(1, egresses)
    per: dict[str, dict[str, Any]] = {}
    for registry, n in sorted(requests.items()):
        rate = DEFAULT_LIMITS[registry].rate_per_s
        hours = n / rate / egresses / 3600 if rate > 0 else math.inf
        per[registry] = {"requests": int(n), "limit_per_s": round(rate, 4),
                         "projected_real_hours": round(hours, 2)}
    slowest = max(per, key=lambda r: per[r]["projected_real_hours"], default=None)
    worst = per[slowest]["projected_real_hours"] if slowest else 0.0
    return {
        "egress_addresses": egresses,
        "by_registry": per,
        "slowest_registry": slowest,
        "projected_real_hours": worst,
        f"egress_addresses_for_{deadline_hours:g}h": max(1, math.ceil(worst * egresses / deadline_hours)),
    }
