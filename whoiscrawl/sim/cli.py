"""`whoiscrawl sim`: serve, files, truth, score and bench-serve for the registry simulator."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="The registry simulator: five RIRs' RDAP and WHOIS over real data.",
                  no_args_is_help=True)

ScenarioOpt = Annotated[str, typer.Option("--scenario", help="quick | standard | full")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="generation seed (default 1)")]
DayOpt = Annotated[int, typer.Option("--day", min=0, help="the world this many days after the first (it "
                                     "changes every day: docs/simulator.md)")]
ChurnOpt = Annotated[str | None, typer.Option(
    "--churn", help="what changes a day: a share of the networks (0.02) or KIND=SHARE pairs (added, "
    "removed, reassigned, split, merged, transferred, moved, renamed, abuse); default about 1.4%")]


def _scenario(name: str, seed: int | None, day: int = 0, churn: str | None = None) -> object:
    """The scenario asked for, on its day, or a bad-parameter error naming what to fix."""
    from whoiscrawl.sim import scenarios
    from whoiscrawl.sim.churn import Churn

    try:
        return scenarios.get(name, seed, day, Churn.parse(churn) if churn else None)
    except (KeyError, ValueError) as exc:
        raise typer.BadParameter(str(exc.args[0] if exc.args else exc)) from exc


@app.command()
def serve(
    scenario: ScenarioOpt = "quick",
    port: Annotated[int, typer.Option(help="RDAP port (0: any free port)")] = 0,
    host: Annotated[str, typer.Option(help="listen address (keep it on 127.0.0.0/8)")] =
        "127.0.0.1",
    whois_port: Annotated[int, typer.Option("--whois-port", help="port-43 WHOIS port")] = 0,
    time_scale: Annotated[float, typer.Option("--time-scale", help="run policies X times faster")]
        = 1.0,
    faults: Annotated[Path | None, typer.Option(help="fault injection file (JSON/YAML)")] = None,
    log: Annotated[Path | None, typer.Option(help="request log JSONL (default: a temp file)")] =
        None,
    seed: SeedOpt = None,
    limits: Annotated[bool, typer.Option("--limits/--no-limits", help="rate limits")] = True,
    latency: Annotated[bool, typer.Option("--latency/--no-latency", help="service latency")] =
        True,
    row_limit: Annotated[int, typer.Option(
        "--row-limit", help="rows a relation search (rdap-down, rdap-bottom) may answer; more: "
        "HTTP 400 Too Many Rows (RIPE NCC's default 10,000)")] = 10_000,
    arin_relation_search: Annotated[bool, typer.Option(
        "--arin-relation-search/--no-arin-relation-search",
        help="ARIN serves RFC 9910 relation search (announced 2025, unverified)")] = True,
    arin_listing_limit: Annotated[int, typer.Option(
        "--arin-listing-limit", min=0, help="networks an ARIN WHOIS `r >` answers at most; more: cut "
        "there, with a notice (ARIN's 256; 0: no cap)")] = 256,
    prepare_files: Annotated[bool, typer.Option(
        "--prepare-files/--no-prepare-files", help="make every published file before serving, as "
        "the registries' files exist before anyone asks (cached; minutes the first time on full)")] = False,
    day: DayOpt = 0,
    churn: ChurnOpt = None,
) -> None:
    """Serve RDAP + bootstrap + WHOIS; first stdout line is one JSON object describing it.
    `POST /sim/advance?days=N` moves the served world N days on."""
    from whoiscrawl.sim.faults import Faults
    from whoiscrawl.sim.scenarios import Scenario
    from whoiscrawl.sim.server import SimConfig, Simulator, describe

    scen = _scenario(scenario, seed, day, churn)
    assert isinstance(scen, Scenario)

    async def run() -> None:
        sim = Simulator(scen, SimConfig(host=host, port=port, whois_port=whois_port, time_scale=time_scale,
                                        faults=Faults.load(faults, time_scale=time_scale), log_path=log,
                                        limits_enabled=limits, latency=latency, row_limit=row_limit,
                                        arin_relation_search=arin_relation_search,
                                        arin_listing_limit=arin_listing_limit))
        if prepare_files:
            await asyncio.to_thread(sim.files.prepare, sim.faults.files)
        await sim.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        sys.stdout.write(describe(sim) + "\n")
        sys.stdout.flush()
        try:
            await stop.wait()
        finally:
            await sim.stop()

    asyncio.run(run())


@app.command()
def files(
    scenario: ScenarioOpt = "quick",
    out: Annotated[Path, typer.Option("--out", help="directory to write <host>/<path> under")] =
        Path("published"),
    seed: SeedOpt = None,
    fault: Annotated[list[str] | None, typer.Option(
        "--fault", help="REGISTRY:KIND, a spoiled file (repeatable; kinds: truncated_gzip, "
        "broken_object, wrong_encoding, record_count, md5_mismatch, stale_serial)")] = None,
    day: DayOpt = 0,
    churn: ChurnOpt = None,
) -> None:
    """Write what the registries publish (delegation statistics and .md5, RPSL dumps, serials),
    from the scenario's world, at their real hosts and paths under --out; one JSON line per file
    (path, bytes, seconds to make it: 0 once in the cache), then the totals."""
    import time

    from whoiscrawl.sim import scenarios
    from whoiscrawl.sim.faults import file_faults
    from whoiscrawl.sim.published import Files

    wanted: dict[str, list[str]] = {}
    for spec in fault or []:
        registry, sep, kind = spec.partition(":")
        if not sep:
            raise typer.BadParameter(f"{spec!r}: write REGISTRY:KIND, e.g. ripencc:truncated_gzip")
        wanted.setdefault(registry, []).append(kind)
    try:
        spoiled = file_faults(wanted)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    started, count, size = time.monotonic(), 0, 0
    scen = _scenario(scenario, seed, day, churn)
    assert isinstance(scen, scenarios.Scenario)
    for row in Files(scen).write_all(out, spoiled):
        typer.echo(json.dumps(row, separators=(",", ":")))
        count, size = count + 1, size + int(str(row["bytes"]))
    typer.echo(json.dumps({"scenario": scenario, "day": day, "files": count, "out": str(out), "bytes": size,
                           "seconds": round(time.monotonic() - started, 1)}, separators=(",", ":")))


@app.command()
def truth(scenario: ScenarioOpt = "quick",
          out: Annotated[Path, typer.Option("--out", help="JSONL file to write")] =
              Path("truth.jsonl"),
          seed: SeedOpt = None, day: DayOpt = 0, churn: ChurnOpt = None,
          changes: Annotated[Path | None, typer.Option(
              "--changes", help="also write the day's changes (JSONL, one a line)")] = None) -> None:
    """Write the ground-truth (findable) blocks of a scenario (on --day) as JSONL."""
    from whoiscrawl.sim import score
    from whoiscrawl.sim.scenarios import Scenario

    scen = _scenario(scenario, seed, day, churn)
    assert isinstance(scen, Scenario)
    n = score.write_truth(scen, out)
    if changes is not None:
        changes.write_text("".join(json.dumps(c.to_dict()) + "\n" for c in scen.changes()), encoding="utf-8")
    typer.echo(json.dumps({"scenario": scenario, "day": day, "blocks": n, "out": str(out),
                           "changes": len(scen.changes())}))


@app.command("score")
def score_cmd(
    scenario: ScenarioOpt = "quick",
    results: Annotated[Path, typer.Option("--results", help="crawl results JSONL")] =
        Path("results.jsonl"),
    log: Annotated[Path | None, typer.Option("--log", help="simulator request log")] = None,
    resolution: Annotated[int, typer.Option(help="gap-probe resolution (prefix length)")] = 24,
    time_scale: Annotated[float, typer.Option("--time-scale")] = 1.0,
    seed: SeedOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON line instead of tables")] = False,
    day: DayOpt = 0,
    churn: ChurnOpt = None,
) -> None:
    """Recall, coverage, lookups, waste, limits, utilization: a table, or one JSON line (--json);
    against the truth of --day."""
    from whoiscrawl.results.tables import print_tables, score_table
    from whoiscrawl.sim import score
    from whoiscrawl.sim.scenarios import Scenario

    scen = _scenario(scenario, seed, day, churn)
    assert isinstance(scen, Scenario)
    figures = score.score(scen, results, log, resolution, time_scale, seed)
    if as_json:
        typer.echo(json.dumps(figures, separators=(",", ":")))
    else:
        print_tables(score_table(figures))


@app.command("bench-serve")
def bench_serve(
    scenario: ScenarioOpt = "standard",
    requests: Annotated[int, typer.Option(help="lookups to fire (bounded)")] = 20_000,
    concurrency: Annotated[int, typer.Option(help="requests in flight")] = 64,
    sources: Annotated[int, typer.Option(help="source addresses 127.0.0.2..")] = 4,
    max_seconds: Annotated[float, typer.Option("--max-seconds")] = 60.0,
    protocol: Annotated[str, typer.Option(help="rdap | whois")] = "rdap",
) -> None:
    """Start `sim serve` in a subprocess, fire lookups from a few addresses, print lookups/s."""
    from whoiscrawl.bench import sim as bench

    result = bench.run(scenario, requests, concurrency, sources, max_seconds, protocol)
    typer.echo(json.dumps(result, separators=(",", ":")))
