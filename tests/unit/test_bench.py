"""The benchmark compares a run's figures with the data plane's limits in the same output."""

from __future__ import annotations

import pytest

from whoiscrawl.bench.common import simulator_options
from whoiscrawl.bench.fleet import against_targets, busiest_registry


def util(answered: int, allowed: float, utilization: float) -> dict:
    return {"answered": answered, "allowed_per_s": allowed, "utilization": utilization}


@pytest.mark.parametrize(
    ("utilization", "busiest"),
    [
        ({}, None),
        ({"arin": util(1000, 10, 0.5)}, "arin"),
        # 600 answers at 1/6 per second outweigh 5,000 at 10 per second
        ({"arin": util(5000, 10, 0.9), "lacnic": util(600, 1 / 6, 0.97)}, "lacnic"),
    ],
)
def test_the_busiest_registry_is_the_one_its_limit_held_longest(utilization, busiest):
    assert busiest_registry(utilization) == busiest


def test_each_target_is_reported_with_its_value_and_whether_it_was_met():
    figures = {
        "recall_resolution": 1.0,
        "address_coverage": 0.94,
        "lookups": 1000,
        "wasted_lookups": 44,
        "wasted_floor": 30,
        "rate_limited": 0,
        "utilization": {"arin": util(900, 10, 0.8), "lacnic": util(100, 1 / 6, 0.95)},
        "lookups_per_block": 0.4,
        "recall_by_registry_prefix": {  # LACNIC (grid only) is not held to the listing target
            "ripencc": {"/24": {"recall": 1.0}, "/25-/32": {"recall": 0.998}},
            "lacnic": {"/25-/32": {"recall": 0.5}},
        },
    }
    out = against_targets(figures)
    assert out["busiest_registry"] == "lacnic"
    assert {k: v["met"] for k, v in out.items() if k != "busiest_registry"} == {
        "recall_resolution": True,
        "address_coverage": False,
        "wasted_share": False,
        "rate_limited": True,
        "busiest_utilization": True,
        "listing_recall_min": False,
        "lookups_per_block": True,
    }
    assert out["listing_recall_min"]["value"] == 0.998
    assert out["wasted_share"]["value"] == 0.044
    assert out["wasted_share"]["floor"] == 0.03  # what no complete crawl gets below


def test_a_run_without_a_request_log_meets_nothing_it_cannot_show():
    out = against_targets({"recall_resolution": 0.9, "lookups": None, "rate_limited": None})
    assert out["wasted_share"]["met"] is None and out["rate_limited"]["met"] is None
    assert out["recall_resolution"]["met"] is False


@pytest.mark.parametrize(
    ("row_limit", "arin", "options"),
    [
        (None, True, ()),
        (500, True, ("--row-limit", "500")),
        (None, False, ("--no-arin-relation-search",)),
    ],
)
def test_the_benchs_simulator_options_are_sim_serves(row_limit, arin, options):
    assert simulator_options(row_limit, arin) == options


def test_the_benchs_arin_listing_limit_is_sim_serves():
    assert simulator_options(None, False, 0) == ("--no-arin-relation-search", "--arin-listing-limit", "0")
