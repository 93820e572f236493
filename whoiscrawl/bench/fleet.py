"""Benchmarks that print one JSON line: fleet crawls against the simulator, and the store's hot paths."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import redis

from whoiscrawl import queue
from whoiscrawl.bench.common import Peaks, Simulator, serve_options, simulator, stop, work_folder
from whoiscrawl.blocks import KnownBlocks, encode_block
from whoiscrawl.dev import services
from whoiscrawl.keys import Keys
from whoiscrawl.publish import publish_plan
from whoiscrawl.rates import Limit, projected_real_hours
from whoiscrawl.records import NetworkRecord
from whoiscrawl.rirs import SOURCES
from whoiscrawl.settings import DEBUG_LOGGERS_ENV, KAFKA_PROPERTY_PREFIX, CrawlSettings, env_name
from whoiscrawl.sim.score import score
from whoiscrawl.sources import fill
from whoiscrawl.space import plan_crawl
from whoiscrawl.store.redis_admin import RedisCrawlAdmin
from whoiscrawl.strategy import Answer

# What a worker logs at the end of its drain (worker/runner.py): how long it took, by its own clock.
DRAIN_LOGGED = re.compile(r"stopped in ([0-9.]+)s")


@dataclass
class Fleet:
    """Real `whoiscrawl worker` processes, each with its own source address on loopback."""

    crawl: str
    kafka: str
    redis_url: str
    sim: Simulator
    logdir: Path
    egress: int = 1  # distinct source addresses the fleet shares
    workers: int = 1  # how many workers share them (replacements take a dead worker's share)
    grace_seconds: float = 10.0
    list_children: bool = True
    # Static membership: each worker a fixed `group.instance.id` (as a pod's name), and a worker
    # started in a dead one's slot rejoins as that member, without a rebalance.
    static: bool = False
    metrics_port: int = 0  # worker i serves /metrics on metrics_port + i (0: off)
    sources: str = "live"  # the workers' --sources: with files, the simulator's (every dump's terms accepted)
    previous: str | None = None  # the workers' --previous: the generation this crawl refreshes
    debug_loggers: tuple[str, ...] = ()  # the workers log these at DEBUG too (`DEBUG_LOGGERS_ENV`)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)  # the member slot of each process
    _logs: list[IO[bytes]] = field(default_factory=list)

    def addresses(self, i: int) -> list[str]:
        """Worker i's source addresses: its share of the fleet's `egress` addresses."""
        pool = [f"127.0.{10 + k}.1" for k in range(self.egress)]
        mine = [a for k, a in enumerate(pool) if k % self.workers == i % self.workers]
        return mine or [pool[i % self.egress]]

    def start(self, n: int = 1, slot: int | None = None) -> None:
        """Start n workers; `slot`: in a dead worker's slot (its replacement), else new ones."""
        for _ in range(n):
            i = len(self.procs)
            self.slots.append(len(set(self.slots)) if slot is None else slot)
            env = dict(os.environ)
            if self.static:
                env[KAFKA_PROPERTY_PREFIX + "GROUP_INSTANCE_ID"] = f"{self.crawl}-worker-{self.slots[-1]}"
            if self.debug_loggers:
                env[DEBUG_LOGGERS_ENV] = ",".join(self.debug_loggers)
            cmd = [
                sys.executable,
                "-m",
                "whoiscrawl",
                "worker",
                "--crawl",
                self.crawl,
                "--kafka-bootstrap",
                self.kafka,
                "--redis-url",
                self.redis_url,
                "--bootstrap-url",
                self.sim.bootstrap_url,
                "--rate-limits",
                self.sim.rate_limits_arg(),
                *(arg for a in self.addresses(i) for arg in ("--bind-address", a)),
                "--whois",
                self.sim.whois,
                "--metrics-port",
                str(self.metrics_port + i if self.metrics_port else 0),
                "--grace-seconds",
                str(self.grace_seconds),
                "--list-children" if self.list_children else "--no-list-children",
                "--sources",
                self.sources,
                *(("--files-base", self.sim.files_base, "--accept-dump-terms", "all")
                  if self.sources != "live" else ()),
                *(("--previous", self.previous) if self.previous else ()),
            ]
            log = (self.logdir / f"worker-{i}.log").open("wb")
            self._logs.append(log)
            self.procs.append(
                subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
            )

    def kill(self, i: int) -> None:
        os.killpg(self.procs[i].pid, signal.SIGKILL)
        self.procs[i].wait()

    def terminate(self, i: int, timeout: float = 60) -> tuple[int, float]:
        """SIGTERM one worker; (exit code, seconds it took to drain by its own log: `stopped in
        N s`, timed from the signal's handling, not from this busy machine's scheduling of us).
        A worker that logged no drain counts as never drained (infinity)."""
        self.procs[i].send_signal(signal.SIGTERM)
        code = self.procs[i].wait(timeout)
        self._logs[i].flush()
        drains = DRAIN_LOGGED.findall((self.logdir / f"worker-{i}.log").read_text(errors="replace"))
        return code, float(drains[-1]) if drains else math.inf

    def stop(self) -> None:
        for proc in self.procs:
            stop(proc, self.grace_seconds + 10)
        for log in self._logs:
            log.close()


