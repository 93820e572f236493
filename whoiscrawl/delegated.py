"""Registry statistics (`delegated-<rir>-extended-latest`): the delegation holding a block, its country."""

from __future__ import annotations

import bisect
import ipaddress
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path

ENV = "WHOISCRAWL_DELEGATED"  # a directory of delegated-*-extended-latest files (or one file)
_HANDED_OUT = frozenset({"allocated", "assigned"})  # available/reserved space has no holder, no country


class Delegations:
    """IPv4 delegations of the statistics files (`registry|cc|ipv4|start|count|date|status|...`),
    searchable by address. Delegations never overlap, so one bisection finds the holder."""

    def __init__(self, rows: Iterable[tuple[int, int, str]]) -> None:
        ordered = sorted(rows)
        self._starts = [r[0] for r in ordered]
        self._ends = [r[1] for r in ordered]
        self._ccs = [r[2] for r in ordered]

    def __len__(self) -> int:
        return len(self._starts)

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> Delegations:
        return cls(row for row in (_row(line) for line in lines) if row is not None)

    @classmethod
    def from_path(cls, path: str | Path) -> Delegations:
        """One file, or every `delegated-*` file of a directory."""
        p = Path(path)
        files = sorted(p.glob("delegated-*")) if p.is_dir() else [p]
        lines: list[str] = []
        for f in files:
            lines.extend(f.read_text(encoding="utf-8", errors="replace").splitlines())
        return cls.from_lines(lines)

    def country(self, first: int, last: int) -> str | None:
        """The country of the delegation that contains first..last, None if none does."""
        k = bisect.bisect_right(self._starts, first) - 1
        if k < 0 or self._ends[k] < last:
            return None
        return self._ccs[k]


def _row(line: str) -> tuple[int, int, str] | None:
    parts = line.strip().split("|")
    if len(parts) < 7 or parts[2] != "ipv4" or parts[3] == "*" or parts[6] not in _HANDED_OUT:
        return None
    cc = parts[1].upper()
    if len(cc) != 2 or cc == "ZZ":
        return None
    try:
        start, count = int(ipaddress.IPv4Address(parts[3])), int(parts[4])
    except ValueError:
        return None
    return start, start + count - 1, cc


@cache
def configured() -> Delegations | None:
    """The statistics named by $WHOISCRAWL_DELEGATED, read once; None when it is not set."""
    where = os.environ.get(ENV)
    return Delegations.from_path(where) if where else None
