"""Secrets never shown: a crawl through Kafka with SASL/SCRAM over TLS and Redis with an ACL user,
a password and TLS (a CA and certificates made by the test), its credentials given as a Secret
gives them (environment only), and none of them in any log line, metric, message or error text."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from whoiscrawl import queue
from whoiscrawl.bench.common import simulator
from whoiscrawl.dev import secure
from whoiscrawl.dev.services import free_port
from whoiscrawl.store.redis_admin import RedisCrawlAdmin

from ..conftest import RUN_ROOT
from .conftest import TIME_SCALE

# A broker with SASL_SSL started for the module, a crawl, and a wrong Kafka password's 10 s metadata
# timeout: 76 s here.
pytestmark = pytest.mark.slow
RANGE = "186.0.2.0/23"


@pytest.fixture(scope="module")
def secured() -> secure.Secured:
    with secure.session(RUN_ROOT / "secured") as running:
        yield running


def _cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    whoiscrawl = str(Path(sys.executable).with_name("whoiscrawl"))
    return subprocess.run([whoiscrawl, *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)


def _worker(env: dict[str, str], sim_env: dict[str, str], log: Path, port: int) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        cmd = [sys.executable, "-m", "whoiscrawl", "worker", "--metrics-port", str(port),
               "--grace-seconds", "5"]
        return subprocess.Popen(cmd, env={**os.environ, **env, **sim_env}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def test_a_crawl_through_sasl_and_tls_shows_no_secret(secured: secure.Secured, tmp_path: Path):
    crawl = f"secret-{os.getpid()}-{random.randrange(1 << 30):x}"
    env = {**secured.env, "WHOISCRAWL_CRAWL": crawl}
    shown: dict[str, str] = {}  # where -> what it showed
    store = RedisCrawlAdmin(secured.redis_url, crawl)
    with simulator("quick", TIME_SCALE, tmp_path / "requests.jsonl") as sim:
        sim_env = {"WHOISCRAWL_BOOTSTRAP_URL": sim.bootstrap_url, "WHOISCRAWL_WHOIS": sim.whois,
                   "WHOISCRAWL_RATE_LIMITS": sim.rate_limits_arg()}
        planned = _cli(env, "plan", RANGE, "--partitions", "2")
        assert planned.returncode == 0, planned.stderr
        shown["plan"] = planned.stdout + planned.stderr
        port = free_port()
        worker = _worker(env, sim_env, tmp_path / "worker.log", port)
        try:
            deadline = time.monotonic() + 120
            while (progress := store.progress()).shards_done < max(1, progress.shards_total):
                assert time.monotonic() < deadline and worker.poll() is None, progress
                time.sleep(0.3)
            scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
            shown["metrics"] = scraped.read().decode()
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        shown["worker log"] = (tmp_path / "worker.log").read_text(errors="replace")
        # Wrong credentials: the errors name what failed, never a password (the right or the wrong one).
        wrong_redis = secured.redis_url.replace(secured.secrets[1], "Wr0ng-redis-pw")
        refused = _cli({**env, "WHOISCRAWL_REDIS_URL": wrong_redis}, "plan", RANGE)
        assert refused.returncode != 0 and "cannot reach Redis" in refused.stderr
        shown["plan, wrong Redis password"] = refused.stdout + refused.stderr
        crashed_log = tmp_path / "worker-wrong.log"
        crashed = _worker({**env, "WHOISCRAWL_REDIS_URL": wrong_redis}, sim_env, crashed_log, free_port())
        assert crashed.wait(60) != 0
        shown["worker log, wrong Redis password"] = crashed_log.read_text(errors="replace")
        assert "AuthenticationError" in shown["worker log, wrong Redis password"]
        wrong_kafka = _cli({**env, "WHOISCRAWL_KAFKA_SASL_PASSWORD": "Wr0ng-kafka-pw"}, "plan", RANGE,
                           "--crawl", f"{crawl}-x", "--force")
        assert wrong_kafka.returncode != 0
        shown["plan, wrong Kafka password"] = wrong_kafka.stdout + wrong_kafka.stderr
    config = queue.kafka_config_from(secured.env)  # as the worker reads them
    results = list(queue.iter_results(secured.kafka_bootstrap, "whoiscrawl.", crawl, config))
    assert results and progress.blocks == len({tuple(r.cidrs) for r in results})
    shown["results topic"] = "\n".join(r.to_json().decode() for r in results)
    queue.delete_topics(secured.kafka_bootstrap, "whoiscrawl.", crawl, config)
    store.delete_crawl()
    RedisCrawlAdmin(secured.redis_url, f"{crawl}-x").delete_crawl()
    for secret in (*secured.secrets, "Wr0ng-redis-pw", "Wr0ng-kafka-pw"):
        leaks = [where for where, text in shown.items() if secret in text]
        assert not leaks, f"a secret shown in: {leaks}"
