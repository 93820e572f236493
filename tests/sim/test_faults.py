"""Every configured fault kind is produced, over RDAP and WHOIS."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

ADDR = "24.0.1.1"  # ARIN


async def get(url: str, source: str = "127.0.0.2", timeout: float = 5.0):
    conn = aiohttp.TCPConnector(local_addr=(source, 0))
    tmo = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=conn, timeout=tmo) as s, \
            s.get(url, allow_redirects=False) as r:
        return r.status, dict(r.headers), await r.read()


@pytest.mark.parametrize("kind", ["timeout", "reset"])
async def test_connection_faults(kind, start_sim):
    sim = await start_sim(faults={"arin": {kind: 1.0, "timeout_s": 0.3}})
    t = time.monotonic()
    with pytest.raises((aiohttp.ClientError, asyncio.TimeoutError)):
        await get(f"{sim.base_url('arin')}ip/{ADDR}")
    if kind == "timeout":
        assert time.monotonic() - t >= 0.25


async def test_http_5xx(start_sim):
    sim = await start_sim(faults={"arin": {"http_5xx": 1.0}})
    status, _, _ = await get(f"{sim.base_url('arin')}ip/{ADDR}")
    assert status == 503


@pytest.mark.parametrize("kind", ["truncated", "malformed"])
async def test_bad_json(kind, start_sim):
    sim = await start_sim(faults={"arin": {kind: 1.0}})
    status, _, body = await get(f"{sim.base_url('arin')}ip/{ADDR}")
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(body)


async def test_storm_and_ban(start_sim):
    sim = await start_sim(faults={"arin": {"storm": {"period_s": 1000, "duration_s": 500}},
                                  "apnic": {"ban": {"period_s": 1000, "duration_s": 500,
                                                    "fraction": 1.0}}})
    for reg, addr in (("arin", ADDR), ("apnic", "1.0.1.1")):
        status, headers, _ = await get(f"{sim.base_url(reg)}ip/{addr}")
        assert status == 429 and int(headers["Retry-After"]) > 400
    # the other registries are unaffected
    status, _, _ = await get(f"{sim.base_url('ripencc')}ip/77.0.1.1")
    assert status == 200
    sim.log.flush()
    assert {json.loads(x)["outcome"] for x in sim.log.path.read_text().splitlines()} == \
        {"fault", "ok"}


async def test_latency_distribution(start_sim):
    sim = await start_sim(latency=True, faults={"*": {"latency": {"median_ms": 200,
                                                                  "sigma": 0.0}}})
    t = time.monotonic()
    status, _, _ = await get(f"{sim.base_url('arin')}ip/{ADDR}")
    assert status == 200 and time.monotonic() - t >= 0.19


async def test_whois_faults(start_sim):
    sim = await start_sim(faults={"arin": {"truncated": 1.0}, "ripencc": {"reset": 1.0}})
    host, port = sim.info()["whois"].rsplit(":", 1)

    async def ask(q: str) -> bytes:
        r, w = await asyncio.open_connection(host, int(port))
        w.write(f"{q}\r\n".encode())
        try:
            return await asyncio.wait_for(r.read(), 5)
        finally:
            w.close()

    text = (await ask("n + 24.0.1.1")).decode()
    assert "NetRange" in text and "Country" not in text  # cut short
    try:
        data = await ask("77.0.1.1")
    except ConnectionError:
        data = b""
    assert data == b""


def test_faults_file_rejects_unknown_keys(tmp_path):
    from whoiscrawl.sim.faults import Faults

    p = tmp_path / "faults.yaml"
    p.write_text("arin: {timout: 0.1}\n")
    with pytest.raises(ValueError):
        Faults.load(p)
    p.write_text("seed: 3\n'*': {http_5xx: 0.5}\narin: {reset: 0.1}\n")
    f = Faults.load(p)
    assert f.specs["arin"].http_5xx == 0.5 and f.specs["arin"].reset == 0.1
