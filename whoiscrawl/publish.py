"""Publishing a plan: its shards to the crawl's work topic, its totals and scope to Redis."""

from __future__ import annotations

from whoiscrawl import queue
from whoiscrawl.space import Plan
from whoiscrawl.store import RedisStore


def publish_plan(
    plan: Plan,
    *,
    bootstrap: str,
    prefix: str,
    store: RedisStore,
    config: dict[str, str] | None = None,
    partitions: int | None = None,
    totals: bool = True,
) -> int:
    """Send a plan's shards (creating the topics first when `partitions` is given) and write its
    scope, and its shard and address totals unless the caller keeps its own (the operator adds a
    re-plan's totals to the earlier ones). Returns the shards the broker acknowledged."""
    store.mark_epoch()  # first: a worker that meets a store without one rebuilds it from the topics
    if partitions is not None:
        queue.ensure_topics(bootstrap, prefix, plan.crawl, partitions, config)
    sent = queue.publish_shards(bootstrap, prefix, plan.crawl, plan.shards, config)
    if totals:
        store.set_shards_total(len(plan.shards))
        store.set_addresses_total(plan.addresses)
    store.set_scope(plan.scope)
    return sent
