"""End-to-end fixtures: the registry simulator in its own process, and a results scorer."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from whoiscrawl.bench import Simulator, simulator

TIME_SCALE = 100.0  # the simulator's rate limits, and the crawler's budgets, run 100x faster
# What the sweep covers of `quick` by address with registries' rdap-down listings (measured 0.9966;
# the rest is small networks of LACNIC and AFRINIC, which list no children, between grid points).
COVERAGE_FLOOR = 0.99
# The same without listings: the /24 grid alone (measured 0.940).
GRID_COVERAGE_FLOOR = 0.935


@pytest.fixture(scope="session")
def quick_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """One simulator for the session's tests that crawl `quick` without faults."""
    log = tmp_path_factory.mktemp("sim") / "requests.jsonl"
    with simulator("quick", TIME_SCALE, log) as sim:
        yield sim


@pytest.fixture(scope="session")
def quick_results(quick_sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The results of one local crawl of `quick` (shared by the result and serving tests)."""
    from .test_local_crawl import crawl_cmd  # here: that module imports this one

    out = tmp_path_factory.mktemp("results") / "quick.jsonl"
    done = subprocess.run(crawl_cmd(quick_sim, out), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["complete"]
    yield out


def score(results: Path, log: str | None = None) -> dict:
    from whoiscrawl.sim.score import score as sim_score

    return sim_score("quick", str(results), log, resolution=24, time_scale=TIME_SCALE)