@dataclass(frozen=True)
class FleetShape:
    """A bench fleet: how many workers, the source addresses they share, how they join the group."""

    workers: int = 3
    egress: int = 1  # distinct source addresses the fleet shares
    static: bool = False  # each worker a fixed group.instance.id (Fleet.static)
    metrics_port: int = 0  # worker i serves /metrics on metrics_port + i (0: off)
    debug_loggers: tuple[str, ...] = ()  # the workers log these at DEBUG too (`DEBUG_LOGGERS_ENV`)


SWEEP = CrawlSettings()  # a sweep at the contract's defaults
LIVE_ONLY = frozenset({"live"})


def sources_text(sources: frozenset[str]) -> str:
    """A crawl's sources as the workers' --sources option spells them (`stats,dumps,live`)."""
    return ",".join(s for s in SOURCES if s in sources)
THREE_WORKERS = FleetShape()


@dataclass
class FleetRun:
    crawl: str
    results: Path
    wall_s: float
    finished: bool
    progress: Any  # whoiscrawl.records.Progress
    shards: int
    # Unfinished: the store's view of the shards not done (the first UNFINISHED_SHOWN), each with
    # its work message's place and whether the worker group committed past it.
    unfinished: list[dict[str, Any]] = field(default_factory=list)
    peaks: Peaks = field(default_factory=Peaks.empty)  # memory, sampled at each poll
    started_at: float = 0.0  # when the workers were started (epoch seconds: the load's phases' clock)
    loaded: dict[str, Any] | None = None  # the files' load's figures, its fill's summed (None: no load)


UNFINISHED_SHOWN = 20


def unfinished_shards(admin: RedisCrawlAdmin, kafka: str, prefix: str, crawl: str) -> list[dict[str, Any]]:
    """Why a crawl did not finish, read before it is deleted: each shard not done in the store
    (span, owner, checkpoint, listings held) with its work message's partition and offset, and
    whether the group's committed offset is past it (committed yet not done: a shard nobody reads
    again, so the crawl cannot finish)."""
    left = {view["shard"]: view for view in admin.unfinished(UNFINISHED_SHOWN)}
    committed = queue.committed_offsets(kafka, prefix, crawl)
    for partition, offset, shard in queue.iter_work(kafka, prefix, crawl):
        if shard.shard_id in left:
            left[shard.shard_id].update(
                partition=partition, offset=offset, committed=offset < committed.get(partition, 0))
    return list(left.values())


def crawl_with_fleet(
    sim: Simulator,
    kafka: str,
    redis_url: str,
    workdir: Path,
    settings: CrawlSettings = SWEEP,
    shape: FleetShape = THREE_WORKERS,
    during: Callable[[Fleet, Any], None] | None = None,
    timeout: float = 1800,
) -> FleetRun:
    """Plan the simulator's ranges (`settings`: strategy, resolution, samples, listings, the
    topics' replicas), run the
    fleet's real workers until every shard is done, export the results; the crawl's topics and
    Redis keys deleted after.

    `during(fleet, progress)` is called at every poll: tests use it to kill or stop workers."""
    run = generation(sim, (kafka, redis_url), workdir, settings, shape, None, during, timeout)
    forget((kafka, redis_url), run.crawl)
    return run


