"""The history commands (`history add|list|prune`, `changes`): thin wrappers over the store and the feed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from whoiscrawl.results.cli import KafkaOpt, PrefixOpt

app = typer.Typer(no_args_is_help=True, help="Dated generations of a map: add, list, prune (docs/history.md)")

StoreOpt = Annotated[Path, typer.Option("--store", help="The history store (a folder)")]
HistoryOpt = Annotated[Path, typer.Option(
    "--history", help="The history store (a folder), or topic:CRAWL (a fleet crawl's change feed)")]


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(2)


@app.command("add")
def add_cmd(
    map_file: Annotated[str, typer.Argument(
        metavar="MAP", help="The map of DATE: a results JSONL file, or topic:CRAWL (its results topic)")],
    day: Annotated[str, typer.Option(
        "--date", help="The map's date, YYYY-MM-DD, or a time in UTC (after the newest kept)")],
    store: StoreOpt,
    scope: Annotated[list[str] | None, typer.Option(
        "--scope", help="The ranges the map covers (repeat); default all IPv4; every generation's the same")]
    = None,
    kafka_bootstrap: KafkaOpt = None,
    topic_prefix: PrefixOpt = "whoiscrawl.",
) -> None:
    """Keep MAP as the store's generation of DATE: the first whole, each later one as its change set
    from the one before. Prints the generation as one JSON line."""
    from dataclasses import asdict
    from functools import partial

    from whoiscrawl.history.store import HistoryError, add, parse_date
    from whoiscrawl.results.source import ResultsError, open_results

    opener = partial(open_results, kafka_bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, seekable=True)
    try:
        gen = add(store, map_file, parse_date(day), scope, opener)
    except (HistoryError, ResultsError) as exc:
        _fail(str(exc))
        return
    typer.echo(json.dumps({**asdict(gen), "bytes": (store / gen.file).stat().st_size}))


@app.command("list")
def list_cmd(
    store: StoreOpt,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a generation")] = False,
) -> None:
    """The store's generations, oldest first: date, kind, blocks, changes by kind, bytes on disk."""
    from rich.table import Table

    from whoiscrawl.history.store import HistoryError, Store
    from whoiscrawl.results.diff import KINDS
    from whoiscrawl.results.tables import print_tables

    try:
        st = Store.open(store)
    except HistoryError as exc:
        _fail(str(exc))
        return
    rows = [{"date": g.date, "kind": g.kind, "blocks": g.blocks, **{k: g.counts.get(k) for k in KINDS},
             "bytes": (store / g.file).stat().st_size if (store / g.file).is_file() else None}
            for g in st.generations]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    table = Table(title=f"{store}: {len(rows)} generation(s), {st.bytes():,} bytes", title_justify="left")
    for col in rows[0] if rows else ["date"]:
        table.add_column(col, justify="left" if col in ("date", "kind") else "right")
    for row in rows:
        table.add_row(*("-" if v is None else f"{v:,}" if isinstance(v, int) else str(v)
                        for v in row.values()))
    print_tables(table)


@app.command("prune")
def prune_cmd(
    store: StoreOpt,
    keep: Annotated[int, typer.Option("--keep", help="Generations kept: the newest N")],
) -> None:
    """Keep the newest N generations (the oldest kept is written whole); prints what went, as JSON."""
    from whoiscrawl.history.store import HistoryError, Store, prune

    try:
        gone = prune(store, keep)
        kept = Store.open(store)
    except HistoryError as exc:
        _fail(str(exc))
        return
    typer.echo(json.dumps({"removed": [g.date for g in gone], "kept": [g.date for g in kept.generations],
                           "bytes": kept.bytes()}))


def changes(
    since: Annotated[str, typer.Option(
        "--since", help="Changes of the generations after this date (YYYY-MM-DD, or a time in UTC)")],
    history: HistoryOpt,
    until: Annotated[str | None, typer.Option("--until", help="... up to this date (default: all)")] = None,
    publish: Annotated[str | None, typer.Option(
        "--publish", metavar="CRAWL", help="Put the feed on CRAWL's change-feed topic "
        "(<prefix>CRAWL.changes): the generations not on it yet")] = None,
    kafka_bootstrap: KafkaOpt = None,
    topic_prefix: PrefixOpt = "whoiscrawl.",
) -> None:
    """The change feed: every block added, removed, changed or transferred in the generations dated
    after --since, oldest first, one JSON object a line (date, kind, registry, range, start and end
    address, handle, fields old/new, from/to of a transfer, source); with --publish, onto Kafka."""
    import os
    import sys

    from confluent_kafka import KafkaException

    from whoiscrawl.history import feed
    from whoiscrawl.history.store import HistoryError, Store, parse_date
    from whoiscrawl.history.topic import store_path
    from whoiscrawl.queue import kafka_config_from

    if publish and not kafka_bootstrap:
        _fail("--publish needs --kafka-bootstrap (or WHOISCRAWL_KAFKA_BOOTSTRAP)")
    try:
        store = Store.open(store_path(history, kafka_bootstrap, topic_prefix))
        start = parse_date(since, "--since")
        end = parse_date(until, "--until") if until else None
        lines = feed.feed(store, start, end)  # checks the dates before anything is published
        if publish and kafka_bootstrap:
            kafka = feed.Kafka(kafka_bootstrap, publish, topic_prefix, kafka_config_from(os.environ))
            typer.echo(json.dumps(feed.publish(store, start, end, kafka)))
            return
        for doc in lines:
            sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
    except HistoryError as exc:
        _fail(str(exc))
    except KafkaException as exc:
        _fail(f"publishing to Kafka at {kafka_bootstrap} failed: {exc}")


def register(main: typer.Typer) -> None:
    """Add the history commands to the `whoiscrawl` command."""
    main.add_typer(app, name="history")
    main.command()(changes)
