"""Benchmarks of one process: the WHOIS parsers, and local crawls of growing slices of `full`."""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import json
import pstats
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipwhois.net import Net
from ipwhois.whois import Whois

from whoiscrawl.bench.common import Simulator, rate, serve_options, simulator
from whoiscrawl.ipv4 import ip_str
from whoiscrawl.local import LocalCrawl
from whoiscrawl.registry import whois
from whoiscrawl.rirs import REGISTRIES
from whoiscrawl.settings import SETTINGS, CrawlSettings
from whoiscrawl.sim import data, render, whoisq
from whoiscrawl.sim.model import World
from whoiscrawl.sources import published
from whoiscrawl.space import fetch_bootstrap


@dataclass(frozen=True)
class WhoisCorpus:
    """Port-43 answers as the simulator writes them: `-m` listings (text, registry, parent handle)
    of the RIPE-style registries and single lookups (text, address, registry) of all five."""

    listings: list[tuple[str, str, str]]
    lookups: list[tuple[str, int, str]]

    @property
    def listed_objects(self) -> int:
        return sum(text.count("\ninetnum:") for text, _, _ in self.listings)


def whois_corpus(
    world: World, per_registry: int = 40, lookups_per_registry: int = 200, max_children: int = 10**6
) -> WhoisCorpus:
    """Listings of the first `per_registry` parents with 3 to `max_children` children of each
    RIPE-style registry (with and without contact objects, in turn), and lookups of objects of
    every registry."""
    listings: list[tuple[str, str, str]] = []
    lookups: list[tuple[str, int, str]] = []
    wanted = {r: per_registry for r in whoisq.RIPE_STYLE}
    asked: dict[str, int] = {}
    for i in range(len(world.start)):
        registry = world.registry(i)
        if wanted.get(registry, 0) and 3 <= world.nchildren[i] <= max_children:
            text = render.whois_listing(world, world.children(i, 10**6), registry, wanted[registry] % 2 == 0)
            listings.append((text, registry, world.handle(i)))
            wanted[registry] -= 1
        if asked.get(registry, 0) < lookups_per_registry and not world.is_placeholder(i):
            lookups.append((render.whois_text(world, i), world.start[i], registry))
            asked[registry] = asked.get(registry, 0) + 1
        if not any(wanted.values()) and all(asked.get(r, 0) >= lookups_per_registry for r in REGISTRIES):
            break
    return WhoisCorpus(listings, lookups)


def ipwhois_lookup(text: str, address: int, registry: str) -> dict[str, Any]:
    """ipwhois' own offline lookup, as parse_whois called it before: a `Net` (and with it a DNS
    resolver and a URL opener) per answer, and every field ipwhois knows. The benchmark's baseline."""
    result: dict[str, Any] = Whois(Net(ip_str(address))).lookup(
        response=text, is_offline=True, asn_data={"asn_registry": registry})
    return result


def parse_benchmark(
    world: World, rounds: int = 1, per_registry: int = 40, lookups_per_registry: int = 200
) -> dict[str, Any]:
    """Listed objects parsed per second (`parse_whois_listing`) and single answers per second
    (`parse_whois`) over the simulator's answers, beside ipwhois' per-answer lookup on the same
    lookups (what each of them cost in setup and fields before)."""
    corpus = whois_corpus(world, per_registry, lookups_per_registry)
    objects = corpus.listed_objects * rounds

    def listings() -> None:
        for _ in range(rounds):
            for text, registry, parent in corpus.listings:
                whois.parse_whois_listing(text, registry, parent)

    def lookups() -> None:
        for _ in range(rounds):
            for text, address, registry in corpus.lookups:
                whois.parse_whois(text, address, registry)

    def baseline() -> None:
        for _ in range(rounds):
            for text, address, registry in corpus.lookups:
                ipwhois_lookup(text, address, registry)

    n = len(corpus.lookups) * rounds
    return {
        "benchmark": "whois_parse",
        "listings": len(corpus.listings) * rounds,
        "listed_objects": objects,
        "listed_objects_per_s": rate(objects, listings),
        "lookups": n,
        "lookups_per_s": rate(n, lookups),
        "baseline_ipwhois_lookups_per_s": rate(n, baseline),
    }


