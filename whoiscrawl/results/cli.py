"""The result commands (`summary`, `export`, `map`, `diff`, `status`, `bench-export`): thin wrappers."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from whoiscrawl.settings import env_name

ResultsArg = Annotated[
    str, typer.Argument(help="A results JSONL file, or topic:CRAWL for that crawl's compacted results topic")
]
OptionalResultsArg = Annotated[str | None, typer.Argument(
    help="A results JSONL file, or topic:CRAWL for that crawl's compacted results topic (or --history)")]
KafkaOpt = Annotated[
    str | None,
    typer.Option("--kafka-bootstrap", envvar=env_name("kafka_bootstrap"), help="Kafka, for topic:CRAWL"),
]
PrefixOpt = Annotated[str, typer.Option("--topic-prefix", envvar=env_name("topic_prefix"))]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object instead of tables")]
HistoryOpt = Annotated[Path | None, typer.Option(
    "--history", help="Answer from this store of dated generations (`whoiscrawl history`), or from "
    "topic:CRAWL, a fleet crawl's change-feed topic, not RESULTS")]
AtOpt = Annotated[str | None, typer.Option(
    "--at", help="With --history: the map as of this date (YYYY-MM-DD, or a time in UTC, "
    "YYYY-MM-DDTHH:MM:SSZ); default the newest")]
ScopeOpt = Annotated[
    list[str] | None,
    typer.Option("--scope", help="Ranges the shares are of (repeat); default: all allocatable IPv4"),
]


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(2)


def summary(
    results: OptionalResultsArg = None,
    scope: ScopeOpt = None,
    top: Annotated[int, typer.Option(help="Countries and holders listed")] = 15,
    as_json: JsonOpt = False,
    kafka_bootstrap: KafkaOpt = None,
    topic_prefix: PrefixOpt = "whoiscrawl.",
    history: HistoryOpt = None,
    at: AtOpt = None,
) -> None:
    """Records, unique blocks, addresses covered and their share of the space, per registry and
    country, and the largest holders (each address counted once, for its most specific block).
    With --history DIR --at DATE: of the map as it stood on DATE."""
    from whoiscrawl.history.store import HistoryError, results_for
    from whoiscrawl.history.topic import history_of
    from whoiscrawl.results.source import ResultsError, open_results
    from whoiscrawl.results.summary import scope_of, summarize
    from whoiscrawl.results.tables import print_tables, summary_tables
    from whoiscrawl.space import SpaceError

    try:
        results = results_for(results, history_of(history, kafka_bootstrap, topic_prefix), at)
        with open_results(results, kafka_bootstrap, topic_prefix, seekable=True) as rs:
            doc = summarize(rs, scope_of(scope)).to_dict(top)
    except (ResultsError, SpaceError, HistoryError) as exc:
        _fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps(doc))
    else:
        print_tables(*summary_tables(doc))


def register(app: typer.Typer) -> None:
    """Add the result commands to the `whoiscrawl` command."""
    app.command()(summary)
    app.command()(export)
    app.command("bench-export")(bench_export)
    app.command("map")(map_cmd)
    app.command()(diff)
    app.command()(status)
    app.command()(dashboards)


def export(
    out: Annotated[Path, typer.Option("--out", help="File to write")],
    results: OptionalResultsArg = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl, csv, parquet or mmdb")] = "parquet",
    registry: Annotated[list[str] | None, typer.Option(help="Keep only this registry (repeat)")] = None,
    country: Annotated[list[str] | None, typer.Option(help="Keep only this country code (repeat)")] = None,
    within: Annotated[
        list[str] | None, typer.Option("--range", help="Keep only blocks overlapping this range (repeat)")
    ] = None,
    kafka_bootstrap: KafkaOpt = None,
    topic_prefix: PrefixOpt = "whoiscrawl.",
    history: HistoryOpt = None,
    at: AtOpt = None,
) -> None:
    """Write the latest record of every block, in one column schema (docs/results.md), streaming;
    or, with --format mmdb, the map as a MaxMind DB: each address answers its most specific network
    (docs/serving.md). With --history DIR --at DATE: the map as it stood on DATE (docs/history.md)."""
    from whoiscrawl.history.store import HistoryError, results_for
    from whoiscrawl.history.topic import history_of
    from whoiscrawl.results.export import FORMATS, Filters
    from whoiscrawl.results.export import export as write
    from whoiscrawl.results.source import ResultsError, open_results
    from whoiscrawl.space import SpaceError

    try:
        results = results_for(results, history_of(history, kafka_bootstrap, topic_prefix), at)
    except HistoryError as exc:
        _fail(str(exc))
        return

    if fmt == "mmdb":
        if registry or country or within:
            _fail("--registry, --country and --range do not apply to --format mmdb: it holds the whole map")
        _export_mmdb(results, out, kafka_bootstrap, topic_prefix)
        return
    if fmt not in FORMATS:
        _fail(f"unknown format {fmt!r}: use {', '.join(FORMATS)} or mmdb")
    try:
        keep = Filters.of(registry or [], country or [], within or [])
        with open_results(results, kafka_bootstrap, topic_prefix) as rs:
            rows = write(rs, fmt, out, keep)
            doc = {"out": str(out), "format": fmt, "rows": rows, "records": rs.records, "blocks": rs.blocks}
    except (ResultsError, SpaceError) as exc:
        _fail(str(exc))
        return
    typer.echo(json.dumps(doc))


def _export_mmdb(results: str, out: Path, kafka_bootstrap: str | None, topic_prefix: str) -> None:
    import time

    from whoiscrawl.serve import mmdb
    from whoiscrawl.serve.cli import open_index

    index = open_index(results, kafka_bootstrap, topic_prefix)
    started = time.perf_counter()
    try:
        networks = mmdb.write(index, out)
    except OSError as exc:
        _fail(f"cannot write {out}: {exc}")
        return
    typer.echo(json.dumps({"out": str(out), "format": "mmdb", "networks_answering": networks,
                           "blocks": len(index), "write_s": round(time.perf_counter() - started, 2)}))


def bench_export(
    records: Annotated[int, typer.Option(help="Synthetic records to generate (10% of them duplicates)")]
    = 1_000_000,
    fmt: Annotated[list[str] | None, typer.Option("--format", help="Formats to export (repeat)")] = None,
    workdir: Annotated[Path | None, typer.Option(help="Where the files go (default: a temp dir)")] = None,
) -> None:
    """Generate synthetic records, export them with `whoiscrawl export` in a child process, and print
    one JSON line per format: peak memory (max RSS) per million records, rows per second."""
    import tempfile

    from whoiscrawl.bench.export import export_benchmark

    where = workdir or Path(tempfile.mkdtemp(prefix="whoiscrawl-bench-export-"))
    for line in export_benchmark(records, fmt or ["parquet"], where):
        typer.echo(json.dumps(line))


def map_cmd(
    results: Annotated[
        list[str] | None, typer.Argument(help="Results (file or topic:CRAWL); with --diff, OLD and NEW")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Image to write (PNG, or SVG with --svg)")]
    = Path("map.png"),
    by: Annotated[str, typer.Option(help="Colour by registry, country, holder or found")] = "registry",
    size: Annotated[int, typer.Option(help="Map side in pixels: 4096 (one per /24), 2048, 1024, 512")] = 4096,
    svg: Annotated[bool, typer.Option("--svg", help="Write SVG (the map embedded, the rest as vectors)")]
    = False,
    diff: Annotated[bool, typer.Option("--diff", help="Colour what changed from OLD to NEW")] = False,
    title: Annotated[str | None, typer.Option(help="Title (default: what the map shows)")] = None,
    kafka_bootstrap: KafkaOpt = None,
    topic_prefix: PrefixOpt = "whoiscrawl.",
    history: HistoryOpt = None,
    at: AtOpt = None,
) -> None:
    """IPv4 on a Hilbert curve, coloured by what the crawl found, with a legend and the /8 grid.
    With --history DIR --at DATE: the map of that date, or with --diff that day's changes (from
    the generation before)."""
    from whoiscrawl.results import ipmap
    from whoiscrawl.results.source import ResultsError, open_results

    if size not in ipmap.SIZES or by not in ipmap.MODES:
        _fail(f"--size is one of {ipmap.SIZES} and --by one of {', '.join(ipmap.MODES)}")
    results = _history_maps(results or [], history, at, diff, (kafka_bootstrap, topic_prefix))
    if len(results) != (2 if diff else 1):
        _fail("give one result set, or OLD and NEW with --diff")
    names = " -> ".join(Path(r).name for r in results)
    try:
        with contextlib.ExitStack() as stack:
            sets = [stack.enter_context(open_results(r, kafka_bootstrap, topic_prefix, seekable=True))
                    for r in results]
            if diff:
                picture = ipmap.render_diff(sets[0], sets[1], size, title or f"IPv4 changes: {names}")
            else:
                picture = ipmap.render(sets[0], by, size, title or f"IPv4 by {by}: {names}")
    except ResultsError as exc:
        _fail(str(exc))
        return
    (ipmap.save_svg if svg else ipmap.save_png)(picture, str(out))
    typer.echo(json.dumps({"out": str(out), "by": "diff" if diff else by, "size": size,
                           "blocks": sets[-1].blocks,
                           "legend": dict(zip(picture.legend.labels, picture.share, strict=True))}))


def _history_maps(results: list[str], history: Path | None, at: str | None, diff: bool,
                  kafka: tuple[str | None, str]) -> list[str]:
    """The maps `map` draws: those given, or with --history the one of --at (with --diff, it and
    the generation before)."""
    from whoiscrawl.history.store import LATEST, HistoryError, Store, day_before, parse_date, results_for
    from whoiscrawl.history.topic import store_path

    if history is None:
        if at is not None:
            _fail("--at needs --history DIR: the store of dated generations to draw from")
        return results
    if results:
        _fail(f"give either result sets ({' '.join(results)}) or --history {history}, not both")
    try:
        history = store_path(history, *kafka)
        if not diff:
            return [results_for(None, history, at)]
        day = parse_date(at, "--at") if at else LATEST
        return [str(p) for p in day_before(Store.open(history), day)]
    except HistoryError as exc:
        _fail(str(exc))
    return []


def diff(
    old: Annotated[str, typer.Argument(help="The earlier results (file or topic:CRAWL)")],
    new: Annotated[str, typer.Argument(help="The later results (file or topic:CRAWL)")],
    limit: Annotated[int, typer.Option(help="Changes listed in the table (--json lists all)")] = 30,
    as_json: JsonOpt = False,
    kafka_bootstrap: KafkaOpt = None,
    topic_prefix: PrefixOpt = "whoiscrawl.",
) -> None:
    """Blocks added, removed, and changed (holder, country, abuse contact, registry) from OLD to NEW."""
    from whoiscrawl.results.diff import diff_report
    from whoiscrawl.results.source import ResultsError, open_results
    from whoiscrawl.results.tables import diff_tables, print_tables

    try:
        with open_results(old, kafka_bootstrap, topic_prefix, seekable=True) as a, \
                open_results(new, kafka_bootstrap, topic_prefix, seekable=True) as b:
            doc = diff_report(a, b, None if as_json else limit)
    except ResultsError as exc:
        _fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps(doc))
    else:
        print_tables(*diff_tables(doc))


def status(
    name: Annotated[str, typer.Argument(
        help="A local crawl's results file (--out) or checkpoint, or the name of a WhoisCrawl")],
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="The WhoisCrawl's namespace")]
    = "default",
    kubeconfig: Annotated[Path | None, typer.Option(envvar="KUBECONFIG", help="kubeconfig to use")] = None,
    server: Annotated[str | None, typer.Option(help="API server URL without credentials (tests)")] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Follow it live until it completes (Ctrl-C stops)")]
    = False,
    interval: Annotated[float, typer.Option(help="Seconds between looks with --watch")] = 2.0,
    as_json: JsonOpt = False,
) -> None:
    """Progress, rate and ETA of a local crawl (from its checkpoint: coverage by registry too) or of
    a WhoisCrawl in the cluster (from its status: workers, conditions); --watch follows it (with
    --json: a JSON line per look)."""
    import re

    from whoiscrawl.operator.spec import NAME_PATTERN
    from whoiscrawl.results.status import StatusError, paths_of

    local = any(p.exists() for p in paths_of(name))
    if not local and not re.match(NAME_PATTERN, name):  # a path (no WhoisCrawl is named so): not found
        results, checkpoint = paths_of(name)
        _fail(f"no local crawl at {name}: neither {results} nor its checkpoint {checkpoint} exists")
    look = _local_look(name) if local else _cluster_look(name, namespace, server, kubeconfig)
    try:
        _follow(look, interval, as_json, watch)
    except StatusError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _local_look(name: str) -> Callable[[], tuple[dict, list]]:
    from whoiscrawl.results.status import report, snapshot
    from whoiscrawl.results.tables import status_tables

    last: list = []

    def look() -> tuple[dict, list]:
        now = snapshot(name)
        doc = report(now, last[-1] if last else None)
        last[:] = [now]
        return doc, status_tables(doc, name)

    return look


def _cluster_look(name: str, namespace: str, server: str | None,
                  kubeconfig: Path | None) -> Callable[[], tuple[dict, list]]:
    from whoiscrawl.results.status import cluster_report, fetch_crawl
    from whoiscrawl.results.tables import cluster_status_tables

    read = _kube_reader(server, str(kubeconfig) if kubeconfig else None)

    def look() -> tuple[dict, list]:
        doc = cluster_report(fetch_crawl(name, namespace, read))
        return doc, cluster_status_tables(doc)

    return look


def _kube_reader(server: str | None, kubeconfig: str | None) -> Callable[[str, str], dict | None]:
    """The status command's cluster backend: WhoisCrawl resources from the Kubernetes API (a
    kubeconfig or in-cluster credentials, or an unauthenticated `server` URL), a client per look."""
    from whoiscrawl.operator.kube import KubeClient, KubeError  # the kubernetes client, only for a cluster
    from whoiscrawl.operator.spec import GROUP, VERSION
    from whoiscrawl.results.status import StatusError

    def read(namespace: str, name: str) -> dict | None:
        try:
            client = KubeClient(server, kubeconfig=kubeconfig)
            return client.get(f"{GROUP}/{VERSION}", "whoiscrawls", namespace, name)
        except KubeError as exc:
            raise StatusError(f"no local crawl {name}, and whoiscrawl {namespace}/{name} cannot be read: "
                              f"{exc}") from exc
        except Exception as exc:  # kubeconfig missing or unreadable: the kubernetes client's own errors
            raise StatusError(f"no local crawl {name} (no checkpoint), and no Kubernetes API to ask for "
                              f"whoiscrawl {namespace}/{name}: {exc}") from exc

    return read


def _follow(look: Callable[[], tuple[dict, list]], interval: float, as_json: bool, watch: bool) -> None:
    """Show one look, or with `watch` look again every `interval` until the crawl completes."""
    import time
    from contextlib import nullcontext

    from rich.console import Console, Group
    from rich.live import Live

    from whoiscrawl.results.tables import print_tables

    live = Live(console=Console(width=110), auto_refresh=False) if watch and not as_json else nullcontext()
    with live:
        while True:
            doc, tables = look()
            if as_json:
                typer.echo(json.dumps(doc))
            elif isinstance(live, Live):
                live.update(Group(*tables), refresh=True)
            else:
                print_tables(*tables)
            if not watch or doc["complete"]:
                return
            time.sleep(interval)


def dashboards(
    check: Annotated[bool, typer.Option("--check", help="Fail if the committed JSON differs from the code")]
    = False,
) -> None:
    """Generate the Grafana dashboards (grafana-foundation-sdk) into charts/whoiscrawl/dashboards/."""
    from whoiscrawl import dashboards as boards

    if check:
        stale = [n for n, text in boards.render().items()
                 if not (boards.CHART_DASHBOARDS / n).is_file()
                 or (boards.CHART_DASHBOARDS / n).read_text() != text]
        if stale:
            _fail(f"{', '.join(stale)} differ from whoiscrawl/dashboards.py: run `whoiscrawl dashboards`")
        return
    for path in boards.write():
        typer.echo(str(path))
