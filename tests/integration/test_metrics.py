"""A real Prometheus scrapes whoiscrawl's /metrics; health and readiness answer for probes."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

from whoiscrawl import metrics
from whoiscrawl.dev.services import free_port


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_prometheus_scrapes_the_metrics_endpoint(services):
    ready = {"ok": False}
    port = free_port()
    server = metrics.serve(port, lambda: ready["ok"], host="127.0.0.1")
    try:
        assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        assert _get(f"http://127.0.0.1:{port}/readyz")[0] == 503
        ready["ok"] = True
        assert _get(f"http://127.0.0.1:{port}/readyz")[0] == 200

        metrics.LOOKUPS.labels("ripencc", "ok").inc(7)
        services.scrape(port, "worker")

        query = urllib.parse.quote('whoiscrawl_lookups_total{registry="ripencc",outcome="ok"}')
        value = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and value is None:
            status, body = _get(f"{services.prometheus_url}/api/v1/query?query={query}")
            result = json.loads(body)["data"]["result"] if status == 200 else []
            value = float(result[0]["value"][1]) if result else None
            time.sleep(0.5)
        assert value is not None and value >= 7
    finally:
        server.shutdown()
