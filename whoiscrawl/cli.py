"""The `whoiscrawl` command: thin wrappers that parse options and call the library."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from whoiscrawl.dev.cli import app as dev_app
from whoiscrawl.results.tables import bench_table, crawl_table, score_table

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Collect WHOIS/RDAP records for the IPv4 space, completely and politely.",
)
app.add_typer(dev_app, name="dev")

BootstrapOpt = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-url",
        envvar="WHOISCRAWL_BOOTSTRAP_URL",
        help="RFC 9224 ipv4.json (URL or file); default: the bundled IANA snapshot (the real registries)",
    ),
]
RatesOpt = Annotated[
    str | None,
    typer.Option(
        "--rate-limits",
        envvar="WHOISCRAWL_RATE_LIMITS",
        help="Per-registry budgets per egress address, e.g. 'arin=10/s,lacnic=10/m,ripencc=8/s:3'",
    ),
]
BindOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--bind-address",
        envvar="WHOISCRAWL_BIND_ADDRESS",
        help="Local source address to send from; repeat (or space-separate) to use several egress addresses",
    ),
]
ListOpt = Annotated[
    bool,
    typer.Option(
        "--list-children/--no-list-children",
        envvar="WHOISCRAWL_LIST_CHILDREN",
        help="Ask registries that offer it (RFC 9910 rdap-down) for a parent's children instead of "
        "probing its gaps on the grid",
    ),
]
WhoisOpt = Annotated[
    str | None,
    typer.Option(
        "--whois",
        envvar="WHOISCRAWL_WHOIS",
        help="host:port of a port-43 WHOIS server to fall back to for every registry ('real' for theirs)",
    ),
]


JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON line for scripts instead of tables")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display or notes on stderr")]


def _end(doc: dict, as_json: bool, tables: list) -> None:
    """A command's last output: JSON for machines, or tables for people."""
    from whoiscrawl.results.tables import print_tables

    if as_json:
        typer.echo(json.dumps(doc))
    else:
        print_tables(*tables)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(2)


def _whois_servers(whois: str | None) -> dict[str, str]:
    from whoiscrawl.space import REAL_WHOIS_SERVERS, REGISTRIES

    if not whois:
        return {}
    return dict(REAL_WHOIS_SERVERS) if whois == "real" else dict.fromkeys(REGISTRIES, whois)


def _egresses(binds: list[str] | None, key: str) -> list:
    from whoiscrawl.registry import Egress

    return [Egress(b, b) for b in binds] if binds else [Egress(key)]


