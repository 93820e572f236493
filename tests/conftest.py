"""Session fixtures: a real Kafka broker, Redis and Prometheus on 127.0.0.1 (or the user's own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from whoiscrawl.bench.common import simulator
from whoiscrawl.dev import services as dev_services

RUN_ROOT = dev_services.CACHE_DIR / "test-services"

# The operator's pass interval, once for the whole run: kopf's timer takes it when the handlers are
# imported (operator/glue.py), so a value set by whichever test module loaded first would decide it
# for every other. This conftest loads before any test module; the kopf-driven tests stay quick.
assert "whoiscrawl.operator.glue" not in sys.modules, "the operator's handlers loaded before conftest"
os.environ.setdefault("WHOISCRAWL_OPERATOR_INTERVAL", "0.4")


@dataclass
class TestServices:
    kafka_bootstrap: str
    redis_url: str
    prometheus_url: str | None
    prometheus_config: Path | None

    def scrape(self, port: int, job: str) -> None:
        """Point the session's Prometheus at one /metrics port on 127.0.0.1 (every 1 s) and reload it."""
        assert self.prometheus_config is not None and self.prometheus_url is not None
        self.prometheus_config.write_text(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n"
            f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n")
        reload = urllib.request.Request(f"{self.prometheus_url}/-/reload", method="POST")
        urllib.request.urlopen(reload, timeout=10).close()


@pytest.fixture(scope="session")
def services() -> Iterator[TestServices]:
    """Real services for the whole session; WHOISCRAWL_KAFKA_BOOTSTRAP / _REDIS_URL point at your own."""
    kafka = os.environ.get("WHOISCRAWL_KAFKA_BOOTSTRAP")
    redis_url = os.environ.get("WHOISCRAWL_REDIS_URL")
    wanted = tuple(n for n, given in (("redis", redis_url), ("kafka", kafka)) if not given)
    with dev_services.session(RUN_ROOT, (*wanted, "prometheus")) as running:
        prom = running.services["prometheus"]
        yield TestServices(
            kafka_bootstrap=kafka or running.kafka_bootstrap,
            redis_url=redis_url or running.redis_url,
            prometheus_url=prom.address,
            prometheus_config=Path(prom.workdir) / "prometheus.yml",
        )


@pytest.fixture
def unique_name() -> str:
    """A fresh name per test, so tests sharing the broker and Redis never see each other's data."""
    return f"t{uuid.uuid4().hex[:10]}"


CALM_TIME_SCALE = 100.0  # the simulator's limits, and the crawler's budgets, 100x faster


@dataclass(frozen=True)
class CalmCrawl:
    """The uninterrupted local crawl of `quick`: what every crawl that must lose nothing is held to."""

    results: Path  # its results, JSON lines
    requests: Path  # the simulator's log of every request it was asked
    summary: dict  # `whoiscrawl crawl --json`'s last line
    ranges: list[str]
    blocks: frozenset[tuple[str, str]]  # (first, last address) of every network found


def calm_crawl_cmd(bootstrap_url: str, whois: str, rate_limits: str, ranges: list[str], out: Path,
                   *extra: str) -> list[str]:
    """`whoiscrawl crawl` of a simulator's ranges, as a user runs it (JSON summary, no progress)."""
    return [sys.executable, "-m", "whoiscrawl", "crawl", *ranges, "--out", str(out), "--bootstrap-url",
            bootstrap_url, "--rate-limits", rate_limits, "--whois", whois, "--no-progress", "--json",
            *extra]


@pytest.fixture(scope="session")
def calm_quick(tmp_path_factory: pytest.TempPathFactory) -> CalmCrawl:
    """One calm crawl of `quick` per session, on a simulator of its own (its request log is this
    crawl's alone): the e2e, fleet and control-plane tiers compare with it instead of each
    crawling `quick` again."""
    workdir = tmp_path_factory.mktemp("calm-quick")
    out, log = workdir / "results.jsonl", workdir / "requests.jsonl"
    with simulator("quick", CALM_TIME_SCALE, log) as sim:
        cmd = calm_crawl_cmd(sim.bootstrap_url, sim.whois, sim.rate_limits_arg(), sim.ranges, out)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        ranges = sim.ranges
    assert done.returncode == 0, done.stderr[-2000:]
    blocks = frozenset((r["start_address"], r["end_address"]) for r in map(json.loads, out.open()))
    return CalmCrawl(out, log, json.loads(done.stdout.strip().splitlines()[-1]), ranges, blocks)
