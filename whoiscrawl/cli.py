"""The `whoiscrawl` command: thin wrappers that parse options and call the library."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from whoiscrawl.dev.cli import app as dev_app
from whoiscrawl.results.tables import bench_table, crawl_table, estimate_table, score_table
from whoiscrawl.settings import DEBUG_LOGGERS_ENV, SETTINGS, CrawlSettings, chosen_sources

if TYPE_CHECKING:  # the bench's modules load only when a bench runs
    from whoiscrawl.bench.chaos import ChaosPlan


class OneLineErrors(TyperGroup):
    """Every command's failure as one line on stderr saying what to fix and a non-zero exit, never a
    traceback: a bad argument or option (exit 2, with the command's --help to read), or an error
    nothing caught (exit 1; WHOISCRAWL_DEBUG=1 shows its traceback)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, windows_expand_args: bool = True,
             **extra: Any) -> Any:
        try:
            result = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
            code = result if isinstance(result, int) else 0
        except typer.Abort:
            code = _say("interrupted", 130)
        except typer.TyperException as exc:  # typer's click: a bad argument, option or command
            ctx = getattr(exc, "ctx", None)
            where = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
            message = getattr(exc, "format_message", exc.__str__)()
            code = _say(f"{message}{where}", getattr(exc, "exit_code", 2))
        except Exception as exc:
            if os.environ.get("WHOISCRAWL_DEBUG"):
                raise
            text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            code = _say(f"{type(exc).__name__}: {text}", 1)
        if standalone_mode:
            sys.exit(code)
        return code


def _say(message: str, code: int) -> int:
    line = " ".join(str(message).split())
    typer.secho(f"error: {line}", fg="red", err=True)
    return code


app = typer.Typer(
    cls=OneLineErrors,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Collect WHOIS/RDAP records for the IPv4 space, completely and politely.",
)
app.add_typer(dev_app, name="dev")

def option(name: str, **extra: Any) -> Any:
    """A crawl knob's CLI option, from the settings contract (whoiscrawl/settings.py): its names,
    its variable and its help declared once there (its bounds are checked where the value is used,
    in the library's words)."""
    setting = SETTINGS[name]
    return typer.Option(*setting.option, envvar=setting.env_name if setting.env else None, help=setting.help,
                        **extra)


DEFAULT = {name: setting.default for name, setting in SETTINGS.items()}
# The worker's options: every variable it reads, as the contract declares them.
WORKER_OPTIONS = tuple(name for name, setting in SETTINGS.items() if setting.worker and setting.cli)


def settings_options(*names: str, required: tuple[str, ...] = (),
                     bounded: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Any]:
    """A command whose knobs the settings contract declares: their options (`option`) are added to
    the command's own, and it gets their values as one mapping, `given`, not a parameter each
    (`required`: options without a default; `bounded`: the CLI itself refuses a value out of the
    setting's bounds)."""

    def wrap(fn: Callable[..., Any]) -> Any:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "given"]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                   default=inspect.Parameter.empty if name in required else DEFAULT[name],
                                   annotation=Annotated[_value_type(name, name in required),
                                                        option(name, **_bounds(name, name in bounded))])
                 for name in names]

        @functools.wraps(fn)
        def command(**values: Any) -> Any:
            given = {name: values.pop(name) for name in names}
            return fn(**values, given=given)

        command.__signature__ = inspect.Signature([*own, *added])  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in (*own, *added)}
        return command

    return wrap


def _bounds(name: str, bounded: bool) -> dict[str, Any]:
    setting = SETTINGS[name]
    return {"min": setting.lo, "max": setting.hi} if bounded else {}


def _value_type(name: str, required: bool) -> Any:
    """The Python type of a setting's option value (a list: a repeated option)."""
    setting = SETTINGS[name]
    kind: Any = list[str] if setting.kind is list else setting.kind
    return kind | None if setting.optional and not required else kind


JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON line for scripts instead of tables")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display or notes on stderr")]


def _end(doc: dict, as_json: bool, tables: list) -> None:
    """A command's last output: JSON for machines, or tables for people."""
    from whoiscrawl.results.tables import print_tables

    if as_json:
        typer.echo(json.dumps(doc))
    else:
        print_tables(*tables)


def _fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(2)


def _reach_redis(url: str) -> None:
    """End the command in one line unless a Redis answers at `url` in one bounded try: a Redis down
    or silent is said at once, not after the retries a store waits out a restart with."""
    from redis.exceptions import RedisError

    from whoiscrawl.secrets import redact
    from whoiscrawl.store.redis_admin import REACH_TIMEOUT_S, reach

    try:
        reach(url)
    except (RedisError, ValueError) as exc:
        _fail(redact(f"cannot reach Redis at --redis-url {url} (within {REACH_TIMEOUT_S:.0f} s): {exc}"))


