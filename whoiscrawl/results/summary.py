"""`whoiscrawl summary`: records, blocks, addresses covered and their share, by registry, country, holder."""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from whoiscrawl.results.source import ResultSet
from whoiscrawl.space import Scope, crawlable


def scope_of(ranges: Iterable[str] | None) -> Scope:
    """The space figures are shares of: the given ranges' crawlable part, or all allocatable IPv4
    (IPv4 less special-purpose space and the /8s IANA keeps: `space.crawlable`)."""
    space = crawlable(list(ranges) if ranges else ["all"])
    return Scope.of((int(r.first), int(r.last)) for r in space.iter_ipranges())


class ScopeCounter:
    """How many addresses of first..last lie in a scope: O(log n) with prefix sums."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.before = [0]
        for f, t in zip(scope.firsts, scope.lasts, strict=True):
            self.before.append(self.before[-1] + t - f + 1)

    @property
    def size(self) -> int:
        return self.before[-1]

    def upto(self, address: int) -> int:
        """Scope addresses below `address`."""
        i = bisect_right(self.scope.firsts, address) - 1
        if i < 0:
            return 0
        return self.before[i] + min(address, self.scope.lasts[i] + 1) - self.scope.firsts[i]

    def count(self, first: int, last: int) -> int:
        return self.upto(last + 1) - self.upto(first) if last >= first else 0


def own_addresses(first: np.ndarray, last: np.ndarray, counter: ScopeCounter) -> np.ndarray:
    """For blocks in hierarchy order: the scope addresses each block is the most specific block for
    (its range less its children's). They partition the covered space, so they add up to it. A block
    that overlaps its parent's end (real registries keep a few) is clipped to the parent."""
    own = array("q", bytes(8 * len(first)))  # 8 bytes a block; Python ints only a chunk at a time
    stack: list[tuple[int, int]] = []  # (last address, block number), innermost on top
    cursor = 0
    for i, (f, t) in enumerate(zip(values(first), values(last), strict=True)):
        while stack and stack[-1][0] < f:
            top_last, top = stack.pop()
            own[top] += counter.count(cursor, top_last)
            cursor = top_last + 1
        if stack:
            own[stack[-1][1]] += counter.count(cursor, f - 1)
            t = min(t, stack[-1][0])
        cursor = f
        stack.append((t, i))
    while stack:
        top_last, top = stack.pop()
        own[top] += counter.count(cursor, top_last)
        cursor = top_last + 1
    return np.frombuffer(own, np.int64) if len(own) else np.zeros(0, np.int64)


def values(arr: np.ndarray, chunk: int = 1 << 16) -> Iterator[int]:
    """An array's values as Python ints, converted a chunk at a time."""
    for start in range(0, len(arr), chunk):
        yield from arr[start : start + chunk].tolist()


def holder_of(doc: dict[str, Any]) -> str:
    return str(doc.get("registrant") or doc.get("name") or doc["handle"])


@dataclass
class Summary:
    """The figures of one result set (what the 2016 post reported), ready for a table or JSON."""

    records: int
    bad_records: int
    blocks: int
    scope_addresses: int
    covered: int
    registries: dict[str, dict[str, int]]
    sources: dict[str, dict[str, int]]  # provenance: rdap, whois, dump, stats
    countries: Counter[str]
    holders: Counter[str]
    holder_blocks: Counter[str]

    def to_dict(self, top: int = 15) -> dict[str, Any]:
        share = self.covered / self.scope_addresses if self.scope_addresses else None
        return {
            "records": self.records,
            "bad_records": self.bad_records,
            "blocks": self.blocks,
            "duplicates": self.records - self.blocks,
            "scope_addresses": self.scope_addresses,
            "addresses_covered": self.covered,
            "coverage": round(share, 6) if share is not None else None,
            "by_registry": self.registries,
            "by_source": self.sources,
            "by_country": dict(self.countries.most_common(top)),
            "countries": len(self.countries),
            "top_holders": [
                {"holder": h, "addresses": n, "blocks": self.holder_blocks[h]}
                for h, n in self.holders.most_common(top)
            ],
            "holders": len(self.holders),
        }


def summarize(results: ResultSet, scope: Scope) -> Summary:
    """Figures of a result set opened `seekable`: addresses are counted once, for the most specific
    block holding them, and only inside `scope`."""
    counter = ScopeCounter(scope)
    own = own_addresses(*results.spans(), counter)
    registries: dict[str, dict[str, int]] = {}
    sources: dict[str, dict[str, int]] = {}
    countries: Counter[str] = Counter()
    holders: Counter[str] = Counter()
    holder_blocks: Counter[str] = Counter()
    for doc, n in zip(results.nested(), values(own), strict=True):
        reg = registries.setdefault(doc["registry"], {"blocks": 0, "addresses": 0})
        reg["blocks"] += 1
        reg["addresses"] += n
        src = sources.setdefault(str(doc.get("source") or "rdap"), {"blocks": 0, "addresses": 0})
        src["blocks"] += 1
        src["addresses"] += n
        holder = holder_of(doc)
        holder_blocks[holder] += 1
        if n:
            countries[str(doc.get("country") or "none")] += n
            holders[holder] += n
    return Summary(
        records=results.records,
        bad_records=results.bad_records,
        blocks=results.blocks,
        scope_addresses=counter.size,
        covered=int(own.sum()),
        registries=dict(sorted(registries.items())),
        sources=dict(sorted(sources.items())),
        countries=countries,
        holders=holders,
        holder_blocks=holder_blocks,
    )

