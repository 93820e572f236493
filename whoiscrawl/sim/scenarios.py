"""Named simulator scenarios: which part of IPv4 a crawl covers, and the world behind it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from whoiscrawl.sim import data
from whoiscrawl.sim.churn import Change, Churn, advance
from whoiscrawl.sim.model import World, findable, parse_cidr, world_for

DEFAULT_SEED = 1

# Whole /16s (and a few larger blocks) cut from real delegations of every RIR. Comments say why.
_QUICK = [
    # RIPE NCC: dense LIR allocations, one block of free ("available") space
    "2.16.0.0/16", "31.0.0.0/16", "46.0.0.0/16", "77.0.0.0/16", "5.0.0.0/16",
    "188.0.0.0/16", "193.0.0.0/16", "5.180.0.0/16",
    # APNIC
    "1.0.0.0/16", "14.0.0.0/16", "27.0.0.0/16",
    # ARIN: a legacy /8 (12/8), regular allocations, a reserved micro-allocation pool
    "12.0.0.0/16", "24.0.0.0/16", "63.0.0.0/16", "23.156.0.0/16",
    # legacy "various registries" swamp: space transferred to every RIR (redirects)
    "160.20.0.0/16", "192.12.0.0/16",
    # RIPE-administered space in ARIN's legacy 128/8: every bootstrap-guided query redirects
    "128.0.0.0/16",
    # AFRINIC, including unallocated space (102/8 was still free in 2018)
    "41.0.0.0/16", "105.0.0.0/16", "102.0.0.0/16",
    # LACNIC: small, its 10 queries/minute make it the slowest registry to crawl
    "186.0.0.0/18",
]

_STANDARD = [
    # RIPE NCC
    "2.16.0.0/12", "31.0.0.0/12", "46.0.0.0/12", "77.0.0.0/12", "5.176.0.0/12",
    "85.0.0.0/12", "188.0.0.0/12", "176.0.0.0/12", "87.0.0.0/12", "178.0.0.0/12",
    "193.0.0.0/14",
    # RIPE-administered space inside ARIN's legacy 128/8 and free RIPE space in ARIN's 45/8
    "128.0.0.0/14", "45.80.0.0/14",
    # APNIC
    "1.0.0.0/12", "14.0.0.0/13", "27.0.0.0/13", "103.0.0.0/14", "202.0.0.0/14", "36.48.0.0/14",
    "110.0.0.0/12", "101.0.0.0/13",
    # ARIN
    "12.0.0.0/12", "24.0.0.0/13", "63.0.0.0/13", "23.144.0.0/12", "198.0.0.0/14",
    "64.0.0.0/12",
    # legacy swamp, every RIR inside
    "160.0.0.0/11", "192.0.0.0/12",
    # AFRINIC
    "41.0.0.0/12", "105.0.0.0/13", "196.0.0.0/14", "102.0.0.0/14",
    # LACNIC
    "186.0.0.0/14", "200.0.0.0/15",
]


@dataclass(frozen=True)
class Scenario:
    """A crawl target: CIDRs to cover, and the seed of the generated registry databases."""

    name: str
    ranges: list[str] = field(default_factory=list)
    seed: int = DEFAULT_SEED
    generate_all: bool = False  # generate sub-objects under every delegation (the full scenario)
    day: int = 0  # the world as it stands this many days after the first (`churn.py`)
    churn: Churn = field(default_factory=Churn)  # how much changes a day

    @property
    def intervals(self) -> list[tuple[int, int]]:
        return sorted(parse_cidr(c) for c in self.ranges)

    def world(self) -> World:
        return self._days()[0]

    def changes(self) -> list[Change]:
        """What changed from the day before to this one (none on day 0)."""
        return self._days()[1]

    def _days(self) -> tuple[World, list[Change]]:
        key = (self.name, self.seed, self.generate_all, tuple(self.ranges), self.churn)
        days = _DAYS.setdefault(key, [])
        if not days:
            ranges = None if self.generate_all else tuple(self.intervals)
            days.append((world_for(self.seed, ranges, self.name), []))
        while len(days) <= self.day:
            days.append(advance(days[-1][0], len(days), self.churn, self.intervals))
        return days[self.day]

    def on_day(self, day: int) -> Scenario:
        """The same scenario's world `day` days after the first."""
        if day < 0:
            raise ValueError(f"day {day}: days count from 0, the first")
        return self if day == self.day else replace(self, day=day)

    def truth(self) -> dict[int, int]:
        """Findable objects (index into world()) -> number of crawled addresses they answer."""
        return _truth(self)

    def addresses(self) -> int:
        return sum(b - a + 1 for a, b in self.intervals)

    def with_seed(self, seed: int | None) -> Scenario:
        return self if seed is None or seed == self.seed else replace(self, seed=seed)


_TRUTH: dict[tuple[object, ...], dict[int, int]] = {}
# Each scenario's worlds by day (with each day's changes), made in order and kept.
_DAYS: dict[tuple[object, ...], list[tuple[World, list[Change]]]] = {}


def _truth(s: Scenario) -> dict[int, int]:
    key = (s.name, s.seed, s.generate_all, tuple(s.ranges), s.day, s.churn)
    if key not in _TRUTH:
        _TRUTH[key] = findable(s.world(), s.intervals)
    return _TRUTH[key]


def _full_ranges() -> list[str]:
    return [f"{row.octet}.0.0.0/8" for row in data.load_iana() if row.registry]


NAMES = ("quick", "standard", "full")


def get(name: str, seed: int | None = None, day: int = 0, churn: Churn | None = None) -> Scenario:
    """The scenario called name (quick | standard | full), on day `day` of its changing world."""
    if name == "quick":
        s = Scenario("quick", list(_QUICK))
    elif name == "standard":
        s = Scenario("standard", list(_STANDARD))
    elif name == "full":
        s = Scenario("full", _full_ranges(), generate_all=True)
    else:
        raise KeyError(f"unknown scenario {name!r}; choose one of {', '.join(NAMES)}")
    s = s.with_seed(seed)
    if churn is not None:
        s = replace(s, churn=churn)
    return s.on_day(day)
