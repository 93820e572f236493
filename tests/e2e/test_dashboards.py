"""Every PromQL expression of the dashboards, run against a real Prometheus scraping a worker mid-crawl."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import pytest
from prometheus_client import generate_latest

from whoiscrawl import dashboards
from whoiscrawl.bench.fleet import FleetShape, crawl_with_fleet
from whoiscrawl.dev.services import free_port

pytestmark = pytest.mark.slow  # a fleet crawl of `quick`



def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return bytes(resp.read())


def _query(prometheus: str, expr: str) -> list:
    concrete = expr.replace("$crawl", ".*").replace("$registry", ".*")
    body = _get(f"{prometheus}/api/v1/query?query={urllib.parse.quote(concrete)}")
    return list(json.loads(body)["data"]["result"])


def test_every_dashboard_query_returns_data_from_a_crawl(services, quick_sim, tmp_path):
    exprs = sorted({e for text in dashboards.render().values() for e in dashboards.expressions(text)})
    worker_exprs = [e for e in exprs if not all(n.startswith("whoiscrawl_operator_")
                                                for n in dashboards.metric_names(e))]
    operator_exprs = [e for e in exprs if e not in worker_exprs]
    port = free_port()
    services.scrape(port, "worker")
    seen: dict[str, list] = {}
    served: set[str] = set()
    started = time.monotonic()

    def during(fleet, progress) -> None:
        if seen or progress.shards_done < 1 or time.monotonic() - started < 8:
            return
        served.update(dashboards.metric_names(_get(f"http://127.0.0.1:{port}/metrics").decode()))
        deadline = time.monotonic() + 30
        for expr in worker_exprs:
            while not (result := _query(services.prometheus_url, expr)) and time.monotonic() < deadline:
                time.sleep(1)
            seen[expr] = result

    run = crawl_with_fleet(quick_sim, services.kafka_bootstrap, services.redis_url, tmp_path,
                           shape=FleetShape(workers=1, metrics_port=port), timeout=600, during=during)
    assert run.finished and seen, "the crawl ended before the queries ran"
    assert [e for e, result in seen.items() if not result] == []
    for expr in worker_exprs:
        assert dashboards.metric_names(expr) <= served, expr
    # The operator's panels read the metrics the operator's /metrics serves (its registry, rendered
    # here in-process; test_dashboards_operator.py queries them on a running operator).
    import whoiscrawl.operator.metrics  # noqa: F401  (registers the operator's metrics)

    operator_served = dashboards.metric_names(generate_latest().decode())
    assert operator_exprs
    for expr in operator_exprs:
        assert dashboards.metric_names(expr) <= operator_served, expr
