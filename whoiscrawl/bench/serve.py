"""`whoiscrawl bench-serve`: the index, lookups, the RDAP server and the MMDB measured, with baselines."""

from __future__ import annotations

import asyncio
import bisect
import io
import ipaddress
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import uvloop

from whoiscrawl.bench.export import record_line, run_measured
from whoiscrawl.ipv4 import ip_str
from whoiscrawl.results.source import ResultSet
from whoiscrawl.results.summary import holder_of
from whoiscrawl.serve import lookup, mmdb
from whoiscrawl.serve.index import MapIndex, index_path, load_or_build

_REGISTRIES = ("arin", "ripencc", "apnic", "lacnic", "afrinic")
_COUNTRIES = ("US", "DE", "NL", "CN", "JP", "BR", "ZA")


def nested_records(path: Path, n: int, seed: int = 1) -> int:
    """n result records nested as registries nest them: a /20 allocation, /24 assignments inside it
    (with gaps), and /28s inside some of those; in address order from 1.0.0.0."""
    rng = random.Random(seed)
    address, written = 1 << 24, 0
    with path.open("w", encoding="utf-8") as fh:
        while written < n:
            registry, country = rng.choice(_REGISTRIES), rng.choice(_COUNTRIES)
            fh.write(record_line(address, 4096, registry, country, written))
            written += 1
            for child in range(16):
                if written >= n or rng.random() < 0.3:  # a gap: the allocation answers there
                    continue
                first = address + child * 256
                fh.write(record_line(first, 256, registry, country, written))
                written += 1
                for sub in range(rng.choice((0, 0, 0, 2, 4))):
                    if written < n:
                        fh.write(record_line(first + sub * 32, 16, registry, country, written))
                        written += 1
            address += 4096
    return written


def lookup_figures(index: MapIndex, addresses: int, baseline: int, text_lookups: int,
                   seed: int = 2) -> dict[str, Any]:
    """Batch lookups/s through the index (numpy), beside plain `ipaddress` + `bisect` on the same
    segments (a smaller sample: it is slow), from text and from integers."""
    rng = np.random.default_rng(seed)
    lo, hi = int(index.first.min()), int(index.last.max()) + 1
    addrs = rng.integers(lo, hi, addresses, dtype=np.uint32)
    started = time.perf_counter()
    index.buckets()  # made once per index, on its first lookup
    table_s = time.perf_counter() - started
    started = time.perf_counter()
    found = index.lookup(addrs)
    numpy_s = time.perf_counter() - started
    started = time.perf_counter()
    flat = index.lookup_flat(addrs)
    flat_s = time.perf_counter() - started
    assert np.array_equal(found, flat), "the bucketed and the flat lookup disagree"
    sample = addrs[:baseline].tolist()
    texts = [ip_str(a) for a in sample]
    starts, nets = index.seg_start.tolist(), index.seg_net.tolist()
    started = time.perf_counter()
    plain = [nets[bisect.bisect_right(starts, int(ipaddress.IPv4Address(t))) - 1] for t in texts]
    text_s = time.perf_counter() - started
    started = time.perf_counter()
    ints = [nets[bisect.bisect_right(starts, a) - 1] for a in sample]
    int_s = time.perf_counter() - started
    assert plain == ints == found[:baseline].tolist(), "the baseline and the index disagree"
    return {"lookups": addresses, "lookups_per_s": round(addresses / numpy_s),
            "lookup_table_s": round(table_s, 2),
            "lookup_table_bytes_per_network": round(index.buckets()[0].nbytes / len(index), 1),
            "flat_searchsorted_lookups_per_s": round(addresses / flat_s),
            "found_share": round(float((found >= 0).mean()), 4),
            "baseline_lookups": baseline,
            "baseline_ipaddress_bisect_per_s": round(baseline / text_s),
            "baseline_bisect_int_per_s": round(baseline / int_s)} | text_figures(index, addrs[:text_lookups])


def text_figures(index: MapIndex, addrs: np.ndarray) -> dict[str, Any]:
    """What `lookup --from FILE --json` does past reading the file: address texts parsed, looked up
    and written as JSON lines (to /dev/null)."""
    texts = [ip_str(a) for a in addrs.tolist()]
    started = time.perf_counter()
    with open(os.devnull, "w") as sink:
        lookup.write(index, texts, "json", sink)
    write_s = time.perf_counter() - started
    return {"text_lookups": len(texts), "lookup_json_lines_per_s": round(len(texts) / write_s)}