def _whois_servers(whois: str | None) -> dict[str, str]:
    from whoiscrawl.rirs import CATALOGUE, REGISTRIES

    if not whois:
        return {}
    if whois == "real":  # where the real registries answer WHOIS
        return {r.id: r.whois_server for r in CATALOGUE}
    host, _, port = whois.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        _fail(f"--whois {whois!r}: give host:port of a WHOIS server, or 'real' for the registries'")
    return dict.fromkeys(REGISTRIES, whois)


def _sources(
    sources: str | None, files_base: str | None, terms: str | None, bootstrap_url: str | None
) -> dict[str, Any]:
    """A crawl's sources (local, or a worker's): as asked, else all (live alone against another RDAP
    service with no mirror of its files: the real registries' files do not describe it)."""
    from whoiscrawl.sources.published import parse_accepted, parse_sources

    chosen = chosen_sources(sources, files_base, bootstrap_url)
    return {"sources": parse_sources(chosen), "files_base": files_base,
            "accept_dump_terms": parse_accepted(terms)}


def _crawl_settings(given: dict[str, Any]) -> CrawlSettings:
    """A local crawl's settings from the options given (`crawl`'s)."""
    return CrawlSettings(
        strategy=given["strategy"], resolution=given["resolution"], samples=given["samples"],
        excludes=tuple(given["exclude"] or ()), concurrency=given["concurrency"],
        list_children=given["list_children"], whois_servers=_whois_servers(given["whois"]),
        **_sources(given["sources"], given["files_base"], given["accept_dump_terms"], given["bootstrap_url"]),
        verify=given["verify"], fill_redacted=given["fill_redacted"],
        lookup_timeout=given["lookup_timeout"], listing_timeout=given["listing_timeout"],
    )


def _fleet_sources(sources: str | None, files_base: str | None, terms: str | None, bootstrap_url: str | None,
                   asked: tuple[float, bool]) -> Any:
    """A worker's sources (`asked`: --verify, --fill-redacted); a fleet needs live."""
    from whoiscrawl.sources.published import SourcesError, SourcesSettings

    try:
        chosen = SourcesSettings(**_sources(sources, files_base, terms, bootstrap_url), verify=asked[0],
                                 fill_redacted=asked[1])
    except SourcesError as exc:
        _fail(str(exc))
    if "live" not in chosen.sources:
        _fail(f"--sources {sources}: a fleet crawls live what the files lack (add live); for the files "
              "alone run `whoiscrawl crawl --sources stats,dumps`")
    return chosen


def _egresses(binds: list[str] | None, key: str) -> list:
    from netaddr import AddrFormatError, IPAddress

    from whoiscrawl.registry import Egress

    for bind in binds or []:
        try:
            IPAddress(bind)
        except (AddrFormatError, ValueError):
            _fail(f"--bind-address {bind!r} is not an IP address of this machine")
    return [Egress(b, b) for b in binds] if binds else [Egress(key)]


def _writable(out: Path) -> None:
    if not out.parent.is_dir():
        _fail(f"--out {out}: the directory {out.parent} does not exist")


# The crawl knobs of `crawl` (its own options aside), as the settings contract declares them.
CRAWL_OPTIONS = ("strategy", "resolution", "samples", "exclude", "concurrency", "bootstrap_url",
                 "rate_limits", "bind_address", "whois", "list_children", "sources", "files_base",
                 "accept_dump_terms", "verify", "fill_redacted", "lookup_timeout", "listing_timeout")
TIMEOUTS = ("lookup_timeout", "listing_timeout")  # refused out of bounds by the CLI itself


