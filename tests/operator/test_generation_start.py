"""kopf-driven: a scheduled crawl's next generation is announced once, whatever its status write does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opsupport_cluster import MINIMAL_SPEC, NS, Cluster, running_cluster

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:kmock")]

SPEC: dict[str, Any] = MINIMAL_SPEC | {"schedule": "* * * * *", "history": {"keep": 3}}
STATUS_WRITE = ("PATCH", "whoiscrawls/status")


class Clock:
    """The operator's clock: a slot of the schedule comes when the test moves it."""

    def __init__(self) -> None:
        self.t = datetime(2026, 1, 1, 10, 0, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t


def generation(cluster: Cluster) -> int:
    return int(((cluster.crawl("gen").get("status") or {}).get("schedule") or {}).get("generation") or 0)


async def completed_first_generation(cluster: Cluster) -> None:
    await cluster.create("gen", SPEC)
    await cluster.until(lambda: cluster.crawl("gen")["status"]["plan"]["key"], label="planned")
    cluster.backend.finish(f"{NS}.gen")
    await cluster.until(lambda: cluster.condition("gen", "Completed") == ("True", "AllShardsDone"),
                        label="generation 1 completed")
    assert generation(cluster) == 1


async def passes(cluster: Cluster, n: int) -> None:
    """Wait for `n` more passes (each reads the backend's counters once)."""
    seen = len(cluster.backend.calls)
    await cluster.until(lambda: sum(1 for m, _ in cluster.backend.calls[seen:] if m == "counters") >= n,
                        label=f"{n} more passes")


@pytest.mark.parametrize("failure", ["refused", "lost_reply"])
async def test_a_generation_start_is_announced_once_when_its_status_write_fails(failure: str) -> None:
    """The pass that starts generation 2 cannot write its status: refused (nothing landed: the
    next pass starts it again), or the reply lost after the write landed (the next pass finds it
    started). Either way one GenerationStarted, and generation 2's plan published once."""
    clock = Clock()
    async with running_cluster(now=clock) as cluster:
        await completed_first_generation(cluster)
        table = cluster.kube.faults if failure == "refused" else cluster.kube.lost_replies
        table[STATUS_WRITE] = (500, "etcdserver: request timed out")
        clock.t += timedelta(minutes=2)  # the 10:02 slot has passed
        await cluster.until(lambda: STATUS_WRITE in cluster.kube.answered, label="a failed status write")
        await passes(cluster, 2)
        del table[STATUS_WRITE]
        await cluster.until(lambda: generation(cluster) == 2, label="generation 2 in status")
        await passes(cluster, 3)
        started = cluster.events("GenerationStarted")
        assert len(started) == 1, [e["message"] for e in started]
        assert [c for c, _ in cluster.backend.plans] == [f"{NS}.gen", f"{NS}.gen.g2"]
        planned = [e["message"] for e in cluster.events("Planned")]
        assert len([m for m in planned if f"{NS}.gen.g2.work" in m]) == 1, planned
