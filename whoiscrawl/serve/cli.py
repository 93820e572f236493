"""The serving commands (`lookup`, `serve`, `bench-serve`): thin wrappers over the index."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from whoiscrawl.results.cli import AtOpt, HistoryOpt, KafkaOpt, OptionalResultsArg, PrefixOpt

if TYPE_CHECKING:
    from whoiscrawl.serve.index import MapIndex
    from whoiscrawl.serve.server import Reloader


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(2)


def open_index(results: str, kafka_bootstrap: str | None, topic_prefix: str) -> MapIndex:
    """The index of a results file (saved beside it, reused while the file is unchanged) or of a
    crawl's results topic (`topic:CRAWL`, built in memory)."""
    from whoiscrawl.results.source import TOPIC_PREFIX, ResultsError, results_file
    from whoiscrawl.serve.index import MapIndexError, build_file, index_path, load_or_build
    from whoiscrawl.serve.lookup import parse_address

    if not Path(results).exists() and parse_address(results)[1] is None:  # an address, not a file
        _fail(f"{results} is an address: the results file comes first (whoiscrawl lookup RESULTS ADDR...)")
    started = time.perf_counter()
    try:
        if results.startswith(TOPIC_PREFIX):
            with results_file(results, kafka_bootstrap, topic_prefix) as path:
                index, how = build_file(path), "built"
        else:
            index, how = load_or_build(Path(results))
    except (ResultsError, MapIndexError) as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits
    if how != "loaded":
        where = "" if results.startswith(TOPIC_PREFIX) else f", saved as {index_path(Path(results))}"
        typer.echo(f"note: indexed {len(index):,} networks in {time.perf_counter() - started:.1f} s "
                   f"({how}{where})", err=True)
    return index


def _lines(addresses: list[str], from_file: Path | None) -> Iterator[str]:
    """The addresses to look up: those given (`-` reads standard input), then --from's lines."""
    for text in addresses:
        if text == "-":
            yield from sys.stdin
        else:
            yield text
    if from_file is not None:
        with from_file.open(encoding="utf-8", errors="replace") as fh:
            yield from fh


def lookup(
    results: OptionalResultsArg = None,
    addresses: Annotated[list[str] | None, typer.Argument(
        help="IPv4 addresses to look up; - reads them from standard input, one a line")] = None,
    from_file: Annotated[Path | None, typer.Option("--from", help="A file of addresses, one a line")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV with a header line")] = False,
    kafka_bootstrap: KafkaOpt = None,
    topic_prefix: PrefixOpt = "whoiscrawl.",
    history: HistoryOpt = None,
    at: AtOpt = None,
) -> None:
    """Who holds each address: its most specific network in the map (holder, country, registry,
    network, handle, abuse contact, parents, source, when observed). Streams input of any size; a
    malformed line gets an error of its own and the rest carry on. With --history DIR [--at DATE]
    there is no RESULTS: every argument is an address, answered as the map stood on DATE."""
    from whoiscrawl.history.store import HistoryError, results_for
    from whoiscrawl.history.topic import history_of
    from whoiscrawl.serve.lookup import write

    if history is not None and results is not None:  # no results file: the first argument is an address
        if Path(results).exists():
            _fail(f"give either a results file ({results}) or --history {history}, not both")
        addresses, results = [results, *(addresses or [])], None
    try:
        results = results_for(results, history_of(history, kafka_bootstrap, topic_prefix), at)
    except HistoryError as exc:
        _fail(str(exc))
        return

    if as_json and as_csv:
        _fail("choose one of --json and --csv")
    if from_file is not None and not from_file.is_file():
        _fail(f"--from {from_file}: no such file")
    if not addresses and from_file is None:
        _fail("give addresses, --from FILE, or - to read standard input")
    index = open_index(results, kafka_bootstrap, topic_prefix)
    fmt = "json" if as_json else "csv" if as_csv else "card"
    counts = write(index, _lines(addresses or [], from_file), fmt, sys.stdout)
    if counts["errors"]:
        typer.echo(f"note: {counts['errors']:,} line(s) were not IPv4 addresses (see their answers)",
                   err=True)


def serve(
    results: OptionalResultsArg = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: a free one)")] = 8043,
    reload_every: Annotated[float, typer.Option(
        help="Seconds between looks at the results (a file's size and time; a topic is read again "
        "whole): changed results are indexed again (0: never)")] = 30.0,
    kafka_bootstrap: KafkaOpt = None,
    topic_prefix: PrefixOpt = "whoiscrawl.",
    history: Annotated[Path | None, typer.Option(
        "--history", help="A store of dated generations (`whoiscrawl history`), or topic:CRAWL (a fleet "
        "crawl's change feed, followed every --reload-every): answers ?at=DATE, and without RESULTS "
        "the newest generation answers the rest")] = None,
    workers: Annotated[int, typer.Option(
        min=1, help="Processes answering from one listening socket (forked after the index is loaded)")] = 1,
) -> None:
    """An RDAP server over the map (RFC 9082/9083 ip queries, RFC 9910 relation search, its own RFC
    9224 bootstrap at /bootstrap/ipv4.json), a POST /batch endpoint, /metrics, /healthz and /readyz;
    with --history, any ip or relation query with ?at=DATE answers as the map stood then. Prints
    one JSON line when it listens."""
    import json

    from whoiscrawl.history.store import LATEST, HistoryError, Store, results_for
    from whoiscrawl.history.topic import follower, history_of
    from whoiscrawl.serve.server import MapServer, following, history_as_of, run

    try:
        follow = follower(history, kafka_bootstrap, topic_prefix) if history is not None else None
        history = history_of(history, kafka_bootstrap, topic_prefix)
        if history is not None:
            Store.open(history).at(LATEST)  # a readable store holding a generation, or say why not
        current = results if results is not None else results_for(None, history, None)
    except HistoryError as exc:
        _fail(str(exc))
        return
    index = open_index(current, kafka_bootstrap, topic_prefix)
    reload = following(_reloader(current if results is not None else None, history, kafka_bootstrap,
                                 topic_prefix), follow)
    server = MapServer(index, reload, reload_every, history_as_of(history) if history else None)

    def ready(bound: int) -> None:
        typer.echo(json.dumps({"url": f"http://{host}:{bound}/", "networks": len(index),
                               "bootstrap": f"http://{host}:{bound}/bootstrap/ipv4.json"}))
        sys.stdout.flush()

    try:
        run(server, host, port, ready, workers)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc}")


