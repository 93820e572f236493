"""What a map was made from, kept beside it (`RESULTS.map.json`): its scope, each registry's file
serials, and the delegations in scope, so a refresh knows what the newer files changed."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from whoiscrawl.sources import stats

VERSION = 1
Row = tuple[str, int, int, str, str, str]  # registry, first, count, date, status, country


class ManifestError(ValueError):
    """A map's manifest missing or unreadable; the text says what to do."""


def path_of(results: Path) -> Path:
    return results.with_name(results.name + ".map.json")


def row_of(d: stats.Delegation) -> Row:
    """What a refresh compares of a statistics row (never its opaque-id: not stable between files)."""
    return (d.registry, d.first, d.count, d.date or "", d.status, d.country or "")


@dataclass
class Manifest:
    """A map's scope (the crawlable CIDRs), serials (registry -> {"stats": s, "dump": s}) and the
    statistics' rows in scope."""

    scope: list[str]
    serials: dict[str, dict[str, str]] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    made: str = ""  # the date the newest statistics gave (their end date), for people
    version: int = VERSION

    def write(self, results: Path) -> Path:
        target = path_of(results)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, target)
        return target

    @classmethod
    def read(cls, results: Path) -> Manifest:
        target = path_of(results)
        try:
            doc: dict[str, Any] = json.loads(target.read_text(encoding="utf-8"))
            if doc.get("version") != VERSION:
                raise ManifestError(f"{target}: version {doc.get('version')}, this one reads {VERSION}")
            doc["rows"] = [tuple(r) for r in doc["rows"]]
            return cls(**doc)
        except FileNotFoundError:
            raise ManifestError(f"{results} has no {target.name} beside it (a map from whoiscrawl crawl with "
                                "--sources stats, complete): crawl it anew to refresh it later") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise ManifestError(f"{target} cannot be read ({exc}): crawl the map anew") from exc

    def rows_of(self, registry: str) -> set[Row]:
        return {r for r in self.rows if r[0] == registry}
