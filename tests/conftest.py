"""Session fixtures: a real Kafka broker, Redis and Prometheus on 127.0.0.1 (or the user's own)."""

from __future__ import annotations

import os
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

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
