"""Every Redis key, named in one place: a crawl's (`whoiscrawl:<crawl>:...`) and the registries' budgets
(`whoiscrawl:budget:...`, docs/data-plane.md)."""

from __future__ import annotations

from dataclasses import dataclass


def budget(registry: str, egress: str) -> str:
    """A registry's budget behind one egress address (`[:pause|:conns|:fence]` beside it). Shared by
    every crawl of the Redis, not one crawl's: two crawls leaving by one address must not each spend
    the registry's whole limit."""
    return f"whoiscrawl:budget:{registry}:{egress}"


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
    def special(self) -> str:  # special-purpose space the plans withheld: span id -> a shard's JSON
        return self.prefix + "special"

    @property
    def cursors(self) -> str:
        return self.prefix + "cursors"

    @property
    def planned(self) -> str:  # every shard of every plan published: shard id -> "first-last"
        return self.prefix + "planned"

    @property
    def done(self) -> str:
        return self.prefix + "done"

    @property
    def fence(self) -> str:  # the counter every lease's fencing token is drawn from (it only grows)
        return self.prefix + "fence"

    @property
    def owners(self) -> str:  # shard id -> the fencing token of the walk that owns it now
        return self.prefix + "owners"

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

    def staged(self, owner: str, name: str) -> str:  # a rebuild's `name` key, written before it lands
        return f"{self.prefix}rebuild:{owner}:{name}"

    @property
    def partly_listed(self) -> str:
        return self.prefix + "partly-listed"

    @property
    def kept_answers(self) -> str:  # address -> a probe's answer, kept until its step is written
        return self.prefix + "kept-answers"

    @property
    def sources(self) -> str:  # the published files' load: each file's serial and records written, done
        return self.prefix + "sources"

    @property
    def sources_lease(self) -> str:  # the lease of the one worker loading the published files
        return self.prefix + "sources:lease"

    @property
    def fill(self) -> str:  # the fill's batches published (worker/fill.py): batch id -> the load's item
        return self.prefix + "fill"

    @property
    def fill_figures(self) -> str:  # the fill's batches answered: batch id -> what each asked (JSON)
        return self.prefix + "fill-figures"

    def plan(self, marker: str) -> str:  # the operator's publish-once marker of one plan
        return f"{self.prefix}plan:{marker}"
