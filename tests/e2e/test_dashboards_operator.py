"""The operator's dashboard panels, queried on a real Prometheus scraping a running operator (kopf on
kmock) while a crawl's progress moves."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import start_http_server

SUPPORT = str(Path(__file__).parents[1] / "operator" / "support")
if SUPPORT not in sys.path:
    sys.path.insert(0, SUPPORT)

from opsupport_cluster import running_cluster  # noqa: E402

from whoiscrawl import dashboards  # noqa: E402
from whoiscrawl.dev.services import free_port  # noqa: E402
from whoiscrawl.records import Progress  # noqa: E402

from .test_dashboards import _query  # noqa: E402

pytestmark = [pytest.mark.timeout(180), pytest.mark.services,
              pytest.mark.filterwarnings("ignore::DeprecationWarning:kmock")]
SPEC: dict[str, Any] = {"ranges": ["41.0.0.0/8"], "kafka": {"bootstrapServers": "127.0.0.1:9092"},
                        "redis": {"url": "redis://127.0.0.1:6379/0"},
                        # a rate budget of 13 workers (the default, one NAT address, caps at 2)
                        "egress": {"mode": "nat", "addresses": 10},
                        "workers": {"max": 10, "lagThreshold": 2, "scaleDownStabilizationSeconds": 0}}


def operator_expressions() -> list[str]:
    exprs = {e for text in dashboards.render().values() for e in dashboards.expressions(text)}
    return sorted(e for e in exprs if all(n.startswith("whoiscrawl_operator_")
                                          for n in dashboards.metric_names(e)))


async def test_every_operator_panel_returns_data_from_a_running_operator(services) -> None:
    exprs = operator_expressions()
    assert exprs
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1")  # what `whoiscrawl operator` serves
    try:
        services.scrape(port, "operator")
        async with running_cluster() as cluster:
            cluster.backend.lag_of["crawls.demo"] = 8
            assert (await cluster.create("demo", SPEC))[0] == 201
            await cluster.until(lambda: cluster.replicas("demo") == 4, label="4 workers for lag 8")
            seen: dict[str, list] = {}
            deadline = time.monotonic() + 60
            done = 0
            while time.monotonic() < deadline and len(seen) < len(exprs):
                done += 1 << 14  # the crawl moves on: the ETA panel needs a rising progress
                cluster.backend.counters_of["crawls.demo"] = Progress(
                    shards_total=16, shards_done=min(15, done >> 16), addresses_total=1 << 20,
                    addresses_done=min(done, (1 << 20) - 1))
                for expr in [e for e in exprs if e not in seen]:
                    if result := await asyncio.to_thread(_query, services.prometheus_url, expr):
                        seen[expr] = result
                await asyncio.sleep(1)
    finally:
        server.shutdown()
        thread.join(5)
    assert [e for e in exprs if e not in seen] == []