@app.command()
def crawl(
    ranges: Annotated[list[str], typer.Argument(help="CIDRs or a-b ranges to crawl; 'all' = IPv4")],
    out: Annotated[Path, typer.Option(help="Results, one JSON record a line")] = Path("whois.jsonl"),
    strategy: Annotated[str, typer.Option(help="sweep (complete) or sample (the 2016 method)")] = "sweep",
    resolution: Annotated[int, typer.Option(help="Gap-probe grid inside parents, as a prefix length")] = 24,
    samples: Annotated[int, typer.Option(help="sample: probes per /16 shard (0: the 2016 density)")] = 0,
    exclude: Annotated[list[str] | None, typer.Option(help="Ranges to leave out")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the crawl whose results are in --out")] = False,
    concurrency: Annotated[int, typer.Option(help="Shards walked at once")] = 64,
    bootstrap_url: BootstrapOpt = None,
    rate_limits: RatesOpt = None,
    bind_address: BindOpt = None,
    whois: WhoisOpt = None,
    list_children: ListOpt = True,
    progress: Annotated[bool, typer.Option(help="Live progress display")] = True,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run a whole crawl in this process, with no Kafka or Redis; Ctrl-C and --resume continue it."""
    from whoiscrawl.local import LocalCrawl, LocalCrawlError
    from whoiscrawl.rates import LimitError, parse_limits
    from whoiscrawl.space import SpaceError, fetch_bootstrap

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        job = LocalCrawl(
            ranges=ranges,
            out=out,
            bootstrap=asyncio.run(fetch_bootstrap(bootstrap_url)),
            limits=parse_limits(rate_limits),
            excludes=exclude or [],
            strategy=strategy,
            resolution=resolution,
            samples=samples,
            concurrency=concurrency,
            egresses=_egresses(bind_address, "local"),
            whois_servers=_whois_servers(whois),
            resume=resume,
            list_children=list_children,
        )
        display = ProgressDisplay() if progress and not quiet and sys.stderr.isatty() else None
        try:
            summary = asyncio.run(job.run(display.update if display else None))
        finally:
            if display:
                display.stop()
    except (LocalCrawlError, LimitError, SpaceError) as exc:
        _fail(str(exc))
        return
    _end(summary, as_json, [crawl_table(summary)])
    if not summary["complete"]:
        typer.secho(f"interrupted: rerun with --resume --out {out} to continue", fg="yellow", err=True)
        raise typer.Exit(130)


KafkaOpt = Annotated[
    str,
    typer.Option("--kafka-bootstrap", envvar="WHOISCRAWL_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers"),
]
RedisOpt = Annotated[str, typer.Option("--redis-url", envvar="WHOISCRAWL_REDIS_URL", help="Redis URL")]
CrawlOpt = Annotated[str, typer.Option("--crawl", envvar="WHOISCRAWL_CRAWL", help="Crawl name")]
PrefixOpt = Annotated[str, typer.Option("--topic-prefix", envvar="WHOISCRAWL_TOPIC_PREFIX")]


@app.command()
def plan(
    ranges: Annotated[list[str], typer.Argument(help="CIDRs or a-b ranges; 'all' = IPv4")],
    crawl: CrawlOpt,
    kafka_bootstrap: KafkaOpt,
    redis_url: RedisOpt,
    topic_prefix: PrefixOpt = "whoiscrawl.",
    strategy: Annotated[str, typer.Option(help="sweep or sample")] = "sweep",
    resolution: Annotated[int, typer.Option(help="Gap-probe grid, as a prefix length")] = 24,
    samples: Annotated[int, typer.Option(help="sample: probes per shard (0: 2016 density)")] = 0,
    shard_prefix: Annotated[
        int | None, typer.Option(help="Shard size, as a prefix length (default: /16-/24, 256+ shards)")
    ] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Ranges to leave out")] = None,
    partitions: Annotated[int, typer.Option(help="Work topic partitions (the most workers useful)")] = 32,
    force: Annotated[bool, typer.Option(help="Publish again even if this crawl was planned")] = False,
) -> None:
    """Cut the space into shards and send them to the crawl's work topic (once)."""
    from whoiscrawl import queue
    from whoiscrawl.publish import publish_plan
    from whoiscrawl.space import SpaceError, plan_crawl
    from whoiscrawl.store import RedisStore

    try:
        plan = plan_crawl(
            crawl=crawl, ranges=ranges, excludes=exclude or [], strategy=strategy,
            resolution=resolution, shard_prefix=shard_prefix, samples=samples,
        )
    except SpaceError as exc:
        _fail(str(exc))
        return
    store = RedisStore(redis_url, crawl)
    if store.progress().shards_total and not force:
        typer.echo(json.dumps({"crawl": crawl, "planned": False, "reason": "already planned"}))
        return
    sent, (shards_total, addresses_total) = publish_plan(
        plan, bootstrap=kafka_bootstrap, prefix=topic_prefix, store=store,
        config=queue.kafka_config_from(os.environ), partitions=partitions,
    )
    typer.echo(json.dumps({"crawl": crawl, "planned": True, "shards": sent, "addresses": plan.addresses,
                           "shards_total": shards_total, "addresses_total": addresses_total}))


@app.command("rebuild-store")
def rebuild_store(
    crawl: CrawlOpt,
    kafka_bootstrap: KafkaOpt,
    redis_url: RedisOpt,
    topic_prefix: PrefixOpt = "whoiscrawl.",
    resolution: Annotated[
        int, typer.Option(help="The gap-probe grid, as a prefix length, if no shard says")
    ] = 24,
) -> None:
    """Rebuild a crawl's Redis state from its topics (workers do it themselves when Redis lost it)."""
    from whoiscrawl import queue, recover

    config = queue.kafka_config_from(os.environ)
    owner = f"rebuild-store-{os.getpid()}"
    rebuilt = recover.rebuild(redis_url, kafka_bootstrap, topic_prefix, crawl, owner, config, resolution)
    if rebuilt is None:
        typer.echo(json.dumps({"crawl": crawl, "rebuilt": False, "reason": "another process rebuilds it"}))
        raise typer.Exit(1)
    typer.echo(json.dumps({"crawl": crawl, "blocks": rebuilt.blocks, "shards": rebuilt.shards,
                           "done": rebuilt.done}))


@app.command()
def worker(
    crawl: CrawlOpt,
    kafka_bootstrap: KafkaOpt,
    redis_url: RedisOpt,
    topic_prefix: PrefixOpt = "whoiscrawl.",
    bootstrap_url: BootstrapOpt = None,
    rate_limits: RatesOpt = None,
    bind_address: BindOpt = None,
    whois: WhoisOpt = None,
    list_children: ListOpt = True,
    egress_key: Annotated[
        str | None,
        typer.Option(
            envvar="WHOISCRAWL_EGRESS_KEY",
            help="Name of the public address this worker egresses from (default: host name)",
        ),
    ] = None,
    egress_share: Annotated[
        float, typer.Option(envvar="WHOISCRAWL_EGRESS_SHARE", help="Addresses behind the egress key")
    ] = 1.0,
    metrics_port: Annotated[
        int, typer.Option(envvar="WHOISCRAWL_METRICS_PORT", help="/metrics, /healthz, /readyz; 0 = off")
    ] = 9090,
    grace_seconds: Annotated[
        float, typer.Option(envvar="WHOISCRAWL_GRACE_SECONDS", help="Drain time after SIGTERM")
    ] = 20.0,
) -> None:
    """Take shards from the crawl's work topic until stopped (what the operator runs in pods)."""
    import socket

    from whoiscrawl.queue import kafka_config_from
    from whoiscrawl.rates import LimitError, parse_limits
    from whoiscrawl.worker.runner import WorkerConfig, run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        limits = parse_limits(rate_limits)
    except LimitError as exc:
        _fail(str(exc))
        return
    config = WorkerConfig(
        crawl=crawl,
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        limits=limits,
        topic_prefix=topic_prefix,
        bootstrap_url=bootstrap_url,
        egresses=_egresses(bind_address, egress_key or socket.gethostname()),
        egress_share=egress_share,
        whois_servers=_whois_servers(whois),
        list_children=list_children,
        metrics_port=metrics_port or None,
        grace_seconds=grace_seconds,
        kafka_config=kafka_config_from(os.environ),
    )
    raise typer.Exit(run_worker(config))


def _bench_chaos(scenario: str, workers: int, scale: float, blows: tuple[int, int, int],
                 registry_faults: bool, restarts: tuple[int, int], static_membership: bool,
                 sim_options: tuple[str, ...]) -> None:
    """`bench --chaos`: on a Kafka and Redis of its own, so it may restart them (blows: kills,
    terms, pauses of workers; restarts: of the broker, of Redis with its data lost)."""
    from whoiscrawl import bench as b
    from whoiscrawl.chaos import Chaos, chaos_bench, owned_services
    from whoiscrawl.dev.services import restart_kafka, restart_redis

    kills, terms, pauses = blows
    with owned_services() as running:
        weather = Chaos(kills, terms, pauses, registry_faults=registry_faults, broker_restarts=restarts[0],
                        restart_broker=functools.partial(restart_kafka, running),
                        redis_losses=restarts[1], restart_redis=functools.partial(restart_redis, running))
        figures = chaos_bench(scenario, workers, scale, running.kafka_bootstrap, running.redis_url,
                              b.workdir(), weather, static_membership, sim_options)
    typer.echo(json.dumps(figures))


SCALES = {"quick": 100.0, "standard": 100.0, "full": 1.0}


@app.command()
def bench(
    scenario: Annotated[str, typer.Option(help="Simulator scenario: quick, standard")] = "quick",
    strategy: Annotated[str, typer.Option(help="sweep or sample")] = "sweep",
    workers: Annotated[int, typer.Option(help="Worker processes")] = 2,
    egress: Annotated[
        list[int] | None,
        typer.Option(
            help="Distinct source addresses; repeat (--egress 1 --egress 2 --egress 4) for a scaling series"
        ),
    ] = None,
    resolution: Annotated[int, typer.Option(help="Gap-probe grid, as a prefix length")] = 24,
    time_scale: Annotated[float | None, typer.Option(help="Simulator speed-up of its rate limits")] = None,
    compare_sample: Annotated[
        bool, typer.Option(help="After a sweep, run sample with the same number of lookups and report both")
    ] = True,
    compare_grid: Annotated[
        bool, typer.Option(help="After a sweep, run it again without listings (the /24 grid alone)")
    ] = True,
    micro: Annotated[
        bool, typer.Option(help="Also the known-block check and Redis memory benchmarks")
    ] = False,
    chaos: Annotated[
        bool, typer.Option(help="Crawl with and without SIGKILLs and SIGTERMs of workers; what was lost")
    ] = False,
    kills: Annotated[int, typer.Option(help="With --chaos: workers SIGKILLed (listers first)")] = 20,
    terms: Annotated[int, typer.Option(help="With --chaos: workers SIGTERMed (spot notices)")] = 3,
    pauses: Annotated[
        int, typer.Option(help="With --chaos: workers SIGSTOPped 15-40 s, then resumed (lease holders first)")
    ] = 0,
    registry_faults: Annotated[
        bool, typer.Option(help="With --chaos: registries serve 429 storms, bans, 5xx, timeouts meanwhile")
    ] = True,
    static_membership: Annotated[
        bool, typer.Option(help="Workers keep a group.instance.id per slot; replacements rejoin as the dead")
    ] = False,
    broker_restarts: Annotated[
        int, typer.Option(help="With --chaos: Kafka broker restarts mid-crawl (on the bench's own broker)")
    ] = 1,
    redis_losses: Annotated[
        int, typer.Option(help="With --chaos: Redis restarts with its data lost, mid-crawl")
    ] = 1,
    row_limit: Annotated[
        int | None, typer.Option(help="The simulator's relation-search row limit (default RIPE NCC's 10,000)")
    ] = None,
    arin_relation_search: Annotated[
        bool, typer.Option(help="The simulator's ARIN answers RFC 9910 relation search (else WHOIS r > only)")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Crawl a simulator scenario with N real workers, real Kafka and Redis; a table (--json: one JSON
    line) of figures per egress count, with the baselines (sample, grid alone) run beside it under
    "compare". With --chaos: one JSON line, the crawl under kills, spot notices and pauses beside the
    same crawl without."""

    scale = time_scale or SCALES.get(scenario, 100.0)
    logging.basicConfig(level=logging.WARNING)
    from whoiscrawl.bench import simulator_options

    sim_options = simulator_options(row_limit, arin_relation_search)
    if chaos:
        _bench_chaos(scenario, workers, scale, (kills, terms, pauses), registry_faults,
                     (broker_restarts, redis_losses), static_membership, sim_options)
        return
    _bench_fleet(scenario, strategy, workers, egress or [1], resolution, scale,
                 (compare_sample, compare_grid), micro, as_json, sim_options)


def _bench_fleet(scenario: str, strategy: str, workers: int, egresses: list[int], resolution: int,
                 scale: float, compare: tuple[bool, bool], micro: bool, as_json: bool,
                 sim_options: tuple[str, ...]) -> None:
    """The fleet bench: a crawl (and its baselines) per egress count, then the micro benchmarks."""
    from whoiscrawl import bench as b

    with b.bench_services() as (kafka, redis_url):
        for k in egresses:
            crawl = functools.partial(b.fleet_crawl, scenario, workers=workers, egress=k,
                                      resolution=resolution, time_scale=scale, kafka=kafka,
                                      redis_url=redis_url, sim_options=sim_options)
            doc = b.with_baselines(crawl, strategy, *compare)
            _end(doc, as_json, [bench_table(doc)])
        if micro:
            for micro_doc in (b.index_benchmark(), b.redis_memory_benchmark(redis_url)):
                _end(micro_doc, True, [])


@app.command()
def demo(
    scenario: Annotated[str, typer.Option(help="Simulator scenario")] = "quick",
    out: Annotated[Path, typer.Option(help="Where the results go (the default folder is git-ignored)")]
    = Path(".whoiscrawl/demo/results.jsonl"),
    time_scale: Annotated[float, typer.Option(help="Simulator speed-up of its rate limits")] = 100.0,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The main job on embedded defaults: a local crawl of the bundled simulator, scored against truth."""
    import tempfile

    from whoiscrawl import bench as b
    from whoiscrawl.local import LocalCrawl
    from whoiscrawl.sim.score import score
    from whoiscrawl.space import fetch_bootstrap

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    out.with_name(out.name + ".checkpoint.json").unlink(missing_ok=True)
    log = Path(tempfile.mkdtemp(prefix="whoiscrawl-demo-")) / "requests.jsonl"
    note = (lambda _text: None) if quiet else functools.partial(typer.secho, err=True)
    note(f"starting the registry simulator ({scenario}, rate limits x{time_scale:g})")
    with b.simulator(scenario, time_scale, log) as sim:
        note(f"crawling {len(sim.ranges)} ranges through {sim.bootstrap_url}")
        job = LocalCrawl(
            ranges=sim.ranges,
            out=out,
            bootstrap=asyncio.run(fetch_bootstrap(sim.bootstrap_url)),
            limits=sim.limits(),
            whois_servers=_whois_servers(sim.whois),
        )
        display = ProgressDisplay() if not quiet and sys.stderr.isatty() else None
        try:
            summary = asyncio.run(job.run(display.update if display else None))
        finally:
            if display:
                display.stop()
    figures = score(scenario, str(out), str(log), resolution=24, time_scale=time_scale)
    keep = ("complete", "wall_s", "lookups", "blocks", "errors", "rate_limited", "out")
    doc = {"crawl": {k: summary[k] for k in keep}, "score": figures}
    _end(doc, as_json, [crawl_table(summary, f"Crawl of the simulator's {scenario}"), score_table(figures)])


class ProgressDisplay:
    """The live view of a local crawl: coverage bar, lookups, blocks, per-registry rates, ETA."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]coverage"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
        )
        self._task = self._progress.add_task("crawl", total=1, info="")
        self._started = time.monotonic()
        self._progress.start()

    def update(self, counters: object, by_registry: dict[str, int]) -> None:
        from whoiscrawl.store import Progress

        assert isinstance(counters, Progress)
        elapsed = max(1e-3, time.monotonic() - self._started)
        rates = " ".join(f"{r}:{n / elapsed:.1f}/s" for r, n in sorted(by_registry.items()))
        info = (
            f"lookups {counters.lookups}  blocks {counters.blocks}  shards {counters.shards_done}/"
            f"{counters.shards_total}  429s {counters.rate_limited}  errors {counters.errors}  {rates}"
        )
        self._progress.update(
            self._task, total=max(1, counters.addresses_total), completed=counters.addresses_done, info=info
        )

    def stop(self) -> None:
        self._progress.stop()


def _register_parts() -> None:
    # Each part registers its own commands.
    from whoiscrawl.operator.cli import app as operator_app
    from whoiscrawl.results.cli import register as register_results
    from whoiscrawl.sim.cli import app as sim_app

    register_results(app)

    app.add_typer(sim_app, name="sim")
    app.add_typer(operator_app, name="operator")


_register_parts()
