"""The benchmark compares a run's figures with the data plane's limits in the same output."""

from __future__ import annotations

import subprocess
import sys

import pytest

from whoiscrawl.bench.common import Peaks, descendants, serve_options, simulator_options, unwind_on_sigterm
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


def test_a_fleets_peaks_take_each_workers_highest_and_its_childrens():
    """The fleet bench's memory figures: a worker's peak, its child processes' (a dumps' staging
    process), found through the process tree, and Redis's highest used memory across samples."""
    grows = "b = bytearray(64 << 20); import time; time.sleep(30)"
    worker = subprocess.Popen([sys.executable, "-c",
                               f"import subprocess, sys; subprocess.run([sys.executable, '-c', {grows!r}])"])
    try:
        peaks = Peaks.empty()
        for _ in range(100):
            peaks.sample([worker.pid], 10 << 20)
            if peaks.children >= 64:
                break
            subprocess.run(["sleep", "0.1"], check=True)
        peaks.sample([worker.pid], 3 << 20)
        assert len(descendants(worker.pid)) == 1
        figures = peaks.figures()
        assert figures["staging_peak_rss_mb"] >= 64 > figures["worker_peak_rss_mb"] > 0
        assert figures["redis_peak_mb"] == 10.0
    finally:
        for pid in descendants(worker.pid):
            subprocess.run(["kill", str(pid)], check=False)
        worker.kill()
        worker.wait()
    assert Peaks.empty().figures()["worker_peak_rss_mb"] == 0


@pytest.mark.parametrize(
    ("reads_files", "options", "expected"),
    [
        (False, (), []),
        (True, (), ["--prepare-files"]),
        (True, ("--row-limit", "5"), ["--row-limit", "5", "--prepare-files"]),
    ],
)
def test_a_bench_reading_the_files_has_them_made_before_the_simulator_serves(reads_files, options, expected):
    assert serve_options(reads_files, options) == expected


def test_a_bench_sent_sigterm_unwinds_and_stops_what_it_started(tmp_path):
    """A bench killed by SIGTERM (a CI timeout) runs its `finally`s, as on Ctrl-C: before, Python's
    default ended it at once, and its broker, Redis, simulator and workers ran on."""
    cleaned = tmp_path / "cleaned"
    script = (f"import sys, time\nfrom whoiscrawl.bench.common import {unwind_on_sigterm.__name__}\n"
              f"{unwind_on_sigterm.__name__}()\n"
              "try:\n    print('ready', flush=True)\n    time.sleep(60)\n"
              f"finally:\n    open({str(cleaned)!r}, 'w').write('stopped')\n")
    bench = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert bench.stdout is not None and bench.stdout.readline().strip() == "ready"
    bench.terminate()
    bench.wait(30)
    assert cleaned.read_text() == "stopped"