# --- local crawls of growing slices of `full` ------------------------------------------------------

# Frames of the event loop, the thread pools and the profiler's own entry: they hold everything and
# tell nothing, so the profile summary leaves them out.
# Waits too: in a run of standard the parse process pool's feeder and manager threads showed 120 s
# in lock acquires and polls, which hold no CPU.
_PLUMBING = ("asyncio/", "concurrent/futures/", "threading.py", "selectors.py", "contextvars", "<string>",
             "_queue.SimpleQueue", "multiprocessing/", "'_thread.lock' objects", "'select.poll' objects",
             "<built-in method builtins.exec>", "'_contextvars.Context' objects", "'select.epoll' objects")


def slice_ranges(fraction: float) -> list[str]:
    """A slice of `full`: of each registry's /8s (IANA's table), `fraction` of them (at least
    one), spread evenly over its /8s so a slice is not only the oldest or only the newest space."""
    by_registry: dict[str, list[int]] = {}
    for row in data.load_iana():
        if row.registry:
            by_registry.setdefault(row.registry, []).append(row.octet)
    ranges = []
    for octets in by_registry.values():
        taken = max(1, round(fraction * len(octets)))
        ranges += [f"{octets[k * len(octets) // taken]}.0.0.0/8" for k in range(taken)]
    return sorted(ranges, key=lambda r: int(r.split(".")[0]))


