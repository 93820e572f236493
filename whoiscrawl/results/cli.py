"""The result commands (`summary`, `export`, `map`, `diff`, `status`, `bench-export`): thin wrappers."""

from __future__ import annotations

import json
from typing import Annotated

import typer

ResultsArg = Annotated[
    str, typer.Argument(help="A results JSONL file, or topic:CRAWL for that crawl's compacted results topic")
]
KafkaOpt = Annotated[
    str | None,
    typer.Option("--kafka-bootstrap", envvar="WHOISCRAWL_KAFKA_BOOTSTRAP", help="Kafka, for topic:CRAWL"),
]
PrefixOpt = Annotated[str, typer.Option("--topic-prefix", envvar="WHOISCRAWL_TOPIC_PREFIX")]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object instead of tables")]
ScopeOpt = Annotated[
    list[str] | None,
    typer.Option("--scope", help="Ranges the shares are of (repeat); default: all allocatable IPv4"),
]


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(2)


def summary(
    results: ResultsArg,
    scope: ScopeOpt = None,
    top: Annotated[int, typer.Option(help="Countries and holders listed")] = 15,
    as_json: JsonOpt = False,
    kafka_bootstrap: KafkaOpt = None,
    topic_prefix: PrefixOpt = "whoiscrawl.",
) -> None:
    """Records, unique blocks, addresses covered and their share of the space, per registry and
    country, and the largest holders (each address counted once, for its most specific block)."""
    from whoiscrawl.results.source import ResultsError, open_results
    from whoiscrawl.results.summary import scope_of, summarize
    from whoiscrawl.results.tables import print_tables, summary_tables
    from whoiscrawl.space import SpaceError

    try:
        with open_results(results, kafka_bootstrap, topic_prefix, seekable=True) as rs:
            doc = summarize(rs, scope_of(scope)).to_dict(top)
    except (ResultsError, SpaceError) as exc:
        _fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps(doc))
    else:
        print_tables(*summary_tables(doc))


def register(app: typer.Typer) -> None:
    """Add the result commands to the `whoiscrawl` command."""
    app.command()(summary)
