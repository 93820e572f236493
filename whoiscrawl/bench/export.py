"""The export benchmark: synthetic records, exported by a child process, its peak memory measured."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from whoiscrawl.ipv4 import ip_str
from whoiscrawl.rirs import REGISTRIES

_COUNTRIES = ("US", "DE", "NL", "CN", "JP", "BR", "ZA", "RU", "FR", "GB", "IN", "AU")


def synthetic_records(path: Path, n: int, seed: int = 1) -> int:
    """n result records of /29-/24 blocks in address order, one in ten a later copy of an earlier one."""
    rng = random.Random(seed)
    address = 1 << 24
    recent: list[str] = []
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            if recent and i % 10 == 9:
                fh.write(rng.choice(recent).replace('"crawl":"bench"', '"crawl":"bench-again"'))
                continue
            size = 1 << rng.randrange(3, 9)
            first, address = address, address + size
            line = record_line(first, size, rng.choice(REGISTRIES), rng.choice(_COUNTRIES), i)
            fh.write(line)
            recent = [*recent[-99:], line]
    return n


def record_line(first: int, size: int, registry: str, country: str, i: int) -> str:
    """One synthetic result record (a JSON line) of the block first..first+size-1."""
    start, end = ip_str(first), ip_str(first + size - 1)
    doc = {
        "schema": "whoiscrawl.result/v1", "registry": registry, "handle": f"{start} - {end}",
        "start_address": start, "end_address": end, "cidrs": [f"{start}/{32 - size.bit_length() + 1}"],
        "name": f"NET-{i}", "country": country, "parent_handle": None, "type": "ASSIGNED PA",
        "status": ["active"], "abuse_emails": [f"abuse@holder{i % 50_000}.example"],
        "registrant": f"Holder {i % 50_000}", "registration_date": "2012-04-23T00:00:00Z",
        "last_changed": "2015-04-28T00:00:00Z", "query_address": start, "source": "rdap",
        "crawl": "bench", "fetched_at": "2026-12-01T00:00:00+00:00",
    }
    return json.dumps(doc, separators=(",", ":")) + "\n"


def export_benchmark(records: int, formats: list[str], workdir: Path) -> Iterator[dict[str, Any]]:
    """One figure set per format; each export runs as `whoiscrawl export` in its own process."""
    workdir.mkdir(parents=True, exist_ok=True)
    source, stamp = workdir / "records.jsonl", workdir / "records.count"
    started = time.perf_counter()
    if not (source.exists() and stamp.exists() and stamp.read_text() == str(records)):
        synthetic_records(source, records)  # the same seed: a workdir's records are reused
        stamp.write_text(str(records))
    generated = time.perf_counter() - started
    for fmt in formats:
        out = workdir / f"export.{fmt}"
        cmd = [sys.executable, "-m", "whoiscrawl", "export", str(source), "--format", fmt, "--out", str(out)]
        started = time.perf_counter()
        done, peak_mb = run_measured(cmd)
        rows = int(done["rows"])
        elapsed = time.perf_counter() - started
        yield {
            "benchmark": "export", "format": fmt, "records": records, "rows": rows,
            "source_mb": round(source.stat().st_size / 2**20, 1),
            "out_mb": round(out.stat().st_size / 2**20, 1),
            "generate_s": round(generated, 1), "export_s": round(elapsed, 1),
            "records_per_s": round(records / elapsed), "peak_rss_mb": round(peak_mb, 1),
            "peak_mb_per_million_records": round(peak_mb / (records / 1e6), 1),
            "target": "under 200 MB peak for 5M records",
        }
        out.unlink()


def run_measured(cmd: list[str]) -> tuple[dict[str, Any], float]:
    """Run a command that prints one JSON line; that line and the command's own peak resident set
    in MB (Linux: ru_maxrss in KiB)."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # reaped here, so the child's own rusage is ours to read
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        if proc.returncode:
            err.seek(0)
            raise RuntimeError(f"{cmd[1:4]} failed ({proc.returncode}): {err.read().decode()[-2000:]}")
    return json.loads(out.splitlines()[-1]), usage.ru_maxrss / 1024