def profile_summary(stats: pstats.Stats, top: int = 5) -> list[dict[str, Any]]:
    """The `top` functions by cumulative time, the event loop's and thread pool's frames left out."""
    rows = []
    for (path, line, name), (_cc, calls, own, cumulative, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{path}:{line}({name})" if line else name
        if not any(p in where for p in _PLUMBING):
            rows.append({"function": where.replace(str(Path.cwd()) + "/", ""), "calls": calls,
                         "cumulative_s": round(cumulative, 2), "own_s": round(own, 2)})
    return sorted(rows, key=lambda r: -float(r["cumulative_s"]))[:top]


class _ThreadProfiles:
    """A profiler for every thread started while `watching` (the pools where WHOIS and RDAP
    answers are parsed): cProfile sees only the thread it was enabled in. An answer over 1 MB is
    parsed in a process of its own, which no profile here sees."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []

    def _start(self, *_event: Any) -> None:
        # threading's profile hook: the new thread's first event swaps it for a profiler of its own.
        profile = cProfile.Profile(time.thread_time)
        self.profiles.append(profile)
        profile.enable()

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        threading.setprofile(self._start)
        try:
            yield
        finally:
            threading.setprofile(None)

    def merged(self, main: cProfile.Profile) -> pstats.Stats:
        stats = pstats.Stats(main)
        for profile in self.profiles:
            stats.add(profile)
        return stats


def crawl_slice(
    name: str, sim_info: dict[str, Any], ranges: list[str], out: Path, profile: bool, sources: str = "live"
) -> dict[str, Any]:
    """One local crawl of `ranges` (in a process of its own: its CPU time and peak RSS are the
    crawl's), with its figures and, if `profile`, the profile summary of every thread. `sources`
    other than live: the simulator's published files read first, as `whoiscrawl demo` reads them."""
    sim = Simulator(None, sim_info)  # type: ignore[arg-type]  # started by the parent
    files = {} if sources == "live" else {  # simulated data: no real terms apply
        "files_base": sim.files_base, "accept_dump_terms": frozenset(REGISTRIES),
        "verify": SETTINGS["verify"].default, "fill_redacted": SETTINGS["fill_redacted"].default}
    chosen = CrawlSettings(whois_servers=dict.fromkeys(REGISTRIES, sim.whois),
                           sources=published.parse_sources(sources), **files)
    job = LocalCrawl(ranges, out, asyncio.run(fetch_bootstrap(sim.bootstrap_url)), sim.limits(), chosen)
    threads, main = _ThreadProfiles(), cProfile.Profile(time.thread_time)  # CPU, thread by thread
    cpu, started = time.process_time(), time.monotonic()
    with threads.watching() if profile else contextlib.nullcontext():
        if profile:
            main.enable()
        summary = asyncio.run(job.run())
        main.disable()
    wall, cpu = time.monotonic() - started, time.process_time() - cpu
    blocks = int(summary["blocks"])
    return {
        "slice": name, "sources": sources, "ranges": len(ranges),
        "addresses": sum(1 << (32 - int(r.split("/")[1])) for r in ranges),
        "complete": summary["complete"], "networks": blocks, "lookups": summary["lookups"],
        "wall_s": round(wall, 1), "networks_per_s": round(blocks / wall, 1),
        "cpu_s": round(cpu, 1), "cpu_s_per_network": round(cpu / max(blocks, 1), 6),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "checkpoint_bytes": out.with_name(out.name + ".checkpoint.json").stat().st_size,
        "profiled": profile,
        **({"profile_top5": profile_summary(threads.merged(main))} if profile else {}),
    }


def scale_benchmark(fractions: list[float], time_scale: float, baseline: str | None, profile: bool,
                    workdir: Path, sources: str = "live") -> Iterator[dict[str, Any]]:
    """Local crawls, one JSON document each: `baseline` (a scenario, e.g. standard) whole, then
    each slice of `full`, smallest first, each in a fresh process against one simulator of
    `full`, with `sources` (the files made before the crawls start). The last document compares
    each slice's CPU seconds per network with the baseline's."""
    runs: list[dict[str, Any]] = []
    plans = ([(baseline, baseline, None)] if baseline else []) + [
        ("full", f"full/{round(1 / f)}" if f < 1 else "full", slice_ranges(f)) for f in fractions]
    for scenario in dict.fromkeys(s for s, _, _ in plans):
        extra = serve_options(sources != "live")
        with simulator(scenario, time_scale, workdir / f"{scenario}-requests.jsonl", extra=extra) as sim:
            for _, name, ranges in (p for p in plans if p[0] == scenario):
                out = workdir / f"{name.replace('/', '-')}.jsonl"
                run = _crawl_in_a_process(name, sim.info, ranges or sim.ranges, out, profile, sources)
                runs.append(run)
                yield run
    if baseline and len(runs) > 1:
        base = runs[0]["cpu_s_per_network"]
        yield {"benchmark": "scale", "baseline": baseline, "time_scale": time_scale,
               "cpu_s_per_network_vs_baseline": {r["slice"]: round(r["cpu_s_per_network"] / base, 3)
                                                 for r in runs[1:]}}


def _crawl_in_a_process(
    name: str, sim_info: dict[str, Any], ranges: list[str], out: Path, profile: bool, sources: str
) -> dict[str, Any]:
    """`crawl_slice` in a new interpreter. Not a multiprocessing child: the crawl starts a process
    pool of its own (the parser of answers over 1 MB), which only an interpreter's own exit shuts
    down; a multiprocessing child waits for it forever."""
    args = json.dumps({"name": name, "sim_info": sim_info, "ranges": ranges, "out": str(out),
                       "profile": profile, "sources": sources})
    done = subprocess.run([sys.executable, "-m", "whoiscrawl.bench.local"], input=args, text=True,
                          stdout=subprocess.PIPE, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":  # one slice's crawl, as _crawl_in_a_process asks for it
    asked = json.loads(sys.stdin.read())
    print(json.dumps(crawl_slice(asked["name"], asked["sim_info"], asked["ranges"], Path(asked["out"]),
                                 asked["profile"], asked["sources"])))