def generation(
    sim: Simulator,
    data: tuple[str, str],
    workdir: Path,
    settings: CrawlSettings = SWEEP,
    shape: FleetShape = THREE_WORKERS,
    previous: str | None = None,
    during: Callable[[Fleet, Any], None] | None = None,
    timeout: float = 1800,
) -> FleetRun:
    """`crawl_with_fleet`'s crawl (`data`: Kafka's bootstrap and Redis' URL), its topics and Redis
    keys kept (`forget` them): a scheduled crawl's generation, which the next refreshes; with
    `previous`, a refresh of that one's (the workers' `--previous`, as the operator runs them)."""
    kafka, redis_url = data
    crawl = f"{settings.strategy}-{os.getpid()}-{random.randrange(1 << 30):x}"
    plan = plan_crawl(
        crawl=crawl, ranges=sim.ranges, strategy=settings.strategy, resolution=settings.resolution,
        samples=settings.samples,
    )
    admin = RedisCrawlAdmin(redis_url, crawl)
    publish_plan(plan, bootstrap=kafka, prefix="whoiscrawl.", store=admin, partitions=32,
                 topics=queue.TopicSettings(settings.topic_replication_factor))
    fleet = Fleet(
        crawl, kafka, redis_url, sim, workdir, shape.egress, shape.workers,
        list_children=settings.list_children, static=shape.static, metrics_port=shape.metrics_port,
        debug_loggers=shape.debug_loggers,
        sources=sources_text(settings.sources), previous=previous,
    )
    started, started_at = time.monotonic(), time.time()
    fleet.start(shape.workers)
    finished, peaks = False, Peaks.empty()
    try:
        while time.monotonic() - started < timeout:
            peaks.sample([p.pid for p in fleet.procs], int(admin.client.info("memory")["used_memory"]))
            progress = admin.progress()
            # No total: Redis lost the crawl and is not rebuilt yet, not a crawl with nothing to do.
            if progress.shards_total and progress.shards_done >= progress.shards_total:
                finished = True
                break
            if during:
                during(fleet, progress)
            time.sleep(0.3)
        wall = time.monotonic() - started
    finally:
        fleet.stop()
    results = workdir / f"{crawl}.results.jsonl"
    with results.open("w") as fh:
        for record in queue.iter_results(kafka, "whoiscrawl.", crawl):
            fh.write(record.to_json().decode() + "\n")
    unfinished = [] if finished else unfinished_shards(admin, kafka, "whoiscrawl.", crawl)
    return FleetRun(crawl, results, wall, finished, admin.progress(), len(plan.shards), unfinished, peaks,
                    started_at, fill.loaded(admin))


def phases(run: FleetRun, loaded: dict[str, Any] | None) -> dict[str, float]:
    """Where a generation's wall went: the workers' start until the load began (`start_up`: the
    process, its statistics, Kafka's group), each part of the load as its loader timed it, and from
    the load's end until every shard was done (`after_load`: the walk and the lag the bench waits
    on). Empty if the load kept no phases."""
    got = dict((loaded or {}).get("phases") or {})
    began, ended = got.pop("started_at", None), got.pop("ended_at", None)
    if began is None or ended is None:
        return {}
    return {"start_up": round(began - run.started_at, 2), **got, "load": round(ended - began, 2),
            "after_load": round(run.started_at + run.wall_s - ended, 2)}


def load_figures(run: FleetRun) -> dict[str, Any]:
    """The files' load of a fleet crawl (`--sources` with files): where its wall went (`phases`), and
    what each dump's fill and freshness sample asked, summed from the workers' batches of it
    (`sources.fill.loaded`): lookups, and batches and lookups by worker."""
    loaded = run.loaded or {}
    return {"phases_s": phases(run, loaded),
            "fill": {r: d.get("freshness") for r, d in sorted((loaded.get("dumps") or {}).items())}}


def forget(data: tuple[str, str], crawl: str) -> None:
    """A crawl's topics and Redis keys deleted (`data`: Kafka's bootstrap and Redis' URL)."""
    queue.delete_topics(data[0], "whoiscrawl.", crawl)
    RedisCrawlAdmin(data[1], crawl).delete_crawl()


def bound_seconds(found_by_registry: dict[str, int], limits: dict[str, Limit], egress: int) -> float:
    """The least time the registries' limits allow for one lookup per found block."""
    return max(
        (
            n / (limits[r].rate_per_s * egress)
            for r, n in found_by_registry.items()
            if r in limits and limits[r].rate_per_s > 0
        ),
        default=0.0,
    )


def _found_by_registry(results: Path) -> dict[str, int]:
    seen: set[tuple[str, str]] = set()
    counts: dict[str, int] = {}
    with results.open("rb") as fh:
        for rec in map(NetworkRecord.from_json, fh):
            key = (rec.registry, rec.handle)
            if key not in seen:
                seen.add(key)
                counts[rec.registry] = counts.get(rec.registry, 0) + 1
    return counts


