"""Maps that change by the day, written as result files: a /16 per holder group, /24s inside."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from whoiscrawl.ipv4 import ip_str

REGISTRIES = ("ripencc", "arin", "apnic", "lacnic", "afrinic")
COUNTRIES = ("NL", "DE", "US", "JP", "BR", "ZA", "FR", "GB")
FIRST_DAY = date(2026, 12, 1)


def record(first: int, last: int, n: int, registry: str, day: date, **fields: Any) -> dict[str, Any]:
    """A result record for first..last: handle and holder carry `n`, fetched on `day`."""
    doc: dict[str, Any] = {
        "schema": "whoiscrawl.result/v1", "registry": registry, "handle": f"NET-{n}",
        "start_address": ip_str(first), "end_address": ip_str(last), "cidrs": [],
        "name": f"NET-NAME-{n}", "country": COUNTRIES[n % len(COUNTRIES)], "type": "ASSIGNED PA",
        "status": ["active"], "abuse_emails": [f"abuse@holder{n}.example"], "registrant": f"Holder {n} Ltd",
        "registration_date": "2012-04-23T00:00:00Z", "source": "rdap", "crawl": "test",
        "fetched_at": f"{day}T06:{n % 60:02d}:00+00:00",
    }
    doc.update(fields)
    return doc


@dataclass
class Days:
    """A map of `blocks` networks (/24s under /16 parents) and its changes: each day `rate` of the
    blocks changed (a new holder, a new country, a new abuse contact, removed, added, moved to
    another registry), a map file per day."""

    folder: Path
    blocks: int = 2000
    rate: float = 0.01
    seed: int = 7
    maps: list[Path] = field(default_factory=list)
    dates: list[date] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.docs: dict[tuple[int, int], dict[str, Any]] = {}
        self.serial = 0
        for i in range(self.blocks):
            parent = 0x5A000000 + (i // 200 << 16)  # 90.x.0.0/16 parents, 200 /24s each
            if (parent, parent + 0xFFFF) not in self.docs:
                self._put(parent, parent + 0xFFFF, REGISTRIES[(i // 200) % 5], type="ALLOCATED PA")
            first = parent + ((i % 200) << 8)
            self._put(first, first + 255, REGISTRIES[(i // 200) % 5])

    def _put(self, first: int, last: int, registry: str, **fields: Any) -> None:
        self.serial += 1
        self.docs[(first, last)] = record(first, last, self.serial, registry, FIRST_DAY, **fields)

    def write_day(self) -> Path:
        day = FIRST_DAY + timedelta(days=len(self.maps))
        path = self.folder / f"map-{day}.jsonl"
        with path.open("w") as fh:
            for doc in self.docs.values():
                fh.write(json.dumps({**doc, "fetched_at": f"{day}T07:00:00+00:00"}) + "\n")
        self.maps.append(path)
        self.dates.append(day)
        return path

    def change(self) -> dict[str, int]:
        """One day of changes, about `rate` of the blocks; returns how many of each kind."""
        leaves = [k for k, d in self.docs.items() if d.get("type") != "ALLOCATED PA"]
        picked = self.rng.sample(leaves, max(6, round(self.rate * len(leaves))))
        kinds = ("holder", "country", "abuse", "removed", "registry", "added")
        for n, key in enumerate(picked):
            kind, doc = kinds[n % len(kinds)], self.docs[key]
            if kind == "holder":
                doc["registrant"] = f"New Holder {self.serial + n} GmbH"
            elif kind == "country":
                doc["country"] = "ZZ"
            elif kind == "abuse":
                doc["abuse_emails"] = [f"noc{n}@elsewhere.example"]
            elif kind == "removed":
                del self.docs[key]
            elif kind == "registry":
                doc["registry"] = next(r for r in REGISTRIES if r != doc["registry"])
            else:  # a /24 in free space past the parents
                first = 0x5B000000 + (self.serial << 8)
                self._put(first, first + 255, "ripencc")
        return {k: sum(1 for n in range(len(picked)) if kinds[n % len(kinds)] == k) for k in kinds}


def facts_of(docs: Any) -> set[tuple[Any, ...]]:
    """What a map says of each block, for comparing two maps read different ways."""
    from whoiscrawl.results.diff import facts

    return {(d["registry"], d["start_address"], d["end_address"], *map(str, facts(d).values())) for d in docs}
