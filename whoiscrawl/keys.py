"""Every Redis key of one crawl, named in one place (`whoiscrawl:<crawl>:...`, docs/data-plane.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Every Redis key of one crawl, named in one place."""

    crawl: str

    @property
    def prefix(self) -> str:
        return f"whoiscrawl:{self.crawl}:"

    @property
    def blocks(self) -> str:  # a stream: the append-only log of blocks, read incrementally by workers
        return self.prefix + "blocks"

    @property
    def counters(self) -> str:
        return self.prefix + "counters"

    @property
    def scope(self) -> str:
        return self.prefix + "scope"

    @property
    def cursors(self) -> str:
        return self.prefix + "cursors"

    @property
    def done(self) -> str:
        return self.prefix + "done"

    def claim(self, cell: int) -> str:
        return f"{self.prefix}claim:{cell}"

    def listing(self, first: int, last: int) -> str:
        return f"{self.prefix}listing:{first}:{last}"

    @property
    def epoch(self) -> str:  # the store's generation: set at planning, new after each rebuild
        return self.prefix + "epoch"

    @property
    def rebuilding(self) -> str:  # the lease of the one process rebuilding a lost store
        return self.prefix + "rebuilding"

    @property
    def partly_listed(self) -> str:
        return self.prefix + "partly-listed"

    def limiter(self, registry: str, egress: str) -> str:
        return f"{self.prefix}rate:{registry}:{egress}"

    def plan(self, marker: str) -> str:  # the operator's publish-once marker of one plan
        return f"{self.prefix}plan:{marker}"