@app.command()
@settings_options(*CRAWL_OPTIONS, bounded=TIMEOUTS)
def crawl(
    ranges: Annotated[list[str], typer.Argument(help="CIDRs or a-b ranges to crawl; 'all' = IPv4")],
    given: dict[str, Any],
    out: Annotated[Path, typer.Option(help="Results, one JSON record a line")] = Path("whois.jsonl"),
    resume: Annotated[bool, typer.Option(help="Continue the crawl whose results are in --out")] = False,
    progress: Annotated[bool, typer.Option(help="Live progress display")] = True,
    refresh: Annotated[Path | None, typer.Option(
        help="A previous map (results of a crawl or refresh of the same ranges) to bring to the newest "
        "published files: only what changed is asked live; the new map goes to --out, the change set beside "
        "it (OUT.changes.jsonl). docs/refresh.md")] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run a whole crawl in this process, with no Kafka or Redis; Ctrl-C and --resume continue it.

    It starts from what the registries publish and asks RDAP/WHOIS for the rest (docs/sources.md);
    with --refresh, it brings a previous map up to date instead (docs/refresh.md)."""
    from whoiscrawl.local import LocalCrawl, LocalCrawlError
    from whoiscrawl.rates import LimitError, parse_limits
    from whoiscrawl.sources.published import SourcesError
    from whoiscrawl.space import SpaceError, fetch_bootstrap

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    _writable(out)
    try:
        bootstrap = asyncio.run(fetch_bootstrap(given["bootstrap_url"]))
        job = LocalCrawl(ranges, out, bootstrap, parse_limits(given["rate_limits"]), _crawl_settings(given),
                         egresses=_egresses(given["bind_address"], "local"), resume=resume)
        if refresh is not None:
            _refresh(job, refresh, as_json)
            return
        display = ProgressDisplay() if progress and not quiet and sys.stderr.isatty() else None
        try:
            summary = asyncio.run(job.run(display.update if display else None))
        finally:
            if display:
                display.stop()
    except (LocalCrawlError, LimitError, SpaceError, SourcesError) as exc:
        _fail(str(exc))
        return
    _end(summary, as_json, [crawl_table(summary)])
    if not summary["complete"]:
        typer.secho(f"interrupted: rerun with --resume --out {out} to continue", fg="yellow", err=True)
        raise typer.Exit(130)


KafkaOpt = Annotated[str, option("kafka_bootstrap")]
RedisOpt = Annotated[str, option("redis_url")]
CrawlOpt = Annotated[str, option("crawl")]
PrefixOpt = Annotated[str, option("topic_prefix")]


# The crawl knobs of `plan` (its own options aside).
PLAN_OPTIONS = ("crawl", "kafka_bootstrap", "redis_url", "topic_prefix", "strategy", "resolution", "samples",
                "shard_prefix", "exclude", "sources", "files_base", "accept_dump_terms", "verify",
                "fill_redacted", "topic_replication_factor")


def _refresh(job: Any, previous: Path, as_json: bool) -> None:
    """`crawl --refresh PREVIOUS`: the new map, its change set, and a line of figures."""
    from whoiscrawl.refresh import Refresh

    if not previous.is_file():
        _fail(f"--refresh {previous}: no such results file")
    summary = asyncio.run(Refresh(job, previous).run())
    if as_json:
        typer.echo(json.dumps(summary))
    if not summary["complete"]:
        typer.secho(f"interrupted: rerun with --resume --out {summary['out']} to finish the refresh",
                    fg="yellow", err=True)
        raise typer.Exit(130)
    changes = summary["changes"]
    if not as_json:
        typer.echo(f"refreshed {previous} into {summary['out']}: {summary['lookups']} lookups; "
                   f"{changes['added']} added, {changes['removed']} removed, {changes['changed']} changed")


@app.command()
@settings_options(*PLAN_OPTIONS, bounded=("topic_replication_factor",))
def plan(
    ranges: Annotated[list[str], typer.Argument(help="CIDRs or a-b ranges; 'all' = IPv4")],
    given: dict[str, Any],
    partitions: Annotated[int, typer.Option(help="Work topic partitions (the most workers useful)")] = 32,
    force: Annotated[bool, typer.Option(help="Publish again even if this crawl was planned")] = False,
    estimate: Annotated[bool, typer.Option(
        help="Publish nothing: print per registry the requests the crawl needs and projected_real_hours "
        "at the registries' real limits (Kafka and Redis not needed)")] = False,
    egress: Annotated[int, typer.Option(help="--estimate: egress addresses the crawl sends from")] = 1,
    as_json: JsonOpt = False,
    topic_config: Annotated[list[str] | None, typer.Option(
        help="KEY=VALUE topic setting for the crawl's topics, e.g. min.insync.replicas=2")] = None,
) -> None:
    """Cut the space into shards and send them to the crawl's work topic (once); or, with --estimate,
    say how long the crawl takes at the registries' real limits before the first request."""
    from redis.exceptions import RedisError

    from whoiscrawl import queue
    from whoiscrawl.publish import publish_plan
    from whoiscrawl.secrets import redact
    from whoiscrawl.space import SpaceError, plan_crawl
    from whoiscrawl.store.redis_admin import RedisCrawlAdmin

    if estimate:
        _estimate(ranges, egress, given, as_json)
        return
    crawl, kafka_bootstrap, redis_url = given["crawl"], given["kafka_bootstrap"], given["redis_url"]
    if not (crawl and kafka_bootstrap and redis_url):
        _fail("publishing a plan needs --crawl, --kafka-bootstrap and --redis-url (or add --estimate)")
    try:
        plan = plan_crawl(
            crawl=crawl, ranges=ranges, excludes=given["exclude"] or [], strategy=given["strategy"],
            resolution=given["resolution"], shard_prefix=given["shard_prefix"], samples=given["samples"],
        )
    except SpaceError as exc:
        _fail(str(exc))
        return
    _reach_redis(redis_url)
    try:
        store = RedisCrawlAdmin(redis_url, crawl)
        planned = store.progress().shards_total
    except (RedisError, ValueError) as exc:
        _fail(redact(f"cannot reach Redis at --redis-url {redis_url}: {exc}"))
        return
    if planned and not force:
        typer.echo(json.dumps({"crawl": crawl, "planned": False, "reason": "already planned"}))
        return
    settings = dict(item.partition("=")[::2] for item in topic_config or [])
    if any(not k or not v for k, v in settings.items()):
        _fail(f"--topic-config takes KEY=VALUE, got {topic_config}")
        return
    sent, (shards_total, addresses_total) = publish_plan(
        plan, bootstrap=kafka_bootstrap, prefix=given["topic_prefix"], store=store,
        config=queue.kafka_config_from(os.environ), partitions=partitions,
        topics=queue.TopicSettings(given["topic_replication_factor"], settings),
    )
    typer.echo(json.dumps({"crawl": crawl, "planned": True, "shards": sent, "addresses": plan.addresses,
                           "shards_total": shards_total, "addresses_total": addresses_total}))


def _estimate(ranges: list[str], egress: int, given: dict[str, Any], as_json: bool) -> None:
    """`plan --estimate`: the plan's requests per registry and their real time, printed."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="whoiscrawl-estimate-") as files:  # the files read
        doc = _estimated(ranges, egress, given, Path(files))
    _end(doc, as_json, [estimate_table(doc)])


def _estimated(ranges: list[str], egress: int, given: dict[str, Any], cache: Path) -> dict[str, Any]:
    """The estimate's figures, the published files read into `cache`."""
    from whoiscrawl.rates import projected_real_hours
    from whoiscrawl.sources import published, seed
    from whoiscrawl.space import SpaceError, plan_crawl

    sources, files_base, terms, verify = (given[k] for k in ("sources", "files_base", "accept_dump_terms",
                                                             "verify"))
    excludes, resolution = given["exclude"] or [], given["resolution"]
    try:
        picked = published.parse_sources(sources or published.DEFAULT)
        accepted = published.parse_accepted(terms)
        stats_plan = None
        if "stats" in picked:
            stats_plan = asyncio.run(published.load_stats(files_base, cache))
            for warning in stats_plan.warnings:
                typer.secho(f"note: {warning}", fg="yellow", err=True)
        free = stats_plan.free_ranges() if stats_plan else []
        plan = plan_crawl(crawl="estimate", ranges=ranges, excludes=[*excludes, *free], resolution=resolution,
                          delegated=stats_plan.special_delegations() if stats_plan else [])
    except (SpaceError, published.SourcesError) as exc:
        _fail(str(exc))
    from_dumps = published.dump_registries(picked, accepted)
    fills, notes = asyncio.run(seed.fill_lookups(files_base, cache, from_dumps, plan.scope)) if given[
        "fill_redacted"] else ({}, [])
    for note in notes:
        typer.secho(f"note: {note}", fg="yellow", err=True)
    needs = published.estimate_requests(plan, stats_plan, from_dumps, verify, fills)
    doc = projected_real_hours({r: n["requests"] for r, n in needs.items()}, egress)
    for registry, row in doc["by_registry"].items():
        row.update({k: v for k, v in needs[registry].items() if k != "requests"})
    return {"sources": sorted(picked), "addresses": plan.addresses, **doc}


@app.command("rebuild-store")
def rebuild_store(
    crawl: CrawlOpt,
    kafka_bootstrap: KafkaOpt,
    redis_url: RedisOpt,
    topic_prefix: PrefixOpt = DEFAULT["topic_prefix"],
    resolution: Annotated[
        int, typer.Option(help="The gap-probe grid, as a prefix length, if no shard says")
    ] = 24,
) -> None:
    """Rebuild a crawl's Redis state from its topics (workers do it themselves when Redis lost it)."""
    from whoiscrawl import queue, recover

    _reach_redis(redis_url)
    config = queue.kafka_config_from(os.environ)
    owner = f"rebuild-store-{os.getpid()}"
    rebuilt = recover.rebuild(redis_url, kafka_bootstrap, topic_prefix, crawl, owner, config, resolution)
    if rebuilt is None:
        typer.echo(json.dumps({"crawl": crawl, "rebuilt": False, "reason": "another process rebuilds it"}))
        raise typer.Exit(1)
    typer.echo(json.dumps({"crawl": crawl, "blocks": rebuilt.blocks, "shards": rebuilt.shards,
                           "done": rebuilt.done}))


@app.command()
@settings_options(*WORKER_OPTIONS, required=("crawl", "kafka_bootstrap", "redis_url"), bounded=TIMEOUTS)
def worker(given: dict[str, Any]) -> None:
    """Take shards from the crawl's work topic until stopped (what the operator runs in pods).

    The crawl's published files (--sources) are loaded first, once for the whole fleet."""
    import socket

    from whoiscrawl.queue import kafka_config_from
    from whoiscrawl.rates import LimitError, parse_limits
    from whoiscrawl.worker.runner import WorkerConfig, run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for name in filter(None, os.environ.get(DEBUG_LOGGERS_ENV, "").split(",")):
        logging.getLogger(name.strip()).setLevel(logging.DEBUG)
    chosen = _fleet_sources(given["sources"], given["files_base"], given["accept_dump_terms"],
                            given["bootstrap_url"], (given["verify"], given["fill_redacted"]))
    try:
        limits = parse_limits(given["rate_limits"])
    except LimitError as exc:
        _fail(str(exc))
        return
    name = given["pod_name"] or socket.gethostname()  # in a pod the host name is the pod's
    config = WorkerConfig(
        crawl=given["crawl"],
        kafka_bootstrap=given["kafka_bootstrap"],
        redis_url=given["redis_url"],
        limits=limits,
        topic_prefix=given["topic_prefix"],
        bootstrap_url=given["bootstrap_url"],
        egresses=_egresses(given["bind_address"], given["egress_key"] or socket.gethostname()),
        egress_share=given["egress_share"],
        settings=CrawlSettings(
            list_children=given["list_children"], whois_servers=_whois_servers(given["whois"]),
            lookup_timeout=given["lookup_timeout"], listing_timeout=given["listing_timeout"],
        ),
        metrics_port=given["metrics_port"] or None,
        grace_seconds=given["grace_seconds"],
        kafka_config=kafka_config_from(os.environ),
        name=name,
        sources=chosen,
        previous=given["previous"] or None,
    )
    raise typer.Exit(run_worker(config))


def _bench_chaos(plan: ChaosPlan, blows: tuple[int, int, int], registry_faults: bool,
                 restarts: tuple[int, int]) -> None:
    """`bench --chaos`: on a Kafka and Redis of its own, so it may restart them (blows: kills,
    terms, pauses of workers; restarts: of the broker, of Redis with its data lost)."""
    from whoiscrawl.bench.chaos import Chaos, chaos_bench, keep_service_logs, owned_services
    from whoiscrawl.bench.common import unwind_on_sigterm, work_folder
    from whoiscrawl.dev.services import restart_kafka, restart_redis

    unwind_on_sigterm()
    kills, terms, pauses = blows
    with owned_services() as running:
        weather = Chaos(kills, terms, pauses, registry_faults=registry_faults, broker_restarts=restarts[0],
                        restart_broker=functools.partial(restart_kafka, running),
                        redis_losses=restarts[1], restart_redis=functools.partial(restart_redis, running))
        figures = chaos_bench(plan, running.kafka_bootstrap, running.redis_url, work_folder(), weather)
        if figures["lost_blocks"]:  # beside the trails of blocks lost, unbacked or unread (evidence.json)
            keep_service_logs(running, Path(figures["workdir"]) / "chaos")
    typer.echo(json.dumps(figures))


SCALES = {"quick": 100.0, "standard": 100.0, "full": 1.0}


# `bench`'s own options, declared here so that the command reads as its list of parameters.
EgressOpt = Annotated[list[int] | None, typer.Option(
    help="Distinct source addresses; repeat (--egress 1 --egress 2 --egress 4) for a scaling series")]
CompareSampleOpt = Annotated[bool, typer.Option(
    help="After a sweep, run sample with the same number of lookups and report both")]
CompareGridOpt = Annotated[bool, typer.Option(
    help="After a sweep, run it again without listings (the /24 grid alone)")]
CompareLiveOpt = Annotated[bool, typer.Option(
    help="After a crawl from the published files, run it again live only (today's crawl; at `full` "
    "that takes days of the simulator's time: --no-compare-live)")]
MicroOpt = Annotated[bool, typer.Option(help="Also the known-block check and Redis memory benchmarks")]
ChaosOpt = Annotated[bool, typer.Option(
    help="Crawl with and without SIGKILLs and SIGTERMs of workers; what was lost")]
KillsOpt = Annotated[int, typer.Option(help="With --chaos: workers SIGKILLed (listers first)")]
TermsOpt = Annotated[int, typer.Option(help="With --chaos: workers SIGTERMed (spot notices)")]
PausesOpt = Annotated[int, typer.Option(
    help="With --chaos: workers SIGSTOPped 15-40 s, then resumed (lease holders first)")]
RegistryFaultsOpt = Annotated[bool, typer.Option(
    help="With --chaos: registries serve 429 storms, bans, 5xx, timeouts meanwhile")]
StaticOpt = Annotated[bool, typer.Option(
    help="Workers keep a group.instance.id per slot; replacements rejoin as the dead")]
BrokerRestartsOpt = Annotated[int, typer.Option(
    help="With --chaos: Kafka broker restarts mid-crawl (on the bench's own broker)")]
RedisLossesOpt = Annotated[int, typer.Option(
    help="With --chaos: Redis restarts with its data lost, mid-crawl")]
RowLimitOpt = Annotated[int | None, typer.Option(
    help="The simulator's relation-search row limit (default RIPE NCC's 10,000)")]
ArinSearchOpt = Annotated[bool, typer.Option(
    help="The simulator's ARIN answers RFC 9910 relation search (else WHOIS r > only)")]
ArinLimitOpt = Annotated[int | None, typer.Option(
    help="Networks the simulator's ARIN WHOIS `r >` answers at most (default ARIN's 256; 0: no cap)")]
BenchSourcesOpt = Annotated[str, typer.Option(
    help="The workers' --sources: live (today's crawl), or e.g. stats,dumps,live to start from the "
    "simulator's published files (every dump's terms accepted)")]


@app.command()
def bench(
    scenario: Annotated[str, typer.Option(help="Simulator scenario: quick, standard, full")] = "quick",
    strategy: Annotated[str, option("strategy")] = DEFAULT["strategy"],
    workers: Annotated[int, typer.Option(help="Worker processes")] = 2,
    egress: EgressOpt = None,
    resolution: Annotated[int, option("resolution")] = DEFAULT["resolution"],
    time_scale: Annotated[float | None, typer.Option(help="Simulator speed-up of its rate limits")] = None,
    compare_sample: CompareSampleOpt = True,
    compare_grid: CompareGridOpt = True,
    compare_live: CompareLiveOpt = True,
    micro: MicroOpt = False,
    chaos: ChaosOpt = False,
    kills: KillsOpt = 20,
    terms: TermsOpt = 3,
    pauses: PausesOpt = 0,
    registry_faults: RegistryFaultsOpt = True,
    static_membership: StaticOpt = False,
    broker_restarts: BrokerRestartsOpt = 1,
    redis_losses: RedisLossesOpt = 1,
    row_limit: RowLimitOpt = None,
    arin_relation_search: ArinSearchOpt = True,
    arin_listing_limit: ArinLimitOpt = None,
    sources: BenchSourcesOpt = "live",
    timeout: Annotated[float, typer.Option(help="Seconds a fleet crawl may take before it counts as "
                                           "unfinished (`full`: hours)")] = 1800,
    as_json: JsonOpt = False
) -> None:
    """Crawl a simulator scenario with N real workers, real Kafka and Redis; a table (--json: one JSON
    line) of figures per egress count, with the baselines (sample, grid alone) run beside it under
    "compare". With --chaos: one JSON line, the crawl under kills, spot notices and pauses beside the
    same crawl without."""
    _known_scenario(scenario)  # before any service starts
    scale = time_scale or SCALES.get(scenario, 100.0)
    logging.basicConfig(level=logging.WARNING)
    from whoiscrawl.bench.common import simulator_options

    sim_options = simulator_options(row_limit, arin_relation_search, arin_listing_limit)
    if chaos:
        from whoiscrawl.bench.chaos import ChaosPlan

        plan = ChaosPlan(scenario, workers, scale, static_membership, sim_options)
        _bench_chaos(plan, (kills, terms, pauses), registry_faults, (broker_restarts, redis_losses))
        return
    from whoiscrawl.sources.published import SourcesError, parse_sources

    try:
        chosen = parse_sources(sources)
    except SourcesError as exc:
        _fail(str(exc))
        return
    _bench_fleet(scenario, CrawlSettings(strategy=strategy, resolution=resolution, sources=chosen), workers,
                 egress or [1], scale, (compare_sample, compare_grid, compare_live), (micro, as_json),
                 (sim_options, timeout))


def _known_scenario(scenario: str) -> None:
    from whoiscrawl.sim.scenarios import NAMES

    if scenario not in NAMES:
        _fail(f"--scenario {scenario!r}: choose one of {', '.join(NAMES)}")


def _bench_fleet(scenario: str, settings: CrawlSettings, workers: int, egresses: list[int], scale: float,
                 compare: tuple[bool, bool, bool], output: tuple[bool, bool],
                 run: tuple[tuple[str, ...], float]) -> None:
    """The fleet bench: a crawl (and its baselines) per egress count, then the micro benchmarks
    (`output`: whether to run them, and JSON rather than tables; `run`: the simulator's options and
    a crawl's timeout)."""
    from whoiscrawl.bench import fleet as b
    from whoiscrawl.bench.common import unwind_on_sigterm

    unwind_on_sigterm()

    micro, as_json = output
    with b.bench_services() as (kafka, redis_url):
        for k in egresses:
            crawl = functools.partial(b.fleet_crawl, scenario, shape=b.FleetShape(workers, k),
                                      time_scale=scale, kafka=kafka, redis_url=redis_url,
                                      sim_options=run[0], timeout=run[1])
            doc = b.with_baselines(crawl, settings, *compare)
            real = estimate_table(doc["real_time"], "At the real registries' limits")
            _end(doc, as_json, [bench_table(doc), real])
        if micro:
            for micro_doc in (b.index_benchmark(), b.redis_memory_benchmark(redis_url)):
                _end(micro_doc, True, [])


@app.command("bench-scale")
def bench_scale(
    fraction: Annotated[
        list[float] | None,
        typer.Option(help="Slices of full, as fractions of each registry's /8s; repeat (default 1/64, 1/16)"),
    ] = None,
    baseline: Annotated[str, typer.Option(help="Scenario crawled whole first, to compare with ('' for none)")]
    = "standard",
    time_scale: Annotated[float, typer.Option(help="Simulator speed-up of its rate limits")] = 10000.0,
    profile: Annotated[bool, typer.Option(help="Profile each crawl (all threads); print its top 5")] = True,
    workdir: Annotated[Path | None, typer.Option(help="Where results and logs go (default: a new temp dir)")]
    = None,
    sources: Annotated[str, typer.Option(help="What each crawl reads: live (today's walk) or, as the "
                                         "demo, stats,dumps,live (the simulator's files first)")] = "live",
    slices: Annotated[bool, typer.Option(help="Crawl slices of full after the baseline (--no-slices: the "
                                         "baseline alone, no world of full built)")] = True,
) -> None:
    """Local crawls of the baseline scenario and of growing slices of `full`, one JSON line each:
    networks/s, CPU seconds per network, peak RSS, and the profile's top five functions."""
    from whoiscrawl.bench.common import unwind_on_sigterm, work_folder
    from whoiscrawl.bench.local import scale_benchmark

    logging.basicConfig(level=logging.WARNING)
    where = workdir or work_folder("scale")
    where.mkdir(parents=True, exist_ok=True)
    from whoiscrawl.sources.published import SourcesError, parse_sources

    try:
        parse_sources(sources)
    except SourcesError as exc:
        raise typer.BadParameter(str(exc), param_hint="--sources") from exc
    unwind_on_sigterm()  # once the options are checked: the crawls start here
    fractions = (fraction or [1 / 64, 1 / 16]) if slices else []
    for doc in scale_benchmark(fractions, time_scale, baseline or None, profile, where, sources):
        typer.echo(json.dumps(doc), nl=True)


@app.command("bench-refresh")
def bench_refresh(
    scenario: Annotated[str, typer.Option(help="Simulator scenario")] = "standard",
    days: Annotated[int, typer.Option(min=1, help="Simulated days, a refresh each")] = 3,
    time_scale: Annotated[float, typer.Option(help="Simulator speed-up of its rate limits")] = 100.0,
    churn: Annotated[str | None, typer.Option(help="What changes a day, as `sim serve --churn`")] = None,
    fleet: Annotated[int, typer.Option(min=0, help=(
        "Crawl with this many real workers (Kafka and Redis: the environment's, else the bench's "
        "own), a generation a day refreshing the one before, as the operator runs a scheduled crawl; "
        "0: the local crawl"))] = 0,
) -> None:
    """A first crawl of the scenario from its files, then a refresh a day as its world changes: one
    JSON line each, a day's requests and wall time beside the first crawl's (docs/refresh.md)."""
    from whoiscrawl.bench.common import unwind_on_sigterm
    from whoiscrawl.bench.fleet import FleetShape
    from whoiscrawl.bench.refresh import run, run_fleet
    from whoiscrawl.sim.churn import Churn

    _known_scenario(scenario)
    try:
        Churn.parse(churn or "0.01")
    except ValueError as exc:
        _fail(str(exc))
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(message)s")
    unwind_on_sigterm()  # once the options are checked: the crawls start here
    lines = run_fleet(scenario, days, time_scale, churn, FleetShape(workers=fleet)) if fleet else \
        run(scenario, days, time_scale, churn)
    for line in lines:
        typer.echo(json.dumps(line, separators=(",", ":")))


@app.command("bench-parse")
def bench_parse(
    scenario: Annotated[str, typer.Option(help="Simulator scenario whose answers are parsed")] = "quick",
    rounds: Annotated[int, typer.Option(help="Times each answer is parsed")] = 1,
) -> None:
    """WHOIS parse rates over the simulator's answers, beside ipwhois' per-answer lookup: one JSON line."""
    from whoiscrawl.bench.local import parse_benchmark
    from whoiscrawl.sim import scenarios

    typer.echo(json.dumps(parse_benchmark(scenarios.get(scenario).world(), rounds)))


@app.command("bench-staging")
def bench_staging(
    scenario: Annotated[str, typer.Option(help="Simulator scenario whose dumps are staged")] = "standard",
    rounds: Annotated[int, typer.Option(min=1, help="Times each parse path reads the texts (best kept)")] = 2,
) -> None:
    """Each registry's dump staged as a crawl stages it (objects/s, CPU per object), with the RPSL
    reader's line-by-line path beside its bulk path on the same texts: a JSON line each, then totals."""
    from whoiscrawl.bench.staging import run

    _known_scenario(scenario)
    for line in run(scenario, rounds):
        typer.echo(json.dumps(line, separators=(",", ":")))


@app.command()
def demo(
    scenario: Annotated[str, typer.Option(help="Simulator scenario")] = "quick",
    out: Annotated[Path, typer.Option(help="Where the results go (the default folder is git-ignored)")]
    = Path(".whoiscrawl/demo/results.jsonl"),
    time_scale: Annotated[float, typer.Option(help="Simulator speed-up of its rate limits")] = 100.0,
    log: Annotated[Path | None, typer.Option(
        help="Keep the simulator's request log (JSON lines) here, replaced as --out is; without it, a "
             "temporary file deleted once the crawl is scored")] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The main job on embedded defaults: a local crawl of the bundled simulator, scored against truth."""
    from whoiscrawl.bench.fleet import real_time
    from whoiscrawl.sim.score import score

    # --quiet: nothing on stderr (the published files' notes are in the table and the JSON)
    logging.basicConfig(level=logging.ERROR if quiet else logging.WARNING, format="%(levelname)s %(message)s")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    out.with_name(out.name + ".checkpoint.json").unlink(missing_ok=True)
    note = (lambda _text: None) if quiet else functools.partial(typer.secho, err=True)
    note(f"starting the registry simulator ({scenario}, rate limits x{time_scale:g}) and its published files")
    with _request_log(log) as requests:
        summary = _demo_crawl(scenario, out, time_scale, requests, note, quiet)
        figures = score(scenario, str(out), str(requests), resolution=24, time_scale=time_scale)
    keep = ("complete", "wall_s", "lookups", "blocks", "errors", "rate_limited", "out", "sources", "dumps",
            "notes")
    doc = {"crawl": {k: summary[k] for k in keep}, "score": figures, "real_time": real_time(figures, 1)}
    shown = {**summary, "real_time": doc["real_time"]}
    _end(doc, as_json, [crawl_table(shown, f"Crawl of the simulator's {scenario}"), score_table(figures)])


@contextlib.contextmanager
def _request_log(keep: Path | None) -> Iterator[Path]:
    """Where the demo's simulator logs its requests: `keep`, emptied first, else a file in a
    temporary folder deleted after (the demo leaves behind only what it says it writes)."""
    if keep is not None:
        keep.parent.mkdir(parents=True, exist_ok=True)
        keep.unlink(missing_ok=True)  # the simulator appends: an old log would be scored with this crawl
        yield keep
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="whoiscrawl-demo-") as folder:
        yield Path(folder) / "requests.jsonl"


def _demo_crawl(scenario: str, out: Path, time_scale: float, log: Path, note: Callable[[str], object],
                quiet: bool) -> dict[str, Any]:
    """The demo's crawl of the simulator (started here, its requests logged to `log`): its summary."""
    from whoiscrawl.bench.common import simulator
    from whoiscrawl.local import LocalCrawl
    from whoiscrawl.rirs import REGISTRIES
    from whoiscrawl.sources import published
    from whoiscrawl.space import fetch_bootstrap

    with simulator(scenario, time_scale, log, extra=["--prepare-files"]) as sim:
        note(f"crawling {len(sim.ranges)} ranges through {sim.bootstrap_url}")
        settings = CrawlSettings(
            whois_servers=_whois_servers(sim.whois),
            # what the simulator publishes, as the registries do (simulated data: no real terms apply)
            sources=published.parse_sources(published.DEFAULT), files_base=sim.files_base,
            accept_dump_terms=frozenset(REGISTRIES), verify=DEFAULT["verify"],
            fill_redacted=DEFAULT["fill_redacted"],
        )
        bootstrap = asyncio.run(fetch_bootstrap(sim.bootstrap_url))
        job = LocalCrawl(sim.ranges, out, bootstrap, sim.limits(), settings)
        display = ProgressDisplay() if not quiet and sys.stderr.isatty() else None
        try:
            return asyncio.run(job.run(display.update if display else None))
        finally:
            if display:
                display.stop()


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
    from whoiscrawl.history.cli import register as register_history
    from whoiscrawl.operator.cli import app as operator_app
    from whoiscrawl.results.cli import register as register_results
    from whoiscrawl.serve.cli import register as register_serve
    from whoiscrawl.sim.cli import app as sim_app

    register_results(app)
    register_serve(app)
    register_history(app)

    app.add_typer(sim_app, name="sim")
    app.add_typer(operator_app, name="operator")


_register_parts()
