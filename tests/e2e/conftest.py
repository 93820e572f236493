"""End-to-end fixtures: the registry simulator in its own process, and a results scorer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from whoiscrawl.bench.common import Simulator, simulator

from ..conftest import CALM_TIME_SCALE

TIME_SCALE = CALM_TIME_SCALE  # the simulator's limits, and the crawler's budgets, 100x faster
# What the sweep covers of `quick` by address with registries' rdap-down listings (measured 0.9966;
# the rest is small networks of LACNIC and AFRINIC, which list no children, between grid points).
COVERAGE_FLOOR = 0.99
# The same without listings: the /24 grid alone (measured 0.940).
GRID_COVERAGE_FLOOR = 0.935
# 429s a polite crawl may still see, as a share of its requests. The client paces under every
# limit (tests/unit/test_ratelimit.py proves it from the limiter's own slots); the simulator judges
# a request when its event loop gets to it, so a stall of its own on a busy 2-core machine can make
# paced requests look like a burst at 100x time: 0.5% for that, no more. One rule for every e2e crawl.
RATE_LIMITED_SHARE = 0.005


@pytest.fixture(scope="session")
def quick_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """One simulator for the session's tests that crawl `quick` without faults."""
    log = tmp_path_factory.mktemp("sim") / "requests.jsonl"
    with simulator("quick", TIME_SCALE, log) as sim:
        yield sim


@pytest.fixture(scope="session")
def quick_results(calm_quick) -> Path:
    """The results of the session's calm crawl of `quick` (tests/conftest.py), shared by the result
    and serving tests."""
    assert calm_quick.summary["complete"]
    return calm_quick.results


def score(results: Path, log: str | None = None) -> dict:
    from whoiscrawl.sim.score import score as sim_score

    return sim_score("quick", str(results), log, resolution=24, time_scale=TIME_SCALE)
