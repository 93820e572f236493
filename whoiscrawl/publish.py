"""Publishing a plan: its shards to the crawl's work topic, and to the planned shards in Redis."""

from __future__ import annotations

from whoiscrawl import queue
from whoiscrawl.space import Plan
from whoiscrawl.store.redis_admin import RedisCrawlAdmin


def publish_plan(
    plan: Plan,
    *,
    bootstrap: str,
    prefix: str,
    store: RedisCrawlAdmin,
    config: dict[str, str] | None = None,
    partitions: int | None = None,
    topics: queue.TopicSettings | None = None,
) -> tuple[int, tuple[int, int]]:
    """Send a plan's shards (creating the topics first when `partitions` is given) and add them to
    the crawl's planned shards: on top of earlier plans, the totals and scope are the union's.
    `topics` (replication, settings) applies when the topics are created here.
    The special-purpose space the plan withheld goes to the checkpoints topic too, so a rebuilt
    Redis keeps it for the files' load (which plans the delegations the statistics list there).
    Returns the shards the broker acknowledged, and the shards and addresses planned in all."""
    store.mark_epoch()  # first: a worker that meets a store without one rebuilds it from the topics
    if partitions is not None:
        settings = topics or queue.TopicSettings()
        queue.ensure_topics(bootstrap, prefix, plan.crawl, partitions, config,
                            settings.replication_factor, settings.config)
    sent = queue.publish_shards(bootstrap, prefix, plan.crawl, plan.shards, config)
    queue.copy_special(bootstrap, prefix, plan.crawl, plan.special, config)
    return sent, store.add_plan(plan.shards, plan.special)