def fleet_crawl(
    scenario: str,
    settings: CrawlSettings,
    shape: FleetShape,
    time_scale: float,
    kafka: str,
    redis_url: str,
    workdir: Path,
    sim_options: tuple[str, ...] = (),
    timeout: float = 1800,
) -> dict[str, Any]:
    """The benchmark's one run: a fresh simulator (`sim_options`: its `sim serve` options), a fleet
    (its workers reading `settings.sources`) to completion or `timeout` seconds, scored against
    truth; with each worker's peak memory, its staging processes', Redis's and the results' size."""

    log = workdir / "requests.jsonl"
    egress, resolution = shape.egress, settings.resolution
    reads_files = settings.sources != LIVE_ONLY
    with simulator(scenario, time_scale, log, extra=serve_options(reads_files, sim_options)) as sim:
        run = crawl_with_fleet(sim, kafka, redis_url, workdir, settings, shape, timeout=timeout)
        limits = sim.limits()
        relation_search = sim.info.get("relation_search")
        listing_limit = sim.info.get("whois_listing_limit")
    figures = score(scenario, str(run.results), str(log), resolution=resolution, time_scale=time_scale)
    return {
        "strategy": settings.strategy,
        "sources": sources_text(settings.sources),
        "list_children": settings.list_children and settings.strategy == "sweep",
        "workers": shape.workers,
        "egress": egress,
        "resolution": resolution,
        "relation_search": relation_search,  # the simulator's: which registries, the row limit
        "whois_listing_limit": listing_limit,  # the simulator's: networks an ARIN `r >` answers
        "finished": run.finished,
        "wall_s": round(run.wall_s, 2),
        "bound_s": round(bound_seconds(_found_by_registry(run.results), limits, egress), 2),
        "worker_errors": run.progress.errors,
        "shards": run.shards,
        **run.peaks.figures(),
        "results_mb": round(run.results.stat().st_size / 2**20, 1),
        **({"load": load_figures(run)} if run.loaded else {}),
        **figures,
        "real_time": real_time(figures, egress),
        "targets": against_targets(figures),
    }


def real_time(figures: dict[str, Any], egress: int) -> dict[str, Any]:
    """The run's requests per registry (those the simulator answered) at the registries' real
    published limits, not the simulator's time-scaled ones: the projected real wall time."""
    answered = {r: int(u["answered"]) for r, u in (figures.get("utilization") or {}).items()}
    return projected_real_hours(answered, egress)


# The data-plane issue's limits for a `standard` sweep at the default resolution.
TARGETS = {
    "recall_resolution": 0.999,
    "address_coverage": 0.999,
    "wasted_share": 0.01,  # at most, of all lookups
    "rate_limited": 0,  # at most
    "busiest_utilization": 0.85,
    # issue 12: every registry that lists children, at every prefix size; and listings' economy
    "listing_recall_min": 0.999,
    "lookups_per_block": 0.5,  # at most
}
LISTING_REGISTRIES = ("ripencc", "apnic", "afrinic", "arin")  # LACNIC lists nothing: reported apart


def listing_recall_min(figures: dict[str, Any]) -> float | None:
    """The lowest recall of any listing registry in any prefix-size bucket it has networks in."""
    cells = figures.get("recall_by_registry_prefix") or {}
    values = [b["recall"] for r in LISTING_REGISTRIES for b in (cells.get(r) or {}).values()
              if b.get("recall") is not None]
    return min(values) if values else None


def busiest_registry(utilization: dict[str, Any]) -> str | None:
    """The registry whose limit the crawl leaned on longest: most answers per allowed lookup/s."""
    rated = {r: u["answered"] / u["allowed_per_s"] for r, u in utilization.items() if u.get("allowed_per_s")}
    return max(rated, key=rated.__getitem__) if rated else None


def against_targets(figures: dict[str, Any]) -> dict[str, Any]:
    """Each target with the run's figure and whether it was met (None where the run has no figure)."""
    lookups = figures.get("lookups") or 0
    busiest = busiest_registry(figures.get("utilization") or {})
    got = {
        "recall_resolution": figures.get("recall_resolution"),
        "address_coverage": figures.get("address_coverage"),
        "wasted_share": round(figures["wasted_lookups"] / lookups, 4) if lookups else None,
        "rate_limited": figures.get("rate_limited"),
        "busiest_utilization": (figures["utilization"][busiest]["utilization"] if busiest else None),
        "listing_recall_min": listing_recall_min(figures),
        "lookups_per_block": figures.get("lookups_per_block"),
    }
    at_most = {"wasted_share", "rate_limited", "lookups_per_block"}
    out: dict[str, Any] = {"busiest_registry": busiest}
    for name, limit in TARGETS.items():
        value = got[name]
        met = None if value is None else (value <= limit if name in at_most else value >= limit)
        out[name] = {"value": value, "limit": limit, "met": met}
    if lookups and figures.get("wasted_floor") is not None:
        # the share no complete crawl with this many lookups can go below (sim.score.absence_proofs)
        out["wasted_share"]["floor"] = round(figures["wasted_floor"] / lookups, 4)
    return out


