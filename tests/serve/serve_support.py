"""Result files for the serve tests: networks given as spans, written as result records."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import aiohttp

from whoiscrawl.ipv4 import ip_str


def record(first: int, last: int, n: int, **extra: Any) -> dict[str, Any]:
    """A result record for first..last; its handle and holder carry `n` so each is distinct."""
    start, end = ip_str(first), ip_str(last)
    cidrs = [str(c) for c in ipaddress.summarize_address_range(
        ipaddress.IPv4Address(first), ipaddress.IPv4Address(last))]
    doc = {
        "schema": "whoiscrawl.result/v1", "registry": ("ripencc", "arin", "apnic")[n % 3],
        "handle": f"NET-{n}", "start_address": start, "end_address": end, "cidrs": cidrs,
        "name": f"NAME-{n}", "country": ("NL", "US", "JP", None)[n % 4], "parent_handle": None,
        "type": "ASSIGNED PA", "status": ["active"], "abuse_emails": [f"abuse@holder{n}.example"],
        "registrant": f"Holder {n}", "registration_date": "2012-04-23T00:00:00Z",
        "last_changed": "2015-04-28T00:00:00Z", "query_address": start, "source": "rdap",
        "crawl": "test", "fetched_at": f"2026-12-01T00:00:{n % 60:02d}+00:00",
    }
    doc.update(extra)
    return doc


def write_results(path: Path, spans: list[tuple[int, int]], registries: list[str] | None = None,
                  **extra: Any) -> Path:
    """Results of networks `spans` (record n for spans[n]); `registries`: each one's registry."""
    with path.open("w", encoding="utf-8") as fh:
        for n, (first, last) in enumerate(spans):
            more = {"registry": registries[n]} if registries else {}
            fh.write(json.dumps(record(first, last, n, **extra, **more)) + "\n")
    return path


async def get(url: str) -> tuple[int, Any]:
    """An RDAP answer from a test server: its status and JSON (redirects not followed)."""
    async with aiohttp.ClientSession() as session, session.get(url, allow_redirects=False) as resp:
        return resp.status, await resp.json(content_type=None)


def most_specific(spans: list[tuple[int, int]], address: int) -> int | None:
    """Brute force: the smallest span holding the address (its position in `spans`), or None."""
    holding = [(last - first, n) for n, (first, last) in enumerate(spans) if first <= address <= last]
    return min(holding)[1] if holding else None
