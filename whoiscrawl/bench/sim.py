"""Throughput benchmark of `sim serve`: a bounded burst of lookups from a few source addresses."""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from typing import Any

import aiohttp

from whoiscrawl.bench.common import simulator, work_folder
from whoiscrawl.ipv4 import ip_str
from whoiscrawl.sim import scenarios
from whoiscrawl.sim.data import load_iana


def sample_addresses(scenario: str, n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    ivs = scenarios.get(scenario).intervals
    weights = [b - a + 1 for a, b in ivs]
    out = []
    for a, b in rng.choices(ivs, weights, k=n):
        out.append(ip_str(rng.randint(a, b)))
    return out


def _base_for(info: dict[str, Any]) -> dict[int, str]:
    rdap = info["rdap"]
    return {row.octet: rdap[row.registry] for row in load_iana() if row.registry}


async def _fire(info: dict[str, Any], addrs: list[str], concurrency: int, sources: int,
                max_seconds: float, protocol: str) -> dict[str, Any]:
    bases = _base_for(info)
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(
        local_addr=(f"127.0.0.{2 + k}", 0), limit=0)) for k in range(sources)]
    statuses: dict[int, int] = {}
    errors = 0
    q: asyncio.Queue[str] = asyncio.Queue()
    for a in addrs:
        q.put_nowait(a)
    deadline = time.monotonic() + max_seconds
    host, port = info["whois"].rsplit(":", 1)

    async def worker(k: int) -> None:
        nonlocal errors
        sess = sessions[k % sources]
        src = f"127.0.0.{2 + k % sources}"
        while time.monotonic() < deadline:
            try:
                a = q.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                if protocol == "whois":
                    r, w = await asyncio.open_connection(host, int(port), local_addr=(src, 0))
                    w.write(f"{a}\r\n".encode())
                    await r.read()
                    w.close()
                    statuses[200] = statuses.get(200, 0) + 1
                    continue
                url = f"{bases[int(a.split('.')[0])]}ip/{a}"
                async with sess.get(url, allow_redirects=False) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
            except (aiohttp.ClientError, OSError):
                errors += 1

    t0 = time.monotonic()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    dt = time.monotonic() - t0
    for s in sessions:
        await s.close()
    done = sum(statuses.values())
    return {"lookups": done, "seconds": round(dt, 3), "lookups_per_s": round(done / dt, 1),
            "statuses": {str(k): v for k, v in sorted(statuses.items())}, "errors": errors}


def run(scenario: str = "standard", requests: int = 20_000, concurrency: int = 64,
        sources: int = 4, max_seconds: float = 60.0, protocol: str = "rdap") -> dict[str, Any]:
    """Benchmark one `sim serve` process (limits and latency off) and return the figures."""
    work, t = work_folder("sim"), time.time()
    try:
        log, extra = work / "requests.jsonl", ["--no-limits", "--no-latency"]
        with simulator(scenario, 1000.0, log, extra=extra) as sim:
            startup = time.time() - t
            addrs = sample_addresses(scenario, requests)
            result = asyncio.run(_fire(sim.info, addrs, concurrency, sources, max_seconds, protocol))
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the request log: nothing here reads it
    result.update({"scenario": scenario, "protocol": protocol, "concurrency": concurrency,
                   "sources": sources, "server_startup_s": round(startup, 2)})
    return result