SUMMARY = (
    "strategy",
    "sources",
    "list_children",
    "wall_s",
    "bound_s",
    "lookups",
    "blocks_found",
    "recall",
    "recall_resolution",
    "address_coverage",
    "wasted_lookups",
    "lookups_per_block",
    "rate_limited",
    "real_time",
)


def summary(run: dict[str, Any]) -> dict[str, Any]:
    """A baseline's headline figures, to sit beside the run they are compared with."""
    return {k: run.get(k) for k in SUMMARY}


def index_benchmark(blocks: int = 1_000_000, probes: int = 300_000, seed: int = 1) -> dict[str, Any]:
    """Known-block checks per second in one process with `blocks` leaves in the index."""
    rng = random.Random(seed)
    idx = KnownBlocks()
    step = (1 << 32) // blocks
    started = time.perf_counter()
    for i in range(blocks):
        first = i * step + rng.randrange(0, step // 2)
        idx.add(first, first + rng.randrange(0, step // 2), True)
    built = time.perf_counter() - started
    addresses = [rng.randrange(0, 1 << 32) for _ in range(probes)]
    started = time.perf_counter()
    hits = sum(1 for a in addresses if idx.terminal_end(a) is not None)
    elapsed = time.perf_counter() - started
    rate = probes / elapsed
    return {
        "benchmark": "known_block_check",
        "blocks": len(idx),
        "probes": probes,
        "hit_ratio": round(hits / probes, 3),
        "checks_per_s": round(rate),
        "limit_checks_per_s": 100_000,
        "meets_limit": rate >= 100_000,
        "insert_per_s": round(blocks / built),
    }


def redis_memory_benchmark(redis_url: str, blocks: int = 5_000_000) -> dict[str, Any]:
    """Redis memory of a crawl's block log holding `blocks` blocks."""
    crawl = f"mem-{os.getpid()}"
    client = redis.Redis.from_url(redis_url)
    before = int(client.info("memory")["used_memory"])
    key = Keys(crawl).blocks
    step = (1 << 32) // blocks
    started = time.perf_counter()
    for start in range(0, blocks, 10_000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(blocks, start + 10_000)):
            pipe.xadd(key, {"b": encode_block(Answer(i * step, i * step + step // 2, True))})
        pipe.execute()
    elapsed = time.perf_counter() - started
    used = int(client.info("memory")["used_memory"]) - before
    RedisCrawlAdmin(redis_url, crawl).delete_crawl()
    return {
        "benchmark": "redis_block_memory",
        "blocks": blocks,
        "used_bytes": used,
        "bytes_per_block": round(used / blocks, 1),
        "limit_bytes": 1 << 30,
        "meets_limit": used < (1 << 30),
        "write_blocks_per_s": round(blocks / elapsed),
    }


def with_baselines(crawl: Callable[..., dict[str, Any]], settings: CrawlSettings, compare_sample: bool,
                   compare_grid: bool, compare_live: bool = True) -> dict[str, Any]:
    """A fleet crawl, and for a sweep the baselines beside it under "compare": the 2016 sample
    method given as many lookups per shard, and the sweep without listings (the /24 grid alone);
    for a crawl from the published files, the same crawl live only."""
    run = crawl(settings=settings, workdir=work_folder())
    baselines: dict[str, dict[str, Any]] = {}
    sweep = settings.strategy == "sweep"
    if sweep and compare_sample:
        per_shard = max(1, int(run["lookups"] // run["shards"]))
        sample = dataclasses.replace(settings, strategy="sample", samples=per_shard)
        baselines["sample_same_lookups"] = summary(crawl(settings=sample, workdir=work_folder()))
    if sweep and compare_grid:
        grid = dataclasses.replace(settings, list_children=False)
        baselines["grid_only"] = summary(crawl(settings=grid, workdir=work_folder()))
    if compare_live and settings.sources != LIVE_ONLY:  # today's crawl, from no file
        live = dataclasses.replace(settings, sources=LIVE_ONLY)
        baselines["live_only"] = summary(crawl(settings=live, workdir=work_folder()))
    return {**run, "compare": baselines} if baselines else run


@contextlib.contextmanager
def bench_services() -> Iterator[tuple[str, str]]:
    """The user's Kafka and Redis if set in the environment, else fresh ones for this run."""
    kafka, redis_url = os.environ.get(env_name("kafka_bootstrap")), os.environ.get(env_name("redis_url"))
    if kafka and redis_url:
        yield kafka, redis_url
        return
    with services.session(services.CACHE_DIR / "bench-services", ("redis", "kafka")) as running:
        yield running.kafka_bootstrap, running.redis_url
