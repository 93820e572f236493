"""The operator's Redis client gives up fast: a pass with Redis down ends well inside the liveness window.

The Redis here is an address that accepts connections and then closes them, or never answers:
no Redis at all, which is the point. Attempts are counted at the listener.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from whoiscrawl.operator.backend import BackendError, LiveBackend, RedisTimeouts, Target

LIVENESS_WINDOW = 60.0  # health.STALE_INTERVALS x the default 10 s interval


@contextmanager
def dead_redis(answer: bool) -> Iterator[tuple[str, list[socket.socket]]]:
    """A listener that closes each connection at once (`answer`) or holds it silently."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(conn)
            if answer:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0", accepted
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


@pytest.mark.parametrize("answer", [True, False], ids=["closes", "silent"])
def test_a_pass_with_redis_down_makes_few_attempts_and_returns(answer: bool) -> None:
    limits = RedisTimeouts(connect_seconds=0.5, read_seconds=0.5, retries=2)
    backend = LiveBackend(limits)
    with dead_redis(answer) as (url, accepted):
        t = Target(crawl="ns.c", bootstrap="127.0.0.1:1", prefix="whoiscrawl.", redis_url=url)
        started = time.monotonic()
        with pytest.raises(BackendError, match="reading Redis counters"):
            backend.counters(t)
        took = time.monotonic() - started
        attempts = len(accepted)
    assert attempts == limits.retries + 1, attempts
    assert took < 2 * limits.worst_case_seconds(), took  # generous: twice the configured worst case


def test_the_default_client_fits_a_pass_in_the_liveness_window() -> None:
    """A pass makes at most two Redis calls before it gives up (the plan claim, or the counters)."""
    assert RedisTimeouts().worst_case_seconds(calls=2) < LIVENESS_WINDOW / 2


def test_one_client_per_redis_url_for_the_backends_life() -> None:
    backend = LiveBackend()
    t = Target(crawl="ns.a", bootstrap="k:9092", prefix="whoiscrawl.", redis_url="redis://127.0.0.1:1/0")
    other = Target(crawl="ns.b", bootstrap="k:9092", prefix="whoiscrawl.", redis_url="redis://127.0.0.1:1/0")
    assert backend._store(t).client is backend._store(other).client