def _reloader(results: str | None, history: Path | None, kafka_bootstrap: str | None,
              topic_prefix: str) -> Reloader:
    """What the server looks at for a newer map: the results file or topic, else the history's
    newest generation."""
    from whoiscrawl.results.source import TOPIC_PREFIX
    from whoiscrawl.serve.server import file_reloader, history_reloader, topic_reloader

    if results is None:
        assert history is not None
        return history_reloader(history)
    if results.startswith(TOPIC_PREFIX):
        return topic_reloader(results, kafka_bootstrap, topic_prefix)
    return file_reloader(Path(results))


def bench_serve(
    networks: Annotated[int, typer.Option(help="Synthetic networks (nested: /20s, /24s, /28s)")] = 5_000_000,
    lookups: Annotated[int, typer.Option(help="Random addresses looked up in one batch")] = 10_000_000,
    baseline: Annotated[int, typer.Option(help="Of those, looked up by ipaddress + bisect too")] = 200_000,
    text_lookups: Annotated[int, typer.Option(
        help="Of those, parsed from text and written as JSON answers (lookup --from's path)")] = 1_000_000,
    requests: Annotated[int, typer.Option(help="RDAP requests sent at most")] = 50_000,
    seconds: Annotated[float, typer.Option(help="... and for at most this long")] = 30.0,
    concurrency: Annotated[int, typer.Option(help="RDAP connections at once")] = 32,
    workers: Annotated[int, typer.Option(help="The RDAP server's processes (serve --workers)")] = 1,
    batch_lines: Annotated[int, typer.Option(
        help="Addresses in a file given to lookup --from --json (its speed and peak memory; 0: none)")] = 0,
    mmdb_lookups: Annotated[int, typer.Option(
        help="Write the map as an MMDB and look this many random addresses up with maxminddb (0: no MMDB)")]
    = 200_000,
    workdir: Annotated[Path | None, typer.Option(help="Where the files go (default: a temp dir)")] = None,
    results: Annotated[Path | None, typer.Option(
        help="Measure this results file instead of synthetic networks (linked into --workdir, its index "
        "saved there)")] = None,
    check: Annotated[int, typer.Option(
        help="Check lookup and the MMDB against the results at this many random addresses (0: none)")] = 0,
    check_every: Annotated[int, typer.Option(
        help="... and at every Nth network's first and last address")] = 1000,
) -> None:
    """Measure the map's serving on synthetic networks (or --results FILE) and print one JSON line:
    index build time, peak memory (beside the saved index loaded) and bytes per network, batch
    lookups/s beside a plain ipaddress + bisect baseline, the RDAP server's requests/s and p99 from
    127.0.0.1, the MMDB's write time, peak memory and maxminddb lookups/s; with --check, lookup and
    the MMDB against the results' own most specific record at a sample of addresses."""
    import json
    import tempfile

    from whoiscrawl.bench.serve import bench_serve as run_bench

    where = workdir or Path(tempfile.mkdtemp(prefix="whoiscrawl-bench-serve-"))
    options = {"lookups": lookups, "baseline": min(baseline, lookups), "text_lookups": text_lookups,
               "requests": requests,
               "seconds": seconds, "concurrency": concurrency, "workers": workers, "batch_lines": batch_lines,
               "mmdb_lookups": mmdb_lookups, "results": results, "check": check, "check_every": check_every}
    if results is not None and not results.is_file():
        _fail(f"{results} is not a results file")
    if check and not mmdb_lookups:
        _fail("--check reads the MMDB too: give --mmdb-lookups above 0")
    typer.echo(json.dumps(run_bench(networks, where, options)))


def register(app: typer.Typer) -> None:
    """Add the serving commands to the `whoiscrawl` command."""
    app.command()(lookup)
    app.command()(serve)
    app.command("bench-serve")(bench_serve)
