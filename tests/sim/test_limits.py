"""Rate-limit policies trigger and recover, per registry and separately per source address."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import time
from typing import Any

import aiohttp
import pytest

from whoiscrawl.sim import policy
from whoiscrawl.sim.arrival import InOrder
from whoiscrawl.sim.policy import Limiter

ADDR = {"arin": "24.0.1.1", "ripencc": "77.0.1.1", "apnic": "1.0.1.1", "lacnic": "186.0.1.1",
        "afrinic": "41.0.1.1"}


async def fire(url: str, source: str, n: int) -> list[tuple[int, dict[str, str], Any]]:
    conn = aiohttp.TCPConnector(local_addr=(source, 0), limit=0)
    async with aiohttp.ClientSession(connector=conn) as s:
        async def one() -> tuple[int, dict[str, str], Any]:
            async with s.get(url, allow_redirects=False) as r:
                return r.status, dict(r.headers), await r.json(content_type=None)
        return list(await asyncio.gather(*(one() for _ in range(n))))


def test_limits_are_time_scaled():
    one, fast = policy.limits(1.0), policy.limits(100.0)
    assert set(one) == {"arin", "ripencc", "apnic", "lacnic", "afrinic"}
    for r in one:
        assert fast[r]["rate_per_s"] == pytest.approx(one[r]["rate_per_s"] * 100)
        assert fast[r]["burst"] == one[r]["burst"]
    assert one["lacnic"]["rate_per_s"] == pytest.approx(10 / 60)
    assert fast["lacnic"]["block_s"] == pytest.approx(3.0)
    assert one["ripencc"]["max_connections"] == 3
    assert one["afrinic"]["personal_cap"] == 5000 and fast["afrinic"]["day_s"] == pytest.approx(864.0)
    assert one["ripencc"]["personal_cap"] == 1000


@pytest.mark.parametrize(("registry", "scale", "n"), [
    ("arin", 1.0, 60), ("apnic", 1.0, 45), ("ripencc", 1.0, 45), ("afrinic", 1.0, 25),
])
async def test_token_bucket_triggers_recovers_per_source(registry, scale, n, start_sim):
    sim = await start_sim(time_scale=scale)
    url = f"{sim.base_url(registry)}ip/{ADDR[registry]}"
    got = await fire(url, "127.0.0.2", n)
    statuses = [s for s, _, _ in got]
    burst = policy.POLICIES[registry].burst
    assert statuses.count(200) >= burst and 429 in statuses
    limited, body = next((h, b) for s, h, b in got if s == 429)
    assert body["errorCode"] == 429  # a JSON error body, RIPE NCC's too
    if registry == "ripencc":  # RIPE NCC's 429s carry no Retry-After
        assert "Retry-After" not in limited and "Retry-After-Ms" not in limited
    else:
        assert int(limited["Retry-After"]) >= 1
    # another source address has its own budget
    other = await fire(url, "127.0.0.3", 5)
    assert [s for s, _, _ in other] == [200] * 5
    await asyncio.sleep(float(limited.get("Retry-After-Ms", 1000)) / 1000 + 0.2)
    again = await fire(url, "127.0.0.2", 1)
    assert again[0][0] == 200
    outcomes = [line for line in _log_lines(sim) if line["source"] == "127.0.0.2"]
    assert any(x["outcome"] == "rate_limited" for x in outcomes)


async def test_lacnic_blocks_with_notice_then_recovers(start_sim):
    sim = await start_sim(time_scale=600.0)  # 10/minute -> 100/s, 5-minute block -> 0.5 s
    url = f"{sim.base_url('lacnic')}ip/{ADDR['lacnic']}"
    got = await fire(url, "127.0.0.2", 25)
    blocked = [(h, body) for s, h, body in got if s == 429]
    assert blocked and sum(1 for s, _, _ in got if s == 200) >= 10
    h, body = blocked[0]
    assert any(n["title"] == "Rate Limit Notice" for n in body["notices"])
    assert float(h["Retry-After-Ms"]) <= 600
    assert (await fire(url, "127.0.0.3", 3))[0][0] == 200
    assert (await fire(url, "127.0.0.2", 1))[0][0] == 429  # still blocked
    await asyncio.sleep(0.6)
    assert (await fire(url, "127.0.0.2", 1))[0][0] == 200
    assert any(x["outcome"] == "blocked" for x in _log_lines(sim))


async def test_ripe_three_connections_per_address(start_sim):
    sim = await start_sim(time_scale=1.0, latency=True,
                          faults={"ripencc": {"latency": {"median_ms": 300, "sigma": 0}}})
    url = f"{sim.base_url('ripencc')}ip/{ADDR['ripencc']}"
    got, other = await asyncio.gather(fire(url, "127.0.0.2", 6), fire(url, "127.0.0.3", 3))
    statuses = sorted(s for s, _, _ in got)
    assert statuses == [200, 200, 200, 429, 429, 429]
    assert [s for s, _, _ in other] == [200, 200, 200]
    assert [s for s, _, _ in await fire(url, "127.0.0.2", 3)] == [200] * 3


def test_afrinic_escalating_bans():
    lim = Limiter(time_scale=1.0)
    t = 1000.0
    # hammer: strikes accumulate into a ban, and the next ban is longer
    outcomes = [lim.check("afrinic", "a", t + i * 0.001).outcome for i in range(40)]
    assert "rate_limited" in outcomes and outcomes[-1] == "blocked"
    first = lim.check("afrinic", "a", t + 1).retry_after
    assert 55 < first <= 60
    assert lim.check("afrinic", "b", t + 1).allowed  # other address unaffected
    t2 = t + 61
    for i in range(40):
        v = lim.check("afrinic", "a", t2 + i * 0.001)
    assert v.outcome == "blocked" and v.retry_after > 500  # escalated to 600 s


def test_afrinic_personal_data_cap_blocks_for_the_day_then_for_a_year():
    """5,000 person-object queries a day, then a block until the day ends; the 11th block: a year."""
    lim = Limiter(time_scale=1.0)
    assert policy.POLICIES["afrinic"].daily_cap is None  # lookups themselves are not capped
    for i in range(5000):
        assert lim.personal("afrinic", "c", 10.0 + i * 0.5, 1).allowed
    v = lim.personal("afrinic", "c", 2600.0, 1)
    assert not v.allowed and v.outcome == "blocked"
    assert not lim.check("afrinic", "c", 2601.0).allowed  # blocked for everything
    assert lim.check("afrinic", "c", policy.DAY_S + 11).allowed  # the next day
    assert lim.personal("afrinic", "d", 10.0, 0).allowed  # `-r` queries serve none
    for day in range(1, 12):  # ten more blocks ...
        start = day * policy.DAY_S + 20
        assert not lim.personal("afrinic", "c", start, 5001).allowed
    assert lim.check("afrinic", "c", 12 * policy.DAY_S + 100).retry_after > 300 * policy.DAY_S


async def test_ripe_whois_counts_personal_data_but_not_with_r(start_sim, monkeypatch):
    monkeypatch.setitem(policy.POLICIES, "ripencc", dataclasses.replace(policy.POLICIES["ripencc"],
                                                                          personal_cap=3))
    sim = await start_sim(time_scale=1000.0)
    answers = [await whois_query(sim, "127.0.0.2", f"-r {ADDR['ripencc']}") for _ in range(5)]
    assert all("inetnum:" in a and "role:" not in a for a in answers)  # -r: no contact objects
    answers = [await whois_query(sim, "127.0.0.2", ADDR["ripencc"]) for _ in range(4)]
    assert all("role:" in a for a in answers[:3])
    assert answers[3].startswith("%ERROR:201") and "personal data" in answers[3]
    assert (await whois_query(sim, "127.0.0.2", f"-r {ADDR['ripencc']}")).startswith("%ERROR:201")
    assert "inetnum:" in await whois_query(sim, "127.0.0.3", ADDR["ripencc"])  # per address


async def test_ripe_whois_refuses_a_fourth_connection_with_error_306(start_sim):
    sim = await start_sim(time_scale=1.0, latency=True,
                          faults={"ripencc": {"latency": {"median_ms": 300, "sigma": 0}}})
    got = await asyncio.gather(*(whois_query(sim, "127.0.0.2", f"-r {ADDR['ripencc']}") for _ in range(5)))
    assert sum("inetnum:" in a for a in got) == 3
    assert sum(a.startswith("%ERROR:306") for a in got) == 2


async def whois_query(sim: Any, source: str, query: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.whois_port, local_addr=(source, 0))
    writer.write(f"{query}\r\n".encode())
    await writer.drain()
    text = (await reader.read()).decode()
    writer.close()
    return text


@pytest.mark.parametrize("protocol", ["rdap", "whois"])
async def test_requests_are_counted_as_they_arrive_not_when_a_stalled_server_reads_them(protocol, start_sim):
    # ARIN at x10: 150/s after a burst of 30. The simulator's loop is stalled (as by rendering a huge
    # listing) while 45 requests arrive 10 ms apart (100/s, within the limit) from one address and 45
    # at once from another. Counted when they arrive, as a registry counts them, the paced ones all
    # pass and the burst is refused past what the bucket held; counted when the loop got to them (as
    # before), the paced ones looked like a burst too and a third were refused.
    sim = await start_sim(time_scale=10.0)
    limit = policy.limits(10.0)["arin"]
    port = sim.port if protocol == "rdap" else sim.whois_port
    ask = (f"GET /arin/registry/ip/{ADDR['arin']} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n"
           if protocol == "rdap" else f"{ADDR['arin']}\r\n").encode()
    sent: dict[str, list[tuple[float, socket.socket]]] = {"127.0.0.2": [], "127.0.0.3": []}

    def send(source: str, gap_s: float) -> None:
        for _ in range(45):
            conn = socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
            conn.sendall(ask)
            sent[source].append((time.time(), conn))
            time.sleep(gap_s)

    senders = [threading.Thread(target=send, args=args) for args in (("127.0.0.2", 0.01), ("127.0.0.3", 0.0))]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()  # the stall: the simulator's loop (this test's) serves nothing meanwhile
    await asyncio.gather(*(asyncio.to_thread(_read_all, c) for conns in sent.values() for _t, c in conns))
    logged = _log_lines(sim)
    passed = {src: sum(x["status"] == 200 for x in logged if x["source"] == src) for src in sent}
    assert passed["127.0.0.2"] == 45
    burst = [t for t, _c in sent["127.0.0.3"]]  # sent within a few ms: the bucket and what refilled
    assert passed["127.0.0.3"] <= limit["burst"] + limit["rate_per_s"] * (burst[-1] - burst[0]) + 1


async def test_requests_read_in_one_turn_are_let_on_in_the_order_they_arrived():
    # After a stall the loop reads every queued request in one turn, in its sockets' order, not
    # the requests' (new connections come after those already open): counted in that order, the
    # bucket would see the later ones first and charge the earlier ones nothing refilled.
    order, let_on = InOrder(), []

    async def request(arrived: float) -> None:
        await order.turn(arrived)
        let_on.append(arrived)

    await asyncio.gather(*(request(t) for t in (3.0, 1.0, 4.0, 2.0)))
    assert let_on == [1.0, 2.0, 3.0, 4.0]
    await request(0.5)  # alone in its turn: let on at once
    assert let_on[-1] == 0.5


def _read_all(conn: socket.socket) -> bytes:
    with conn:
        conn.settimeout(30)
        return b"".join(iter(lambda: conn.recv(65536), b""))


def test_lacnic_limiter_window():
    lim = Limiter(time_scale=1.0)
    ok = [lim.check("lacnic", "a", 0.0).allowed for _ in range(11)]
    assert ok == [True] * 10 + [False]
    assert not lim.check("lacnic", "a", 299.0).allowed
    assert lim.check("lacnic", "a", 300.5).allowed


def _log_lines(sim: Any) -> list[dict[str, Any]]:
    import json

    sim.log.flush()
    return [json.loads(x) for x in sim.log.path.read_text().splitlines() if x]
