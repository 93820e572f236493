"""Grafana dashboards as code (grafana-foundation-sdk): the overview and the per-registry view."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHART_DASHBOARDS = Path(__file__).resolve().parents[1] / "charts" / "whoiscrawl" / "dashboards"
CRAWL = 'crawl=~"$crawl"'
REGISTRY = 'registry=~"$registry"'


@dataclass(frozen=True)
class Graph:
    """One time-series panel: a title, a unit, and (PromQL, legend) pairs."""

    title: str
    unit: str
    queries: tuple[tuple[str, str], ...]


def _lat(q: str, sel: str = "") -> str:
    inner = f"rate(whoiscrawl_lookup_duration_seconds_bucket{{{sel}}}[5m])" if sel else \
        "rate(whoiscrawl_lookup_duration_seconds_bucket[5m])"
    return f"histogram_quantile({q}, sum by (le, registry) ({inner}))"


OVERVIEW = (
    Graph("Crawl progress", "percentunit",
          ((f"whoiscrawl_operator_crawl_progress_ratio{{{CRAWL}}}", "{{namespace}}/{{crawl}}"),)),
    Graph("ETA (at the last 10 minutes' pace)", "s",
          ((f"(1 - whoiscrawl_operator_crawl_progress_ratio{{{CRAWL}}}) / "
            f"deriv(whoiscrawl_operator_crawl_progress_ratio{{{CRAWL}}}[10m]) > 0",
            "{{namespace}}/{{crawl}}"),)),
    Graph("Requests per second by registry and outcome", "reqps",
          ((f"sum by (registry, outcome) (rate(whoiscrawl_lookups_total{{{CRAWL}}}[5m]))",
            "{{registry}} {{outcome}}"),)),
    Graph("Known-block skips per second", "ops",
          ((f"sum(rate(whoiscrawl_known_block_skips_total{{{CRAWL}}}[5m]))", "skips"),)),
    Graph("Rate-limit waits and 429s", "s",
          ((f"sum by (registry) (rate(whoiscrawl_rate_limit_wait_seconds_total{{{CRAWL}}}[5m]))",
            "waiting {{registry}}"),
           (f"sum(rate(whoiscrawl_rate_limited_total{{{CRAWL}}}[5m])) or vector(0)", "429s per second"))),
    Graph("Blocks discovered per second", "ops",
          ((f"sum by (registry) (rate(whoiscrawl_blocks_discovered_total{{{CRAWL}}}[5m]))",
            "{{registry}}"),)),
    Graph("Workers desired and ready", "short",
          ((f"whoiscrawl_operator_workers_desired{{{CRAWL}}}", "desired {{crawl}}"),
           (f"whoiscrawl_operator_workers_ready{{{CRAWL}}}", "ready {{crawl}}"))),
    Graph("Work lag (messages)", "short",
          ((f"whoiscrawl_operator_work_lag_messages{{{CRAWL}}}", "operator: {{crawl}}"),
           (f"sum(whoiscrawl_consumer_lag_messages{{{CRAWL}}})", "workers' assigned, not done"))),
    Graph("Spot pods lost and other operator events", "short",
          (("sum by (reason) (increase(whoiscrawl_operator_events_total[1h]))", "{{reason}}"),)),
    Graph("Lookup latency", "s",
          ((_lat("0.5", CRAWL), "p50 {{registry}}"), (_lat("0.95", CRAWL), "p95 {{registry}}"),
           (_lat("0.99", CRAWL), "p99 {{registry}}"))),
    Graph("Shards and lookups under way", "short",
          ((f"sum(whoiscrawl_shards_active{{{CRAWL}}})", "shards active"),
           (f"sum(whoiscrawl_lookups_in_flight{{{CRAWL}}})", "lookups in flight"))),
    Graph("Addresses of finished shards per second", "short",
          ((f"sum(rate(whoiscrawl_shard_addresses_done_total{{{CRAWL}}}[5m]))", "addresses"),)),
)

REGISTRY_VIEW = (
    Graph("Requests per second by outcome", "reqps",
          ((f"sum by (registry, outcome) (rate(whoiscrawl_lookups_total{{{REGISTRY}}}[5m]))",
            "{{registry}} {{outcome}}"),)),
    Graph("Time waiting for the budget (s/s)", "s",
          ((f"sum by (registry) (rate(whoiscrawl_rate_limit_wait_seconds_total{{{REGISTRY}}}[5m]))",
            "{{registry}}"),)),
    Graph("429s and notices per second", "reqps",
          ((f"sum(rate(whoiscrawl_rate_limited_total{{{REGISTRY}}}[5m])) or vector(0)", "429s"),)),
    Graph("Lookup latency", "s",
          ((_lat("0.5", REGISTRY), "p50 {{registry}}"), (_lat("0.95", REGISTRY), "p95 {{registry}}"),
           (_lat("0.99", REGISTRY), "p99 {{registry}}"))),
    Graph("Blocks discovered per second", "ops",
          ((f"sum by (registry) (rate(whoiscrawl_blocks_discovered_total{{{REGISTRY}}}[5m]))",
            "{{registry}}"),)),
    Graph("Addresses no attempt could look up", "short",
          ((f"sum by (registry) (increase(whoiscrawl_lookup_failures_total{{{REGISTRY}}}[1h])) or vector(0)",
            "failures"),)),
)


def _dashboard(uid: str, title: str, graphs: tuple[Graph, ...], variable: tuple[str, str]) -> Any:
    # grafana-foundation-sdk is a development dependency (the test extras): imported only here
    from grafana_foundation_sdk.builders import dashboard, prometheus, timeseries
    from grafana_foundation_sdk.models.dashboard import DataSourceRef, GridPos, VariableRefresh

    source = DataSourceRef(type_val="prometheus", uid="${datasource}")
    var_name, var_query = variable
    board = (
        dashboard.Dashboard(title).uid(uid).tags(["whoiscrawl"]).refresh("30s").time("now-6h", "now")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(dashboard.QueryVariable(var_name).datasource(source).query(var_query).include_all(True)
                       .multi(True).all_value(".*").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED))
    )
    for i, graph in enumerate(graphs):
        panel = (timeseries.Panel().title(graph.title).datasource(source).unit(graph.unit)
                 .grid_pos(GridPos(h=8, w=12, x=12 * (i % 2), y=8 * (i // 2))))
        for j, (expr, legend) in enumerate(graph.queries):
            query = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id("ABCD"[j])
            panel = panel.with_target(query)
        board = board.with_panel(panel)
    return board.build()


def render() -> dict[str, str]:
    """File name -> dashboard JSON, as committed under charts/whoiscrawl/dashboards/."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    crawls = ("crawl", "label_values(whoiscrawl_operator_workers_desired, crawl)")
    registries = ("registry", "label_values(whoiscrawl_lookups_total, registry)")
    boards = {
        "whoiscrawl.json": _dashboard("whoiscrawl", "whoiscrawl", OVERVIEW, crawls),
        "whoiscrawl-registry.json": _dashboard("whoiscrawl-registry", "whoiscrawl: per registry",
                                               REGISTRY_VIEW, registries),
    }
    return {name: json.dumps(board, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
            for name, board in boards.items()}


def write(directory: Path = CHART_DASHBOARDS) -> list[Path]:
    written = []
    for name, text in render().items():
        (directory / name).write_text(text)
        written.append(directory / name)
    return written


def expressions(text: str) -> list[str]:
    """Every PromQL expression of a dashboard's JSON."""
    doc = json.loads(text)
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def metric_names(text: str) -> set[str]:
    """The whoiscrawl series names in a PromQL expression or a /metrics page."""
    return set(re.findall(r"\bwhoiscrawl_[a-z0-9_]+", text))