class _Client(asyncio.Protocol):
    """One keep-alive connection sending its paths one after another, the next as the last answer
    is in (a bare protocol: the load generator must cost less CPU than the server it measures, and
    aiohttp's client, or asyncio's streams, cost more)."""

    def __init__(self, host: str, paths: list[str], deadline: float, out: list[float],
                 statuses: dict[int, int]) -> None:
        self.requests = [f"GET /{p} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode() for p in paths]
        self.deadline, self.out, self.statuses = deadline, out, statuses
        self.buf, self.sent, self.at = b"", 0, 0.0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self._next()

    def _next(self) -> None:
        if self.sent == len(self.requests) or time.perf_counter() > self.deadline:
            self.transport.close()
            return
        self.at = time.perf_counter()
        self.transport.write(self.requests[self.sent])  # type: ignore[attr-defined]
        self.sent += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].lower()
        length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
        if len(self.buf) < end + 4 + length:
            return
        self.out.append(time.perf_counter() - self.at)
        status = int(head[9:12])
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.buf = self.buf[end + 4 + length :]
        self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _client(host: str, port: int, paths: list[str], deadline: float, out: list[float],
                  statuses: dict[int, int]) -> None:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(
        lambda: _Client(host, paths, deadline, out, statuses), host, port)
    await client.done


