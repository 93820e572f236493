"""`whoiscrawl bench-refresh`: a first crawl of a scenario from its files, then a refresh a day for
several simulated days, each day's requests and wall time beside the first crawl's (JSON lines); the
local crawl's (`run`), or a fleet's (`run_fleet`: real workers, Kafka and Redis, a generation a day)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from whoiscrawl.bench.common import Simulator, simulator, work_folder
from whoiscrawl.bench.fleet import (
    SWEEP,
    THREE_WORKERS,
    FleetRun,
    FleetShape,
    bench_services,
    forget,
    generation,
    phases,
)
from whoiscrawl.local import LocalCrawl
from whoiscrawl.refresh import Refresh
from whoiscrawl.results.diff import KINDS
from whoiscrawl.rirs import REGISTRIES, published_at
from whoiscrawl.settings import CrawlSettings
from whoiscrawl.sim import scenarios
from whoiscrawl.sim.churn import Churn
from whoiscrawl.sim.published import catalogue
from whoiscrawl.sim.score import score
from whoiscrawl.space import fetch_bootstrap


def requests(log: str) -> int:
    """Requests the simulated registries were sent (file downloads left out), from their log."""
    with open(log, encoding="utf-8") as fh:
        return sum(1 for line in fh if '"protocol":"file"' not in line)


def breakdown(log: str, since: int) -> dict[str, int]:
    """Requests logged after the first `since` (file downloads left out), by registry, kind (`rdap`,
    `whois`, `rdap-down`: a listing) and answer (`ok`, `rate_limited`...): where the requests went."""
    counts: Counter[str] = Counter()
    with open(log, encoding="utf-8") as fh:
        asked = (json.loads(line) for line in fh if '"protocol":"file"' not in line)
        for n, doc in enumerate(asked):
            if n >= since:
                counts[f"{doc['registry']} {doc['protocol']} {doc['outcome']}"] += 1
    return dict(sorted(counts.items()))


def settled(log: str, since: int, at_least: int, wait_s: float = 15.0) -> int:
    """Requests logged since `since`, once the simulator's log (written every second) holds at
    least the `at_least` the crawler counted, or `wait_s` passed."""
    deadline = time.monotonic() + wait_s
    while (n := requests(log) - since) < at_least and time.monotonic() < deadline:
        time.sleep(0.2)
    return n


def _job(sim: Simulator, out: Path) -> LocalCrawl:
    settings = CrawlSettings(whois_servers=dict.fromkeys(REGISTRIES, sim.whois),
                             sources=frozenset({"stats", "dumps", "live"}), files_base=sim.files_base,
                             accept_dump_terms=frozenset(REGISTRIES), verify=0.001, fill_redacted=True)
    return LocalCrawl(ranges=sim.ranges, out=out, bootstrap=asyncio.run(fetch_bootstrap(sim.bootstrap_url)),
                      limits=sim.limits(), settings=settings)


def advance(sim: Simulator) -> int:
    """The simulator a day on, its new files made before the refresh is timed (a mirror has them
    ready; making them is the simulator's cost, not the refresh's); the changes it made."""
    root = sim.files_base.removesuffix("/published")
    ask = urllib.request.Request(f"{root}/sim/advance", method="POST")
    with urllib.request.urlopen(ask, timeout=600) as r:
        made = len(json.load(r)["changes"])
    for item in catalogue():
        with urllib.request.urlopen(published_at(item.url, sim.files_base), timeout=600) as r:
            while r.read(1 << 20):
                pass
    return made


def _figures(name: str, day: int, out: Path, churn: str | None) -> dict[str, Any]:
    f = score(scenarios.get(name, day=day, churn=Churn.parse(churn) if churn else None), out)
    return {"recall": f["recall"],
            "recall_by_registry": {r: v["recall"] for r, v in f["recall_by_registry"].items()},
            "holder_by_registry": {r: v["holder"] for r, v in f["field_accuracy"].items()}}


def run(scenario: str, days: int, time_scale: float, churn: str | None = None) -> Iterator[dict[str, Any]]:
    """One JSON-able line for the first crawl, then one a day (`churn`: `sim serve --churn`)."""
    work = work_folder("refresh")
    extra = ["--churn", churn] if churn else []
    with simulator(scenario, time_scale, work / "requests.jsonl", extra=extra) as sim:
        previous, started = work / "day0.jsonl", time.monotonic()
        first = asyncio.run(_job(sim, previous).run())
        wall = round(time.monotonic() - started, 1)
        base: dict[str, Any] = {"requests": settled(sim.log, 0, int(first["lookups"])), "wall_s": wall,
                                "by_registry_kind": breakdown(sim.log, 0)}
        yield {"scenario": scenario, "day": 0, "churn": churn, "first_crawl": base,
               "complete": first["complete"], **_figures(scenario, 0, previous, churn), "workdir": str(work)}
        for day in range(1, days + 1):
            changes, before = advance(sim), requests(sim.log)
            out, started = work / f"day{day}.jsonl", time.monotonic()
            summary = asyncio.run(Refresh(_job(sim, out), previous).run())
            wall, asked = time.monotonic() - started, settled(sim.log, before, int(summary["lookups"]))
            yield {"scenario": scenario, "day": day, "simulated_changes": changes, "requests": asked,
                   "wall_s": round(wall, 1), "requests_vs_first": round(asked / max(base["requests"], 1), 4),
                   "wall_vs_first": round(wall / max(base["wall_s"], 1e-3), 4), "first_crawl": base,
                   "change_set": {k: summary["changes"][k] for k in KINDS},
                   "by_registry_kind": breakdown(sim.log, before), "asked_again": summary.get("asked_again"),
                   "lookups_by_registry": summary["lookups_by_registry"], "phases_s": summary.get("phases_s"),
                   "staging_rss_mb": summary.get("staging_rss_mb"),
                   **_figures(scenario, day, out, churn)}
            previous = out


FROM_FILES = frozenset({"stats", "dumps", "live"})


def run_fleet(scenario: str, days: int, time_scale: float, churn: str | None = None,
              shape: FleetShape = THREE_WORKERS, ranges: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """`run`'s lines for a fleet: generation 1 crawled by real workers from the scenario's files (the
    bench's Kafka and Redis), then each day a generation refreshing the one before (`worker
    --previous`, as the operator runs a scheduled crawl's), its load's `refresh` figures beside;
    `ranges`: a part of the scenario's (recall is then of the whole scenario's truth)."""
    work = work_folder("refresh-fleet")
    settings = replace(SWEEP, sources=FROM_FILES)
    extra, log = ["--churn", churn] if churn else [], work / "requests.jsonl"
    with bench_services() as data, simulator(scenario, time_scale, log, extra=extra) as sim:
        sim = Simulator(sim.proc, {**sim.info, "ranges": ranges}) if ranges else sim
        kept: list[str] = []
        try:
            first = generation(sim, data, _folder(work, 1), settings, shape)
            kept.append(first.crawl)
            base: dict[str, Any] = {"requests": settled(sim.log, 0, first.progress.lookups),
                                    "wall_s": round(first.wall_s, 1), "finished": first.finished,
                                    "by_registry_kind": breakdown(sim.log, 0),
                                    "phases": phases(first, first.loaded)}
            yield {"scenario": scenario, "fleet": shape.workers, "day": 0, "churn": churn,
                   "first_crawl": base, **_figures(scenario, 0, first.results, churn), "workdir": str(work)}
            for day in range(1, days + 1):
                changes, before = advance(sim), requests(sim.log)
                run = generation(sim, data, _folder(work, day + 1), settings, shape, previous=kept[-1])
                kept.append(run.crawl)
                yield _fleet_day(scenario, day, churn, (changes, before), run, base, sim, data[1])
                forget(data, kept.pop(0))  # the previous generation, once refreshed from
        finally:
            for crawl in kept:
                forget(data, crawl)


def _folder(work: Path, generation_number: int) -> Path:
    folder = work / f"g{generation_number}"
    folder.mkdir()
    return folder


def _fleet_day(scenario: str, day: int, churn: str | None, made: tuple[int, int], run: FleetRun,
               base: dict[str, Any], sim: Simulator, redis_url: str) -> dict[str, Any]:
    """A day's line of `run_fleet`: `made` the simulator's changes that day and its log's length
    before the generation ran."""
    changes, before = made
    asked = settled(sim.log, before, run.progress.lookups)
    loaded = run.loaded or {}
    return {"scenario": scenario, "day": day, "simulated_changes": changes, "requests": asked,
            "wall_s": round(run.wall_s, 1), "finished": run.finished,
            "requests_vs_first": round(asked / max(base["requests"], 1), 4),
            "wall_vs_first": round(run.wall_s / max(base["wall_s"], 1e-3), 4), "first_crawl": base,
            "refresh": loaded.get("refresh"), "by_registry_kind": breakdown(sim.log, before),
            "phases": phases(run, loaded),
            **_figures(scenario, day, run.results, churn)}
