"""Every Prometheus metric whoiscrawl exports, defined once (prefix whoiscrawl_, base units)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

LOOKUPS = Counter(
    "whoiscrawl_lookups_total", "Registry lookups by registry and outcome", ["registry", "outcome"]
)
RATE_LIMITED = Counter("whoiscrawl_rate_limited_total", "429s and rate-limit notices received", ["registry"])
RATE_WAIT = Counter(
    "whoiscrawl_rate_limit_wait_seconds_total", "Time spent waiting for a registry budget", ["registry"]
)
LOOKUP_SECONDS = Histogram(
    "whoiscrawl_lookup_duration_seconds",
    "Time of one registry request",
    ["registry"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
KNOWN_SKIPS = Counter("whoiscrawl_known_block_skips_total", "Probes skipped because a known block held them")
BLOCKS = Counter("whoiscrawl_blocks_discovered_total", "New blocks this process discovered", ["registry"])
WASTED = Counter("whoiscrawl_wasted_lookups_total", "Lookups answered with a leaf block already known")
CONN_SLOTS_LOST = Counter(
    "whoiscrawl_connection_slots_lost_total",
    "Connection slots found lapsed (a stall) before their request was sent, and taken anew",
    ["registry"],
)
STALE_WRITES = Counter(
    "whoiscrawl_stale_writes_refused_total",
    "Writes refused because the lease they were made under had passed to another holder",
    ["lease"],
)
DEAD_LETTERS = Counter(
    "whoiscrawl_dead_letters_total",
    "Answers (kind answer) and work messages (kind work) that could not be read, kept as dead letters",
    ["kind", "registry"],
)
ERRORS = Counter("whoiscrawl_lookup_failures_total", "Addresses no attempt could look up", ["registry"])
IN_FLIGHT = Gauge("whoiscrawl_lookups_in_flight", "Lookups under way")
SHARDS = Counter("whoiscrawl_shards_completed_total", "Shards this process finished")
SHARD_ADDRESSES = Counter("whoiscrawl_shard_addresses_done_total", "Addresses of finished shards")
ACTIVE_SHARDS = Gauge("whoiscrawl_shards_active", "Shards being walked now")
SERVE_REQUESTS = Counter(
    "whoiscrawl_serve_requests_total", "Requests the map's server answered, by route and status",
    ["route", "status"],
)
SERVE_SECONDS = Histogram(
    "whoiscrawl_serve_request_duration_seconds",
    "Time the map's server took to answer a request",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)
SERVE_NETWORKS = Gauge("whoiscrawl_serve_index_networks", "Networks in the index the server answers from")
SERVE_INDEX_BYTES = Gauge("whoiscrawl_serve_index_bytes", "Bytes of the index's arrays")
SERVE_MAP_OBSERVED = Gauge(
    "whoiscrawl_serve_map_observed_timestamp_seconds",
    "When the newest record of the map was observed (Unix time; the map's age is time() minus this)",
)
CONSUMER_LAG = Gauge("whoiscrawl_consumer_lag_messages", "Work messages assigned to this worker not yet done")


def _never_stuck() -> str | None:
    return None


def serve(port: int, ready: Callable[[], bool], host: str = "0.0.0.0",
          stuck: Callable[[], str | None] = _never_stuck) -> ThreadingHTTPServer:
    """/metrics, /healthz (503 with the reason while `stuck` names one: the liveness probe
    restarts the process) and /readyz (it is taking work), in a thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                body, ctype, code = generate_latest(), CONTENT_TYPE_LATEST, 200
            elif self.path.startswith("/healthz"):
                why = stuck()
                body, ctype, code = (f"stuck: {why}\n".encode() if why else b"ok\n"), "text/plain", \
                    503 if why else 200
            elif self.path.startswith("/readyz"):
                ok = ready()
                body, ctype, code = (b"ready\n" if ok else b"not ready\n"), "text/plain", 200 if ok else 503
            else:
                body, ctype, code = b"not found\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics").start()
    return server
