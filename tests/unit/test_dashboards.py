"""The chart's Grafana dashboards are generated from whoiscrawl/dashboards.py and must not drift."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from whoiscrawl import dashboards
from whoiscrawl.cli import app


def test_committed_dashboards_are_what_the_code_generates():
    for name, text in dashboards.render().items():
        committed = dashboards.CHART_DASHBOARDS / name
        assert committed.is_file() and committed.read_text() == text, f"{name}: run `make dashboards`"
    assert CliRunner().invoke(app, ["dashboards", "--check"]).exit_code == 0


def test_every_panel_has_a_query_and_the_overview_covers_the_issue():
    boards = dashboards.render()
    overview = json.loads(boards["whoiscrawl.json"])
    titles = " ".join(p["title"] for p in overview["panels"]).lower()
    for words in ("progress", "eta", "registry and outcome", "known-block", "429", "discovered", "workers",
                  "lag", "spot", "latency"):
        assert words in titles, words
    for text in boards.values():
        assert all(p["targets"] for p in json.loads(text)["panels"])
        assert all(dashboards.metric_names(e) for e in dashboards.expressions(text))


def test_the_overview_filters_every_crawl_series_by_the_crawl_variable():
    """Workers label their samples with their crawl: the overview's $crawl narrows worker panels too."""
    overview = dashboards.render()["whoiscrawl.json"]
    unfiltered = [e for e in dashboards.expressions(overview)
                  if "whoiscrawl_operator_events_total" not in e  # cluster-wide Events carry no crawl
                  and "$crawl" not in e]
    assert not unfiltered