async def _load(host: str, port: int, paths: list[str], concurrency: int, seconds: float) -> dict[str, Any]:
    """GET the paths (bounded by count and time) over `concurrency` connections; per-request latency."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(*(_client(host, port, paths[i::concurrency], deadline, latencies, statuses)
                           for i in range(concurrency)))
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"rdap_requests": len(latencies), "rdap_requests_per_s": round(len(latencies) / wall),
            "rdap_p50_ms": round(float(np.percentile(ms, 50)), 2),
            "rdap_p99_ms": round(float(np.percentile(ms, 99)), 2),
            "rdap_statuses": {str(k): v for k, v in sorted(statuses.items())},
            "rdap_concurrency": concurrency}


def server_figures(results: Path, index: MapIndex, options: dict[str, Any]) -> dict[str, Any]:
    """`whoiscrawl serve --workers N` in its own processes, loaded from 127.0.0.1 with /ip/<address>
    queries (bounded by count and time) by one process here."""
    requests = options["requests"]
    cmd = [sys.executable, "-m", "whoiscrawl", "serve", str(results), "--port", "0", "--reload-every", "0",
           "--workers", str(options["workers"])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("whoiscrawl serve did not start")
        url = urlsplit(json.loads(line)["url"])
        rng = np.random.default_rng(3)
        picks = rng.integers(0, len(index), requests)
        paths = [f"ip/{ip_str(int(index.first[i]) + 1)}" for i in picks.tolist()]
        figures = _measured_load(proc.pid, url.hostname or "127.0.0.1", url.port or 80, paths, options)
        return figures | {"rdap_server_workers": options["workers"], "load_average_1m": os.getloadavg()[0]}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _measured_load(pid: int, host: str, port: int, paths: list[str],
                   options: dict[str, Any]) -> dict[str, Any]:
    """`_load`'s figures and the CPU the generator (this process) and the server (`pid` and its
    workers) spent meanwhile: the generator shares the 2 cores, so this says what was measured."""
    before, server_before = resource.getrusage(resource.RUSAGE_SELF), _cpu_s(pid)
    started = time.perf_counter()
    figures = uvloop.run(_load(host, port, paths, options["concurrency"], options["seconds"]))  # lighter
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    generator = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    server = _cpu_s(pid) - server_before
    answered = max(figures["rdap_requests"], 1)
    return figures | {"rdap_generator_cpu_share": round(generator / wall, 2),
                      "rdap_server_cpu_share": round(server / wall, 2),
                      "rdap_server_cpu_us_per_request": round(server / answered * 1e6)}


def _cpu_s(pid: int) -> float:
    """CPU seconds a process and its children (serve's workers) have used so far (Linux /proc)."""
    pids = [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    ticks = 0
    for each in pids:
        stat = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(stat[11]) + int(stat[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def batch_figures(results: Path, index: MapIndex, workdir: Path, lines: int) -> dict[str, Any]:
    """`whoiscrawl lookup RESULTS --from FILE --json` over `lines` random addresses (a child process,
    its output thrown away): lines/s and the child's peak memory, beside the index's own size."""
    path = workdir / f"addresses-{lines}.txt"
    if not path.exists():
        rng = np.random.default_rng(5)
        with path.open("w") as fh:
            for at in range(0, lines, 1 << 20):
                chunk = rng.integers(int(index.first.min()), int(index.last.max()) + 1,
                                     min(1 << 20, lines - at), dtype=np.uint32)
                fh.write("\n".join(ip_str(a) for a in chunk.tolist()) + "\n")
    cmd = [sys.executable, "-m", "whoiscrawl", "lookup", str(results), "--from", str(path), "--json"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if status:
        raise RuntimeError(f"whoiscrawl lookup --from exited with {status}")
    return {"batch_lines": lines, "batch_lookup_json_lines_per_s": round(lines / wall),
            "batch_peak_rss_mb": round(usage.ru_maxrss / 1024), "index_mb": round(index.nbytes / 2**20)}


def mmdb_figures(results: Path, index: MapIndex, workdir: Path, lookups: int) -> dict[str, Any]:
    """`whoiscrawl export RESULTS --format mmdb` in its own process (the index saved: loaded, not
    built), its write time and peak memory; then `maxminddb` lookups/s at random addresses."""
    out = workdir / "map.mmdb"
    done, peak_mb = run_measured([sys.executable, "-m", "whoiscrawl", "export", str(results),
                                  "--format", "mmdb", "--out", str(out)])
    with mmdb.open_reader(out) as reader:
        meta = reader.metadata()
        addrs = [ip_str(a) for a in np.random.default_rng(4).integers(
            int(index.first.min()), int(index.last.max()) + 1, lookups, dtype=np.uint32).tolist()]
        started = time.perf_counter()
        for a in addrs:
            reader.get(a)
        get_s = time.perf_counter() - started
    return {"mmdb_networks": done["networks_answering"], "mmdb_write_s": done["write_s"],
            "mmdb_export_peak_rss_mb": round(peak_mb), "mmdb_mb": round(out.stat().st_size / 2**20, 1),
            "mmdb_nodes": meta.node_count, "maxminddb_lookups_per_s": round(lookups / get_s)}


# The index built (or loaded) by `load_or_build` in a process of its own: its peak memory is the build's.
_INDEX = ("import json, sys, time; from pathlib import Path; "
          "from whoiscrawl.serve.index import load_or_build; "
          "t = time.perf_counter(); index, how = load_or_build(Path(sys.argv[1])); "
          "print(json.dumps({'how': how, 'networks': len(index), 's': time.perf_counter() - t, "
          "'bytes': index.nbytes}))")


def index_figures(results: Path) -> dict[str, Any]:
    """The index built from the results in a child process (its time and peak memory), then loaded
    from the saved file in another (the baseline: the interpreter, the imports and the index alone),
    so the build's own overhead is the difference."""
    index_path(results).unlink(missing_ok=True)
    built, build_mb = run_measured([sys.executable, "-c", _INDEX, str(results)])
    loaded, load_mb = run_measured([sys.executable, "-c", _INDEX, str(results)])
    assert built["how"] == "built" and loaded["how"] == "loaded", (built, loaded)
    n = max(built["networks"], 1)
    return {"networks": built["networks"], "index_build_s": round(built["s"], 1),
            "index_build_peak_rss_mb": round(build_mb), "index_load_s": round(loaded["s"], 2),
            "index_loaded_peak_rss_mb": round(load_mb),
            "index_build_overhead_bytes_per_network": round((build_mb - load_mb) * 2**20 / n, 1),
            "index_bytes_per_network": round(built["bytes"] / n, 1),
            "index_file_bytes_per_network": round(index_path(results).stat().st_size / n, 1)}


def _results_for(networks: int, workdir: Path, given: Path | None) -> tuple[Path, float]:
    """The results measured: a given file linked into the work folder (its index is saved beside the
    link, not beside the file), else `networks` synthetic nested networks (generated once)."""
    if given is not None:
        link = workdir / given.name
        if link.resolve() != given.resolve():
            link.unlink(missing_ok=True)
            link.symlink_to(given.resolve())
        return link, 0.0
    results = workdir / f"nested-{networks}.jsonl"
    started = time.perf_counter()
    if not results.exists():
        nested_records(results, networks)
    return results, time.perf_counter() - started


def bench_serve(networks: int, workdir: Path, options: dict[str, Any]) -> dict[str, Any]:
    """All the figures, one JSON object. `options`: lookups, baseline, text_lookups, requests, seconds,
    concurrency, workers (the server's), batch_lines (lookup --from; 0: none), mmdb_lookups (0: no MMDB
    written), results (a results file to use instead of `networks` synthetic ones; None), check and
    check_every (the served answers checked against the results at `check` random addresses and every
    `check_every`th network's first and last; 0: no check; needs the MMDB)."""
    workdir.mkdir(parents=True, exist_ok=True)
    results, generate_s = _results_for(networks, workdir, options.get("results"))
    doc: dict[str, Any] = {"benchmark": "serve", "generate_s": round(generate_s, 1),
                           "results_mb": round(results.stat().st_size / 2**20)} | index_figures(results)
    index, _ = load_or_build(results)
    doc["segments"] = len(index.seg_start)
    doc |= lookup_figures(index, options["lookups"], options["baseline"], options["text_lookups"])
    if options["requests"]:
        doc |= server_figures(results, index, options)
    if options["batch_lines"]:
        doc |= batch_figures(results, index, workdir, options["batch_lines"])
    if options["mmdb_lookups"]:
        doc |= mmdb_figures(results, index, workdir, options["mmdb_lookups"])
        if options.get("check"):
            doc |= check_figures(results, index, workdir / "map.mmdb", options["check"],
                                 options["check_every"])
    doc["targets"] = {"lookups_per_s": 5_000_000, "index_build_s_for_5M": 60,
                      "index_bytes_per_network": 200, "rdap_requests_per_s": 10_000, "rdap_p99_ms": 10,
                      "maxminddb_lookups_per_s": 200_000}
    return doc


Answer = tuple[str, str, str, str] | None  # (start, end, handle, holder) of the most specific network


def most_specific(first: np.ndarray, last: np.ndarray, probes: np.ndarray) -> np.ndarray:
    """For each sorted probe address, the smallest of the spans holding it (the first given among
    equal ones), -1 for none: spans painted over the probes, largest first, so the smallest stays.
    Apart from the index on purpose: the oracle the served answers are judged by."""
    size, at = last - first, np.arange(len(first))
    order = np.lexsort((-at, -size))  # largest first; among equal sizes the first given last
    lo = np.searchsorted(probes, first[order], "left")
    hi = np.searchsorted(probes, last[order], "right")
    out = np.full(len(probes), -1, np.int64)
    for net, a, b in zip(order.tolist(), lo.tolist(), hi.tolist(), strict=True):
        if a < b:
            out[a:b] = net
    return out


def _wanted(results: Path, addresses: int, every: int) -> tuple[np.ndarray, list[Answer]]:
    """The probes (random addresses over all IPv4, every `every`th network's first and last
    address) and the results' answer at each: the smallest latest record holding it, found from
    the records' spans (`ResultSet`, a record at a time) and only those records read."""
    rs = ResultSet(results, seekable=True)
    first, last = rs.spans()
    random_ones = np.random.default_rng(6).integers(0, 1 << 32, addresses, dtype=np.int64)
    probes = np.unique(np.concatenate([random_ones, first[::every], last[::every]]))
    best = most_specific(first, last, probes)
    held = np.unique(best[best >= 0]).tolist()
    docs = dict(zip(held, rs.records_at(held), strict=True))
    return probes, [None if b < 0 else _answer(docs[b]) for b in best.tolist()]


def _answer(doc: dict[str, Any]) -> Answer:
    """A result record's answer (its holder as `summary` names holders)."""
    return (doc["start_address"], doc["end_address"], doc["handle"], holder_of(doc))


def _served(doc: Any) -> Answer:
    """A served answer (a `lookup --json` object, an MMDB record)."""
    return (doc["start_address"], doc["end_address"], doc["handle"], doc["holder"])


def _disagreeing(texts: list[str], got: list[Answer], want: list[Answer]) -> dict[str, Any]:
    wrong = [(t, g, w) for t, g, w in zip(texts, got, want, strict=True) if g != w]
    return {"wrong": len(wrong), "examples": wrong[:5]}


def check_figures(results: Path, index: MapIndex, mmdb_file: Path, addresses: int,
                  every: int) -> dict[str, Any]:
    """The served answers against the results at a sample of probes: `lookup --json`'s (the index)
    and the MMDB's (maxminddb) network range, handle and holder at each, beside the results' own
    most specific record (`_wanted`). For a results file of any size (the sample of `full`)."""
    started = time.perf_counter()
    probes, want = _wanted(results, addresses, every)
    texts = [ip_str(p) for p in probes.tolist()]
    oracle_s = time.perf_counter() - started
    buf = io.StringIO()
    lookup.write(index, texts, "json", buf)
    docs = [json.loads(line) for line in buf.getvalue().splitlines()]
    by_lookup = [_served(d) if d["found"] else None for d in docs]
    with mmdb.open_reader(mmdb_file) as reader:
        by_mmdb = [None if d is None else _served(d) for d in map(reader.get, texts)]
    return {"check_probes": len(texts), "check_held": sum(w is not None for w in want),
            "check_oracle_s": round(oracle_s, 1),
            "check_lookup": _disagreeing(texts, by_lookup, want),
            "check_mmdb": _disagreeing(texts, by_mmdb, want)}
