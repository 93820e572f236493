"""Rich tables a person reads in seconds: the end of crawl, demo, bench and sim score, and summary."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table


def _n(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if value < 10 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}" if value in (0.0, 1.0) else f"{value:.1%}"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "-"


def print_tables(*tables: Table | Group, console: Console | None = None) -> None:
    out = console or Console(width=110)
    for table in tables:
        out.print(table)


def figures_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    """Two columns, figure and value."""
    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        table.add_row(name, _n(value))
    return table


def summary_tables(doc: dict[str, Any]) -> list[Table]:
    """`whoiscrawl summary`: headline figures, then registries, countries and holders."""
    scope, covered = doc["scope_addresses"], doc["addresses_covered"]
    head = figures_table("Results", [
        ("records", doc["records"]),
        ("unique blocks", doc["blocks"]),
        ("duplicates dropped (latest kept)", doc["duplicates"]),
        ("addresses covered", covered),
        ("share of the space", _pct(covered, scope)),
        ("space (addresses)", scope),
        ("countries / holders", f"{doc['countries']:,} / {doc['holders']:,}"),
    ])
    regs = Table(title="By registry", title_justify="left")
    for col in ("registry", "blocks", "addresses", "share of space"):
        regs.add_column(col, justify="left" if col == "registry" else "right")
    for name, r in doc["by_registry"].items():
        regs.add_row(name, _n(r["blocks"]), _n(r["addresses"]), _pct(r["addresses"], scope))
    for name, r in doc.get("by_source", {}).items():
        regs.add_row(f"source: {name}", _n(r["blocks"]), _n(r["addresses"]), _pct(r["addresses"], scope))
    countries = Table(title="Top countries (addresses)", title_justify="left")
    countries.add_column("country")
    countries.add_column("addresses", justify="right")
    countries.add_column("share", justify="right")
    for cc, n in doc["by_country"].items():
        countries.add_row(cc, _n(n), _pct(n, covered))
    holders = Table(title="Largest holders (addresses)", title_justify="left")
    for col in ("holder", "blocks", "addresses", "share"):
        holders.add_column(col, justify="left" if col == "holder" else "right")
    for h in doc["top_holders"]:
        holders.add_row(h["holder"], _n(h["blocks"]), _n(h["addresses"]), _pct(h["addresses"], covered))
    return [head, regs, countries, holders]


def crawl_table(summary: dict[str, Any], title: str = "Crawl") -> Table:
    """The end of `whoiscrawl crawl`: what it found and what it cost, per registry."""
    lookups, blocks = summary.get("lookups") or 0, summary.get("blocks") or 0
    head = [
        ("complete", "yes" if summary.get("complete") else "no (interrupted)"),
        ("blocks found", blocks),
        ("lookups", lookups),
        ("lookups per block", lookups / blocks if blocks else None),
        ("coverage of the planned space",
         _pct(summary.get("addresses_done") or 0, summary.get("addresses_total") or 0)),
        ("429s / errors", f"{summary.get('rate_limited', 0)} / {summary.get('errors', 0)}"),
        ("wall time (s)", summary.get("wall_s")),
        ("results", summary.get("out")),
    ]
    per = summary.get("lookups_by_registry") or {}
    if per:
        head.append(("lookups by registry", "  ".join(f"{r} {n:,}" for r, n in sorted(per.items()))))
    if summary.get("sources"):
        head.append(("sources", ",".join(summary["sources"])))
    for reg, d in (summary.get("dumps") or {}).items():
        fresh = d.get("freshness") or {}
        head.append((f"dump {reg}", f"{d['in_scope']:,} of {d['records']:,} records in scope "
                     f"(serial {d.get('serial') or '-'}), "
                     f"{d['skipped']:,} skipped; asked again {fresh.get('asked', 0):,}, "
                     f"disagreed {fresh.get('disagreed', 0):,}"))
    notes = summary.get("notes") or []
    if notes:  # one row: the first, and how many (each was a warning on stderr, and all are in --json)
        more = f" (and {len(notes) - 1} more: --json)" if len(notes) > 1 else ""
        head.append(("notes", f"{notes[0][:90]}{'...' if len(notes[0]) > 90 else ''}{more}"))
    if summary.get("real_time"):
        real = summary["real_time"]
        head.append((f"real-limit hours, {real['egress_addresses']} egress", real_time_line(real)))
    return figures_table(title, head)


def real_time_line(doc: dict[str, Any]) -> str:
    """Projected real hours in one line: each registry's, then which is the largest."""
    per = " ".join(f"{r} {v['projected_real_hours']:,.1f}" for r, v in doc["by_registry"].items())
    return f"{per}; max {doc['slowest_registry'] or '-'}"


def estimate_table(doc: dict[str, Any], title: str = "Requests and real time") -> Table:
    """Per registry the requests a crawl needs and the hours they take at its real published limit."""
    table = Table(title=f"{title} (real limits, {doc['egress_addresses']} egress address(es))",
                  title_justify="left")
    for col in ("registry", "requests", "limit /s", "projected real hours"):
        table.add_column(col, justify="left" if col == "registry" else "right")
    for reg, r in doc["by_registry"].items():
        table.add_row(reg, _n(r["requests"]), _n(r["limit_per_s"]), _n(r["projected_real_hours"]))
    table.add_section()
    table.add_row(f"largest: {doc['slowest_registry'] or '-'}", "", "", _n(doc["projected_real_hours"]))
    return table


def score_table(figures: dict[str, Any], title: str = "Score against the simulator's truth") -> Table:
    """`sim score`: recall, coverage, cost, and the share of found blocks whose holder, country and
    abuse e-mail are right, per registry."""
    table = Table(title=title, title_justify="left")
    for col in ("registry", "truth", "found", "recall"):
        table.add_column(col, justify="left" if col == "registry" else "right")
    for reg, r in (figures.get("recall_by_registry") or {}).items():
        table.add_row(reg, _n(r["truth"]), _n(r["found"]), _n(r["recall"]))
    table.add_section()
    table.add_row("all", _n(figures.get("blocks_truth")), _n(figures.get("blocks_found")),
                  _n(figures.get("recall")))
    head = figures_table("", [
        ("address coverage", figures.get("address_coverage")),
        ("recall of blocks >= grid", figures.get("recall_resolution")),
        ("lookups / per block", f"{_n(figures.get('lookups'))} / {_n(figures.get('lookups_per_block'))}"),
        ("wasted lookups (floor)",
         f"{_n(figures.get('wasted_lookups'))} ({_n(figures.get('wasted_floor'))})"),
        ("429s provoked", figures.get("rate_limited")),
    ])
    return _stack(table, Group(head, _accuracy_table(figures.get("field_accuracy") or {})))


def _accuracy_table(accuracy: dict[str, Any]) -> Table:
    """Found blocks whose holder, country and abuse e-mail equal the truth's, per registry."""
    table = Table(title="\nright among found blocks", title_justify="left", box=None, padding=(0, 2))
    people = {"holder": "holder", "country": "country", "abuse e-mail": "abuse_email"}
    for col in ("registry", *people):
        table.add_column(col, justify="left" if col == "registry" else "right")
    for reg, right in accuracy.items():
        table.add_row(reg, *(_share(right.get(f)) for f in people.values()))
    return table


def _stack(*parts: Table | Group) -> Table:
    grid = Table.grid(padding=(0, 4))
    grid.add_column()
    grid.add_column()
    grid.add_row(*parts)
    return grid


def bench_table(run: dict[str, Any]) -> Table:
    """One `whoiscrawl bench` run beside its baselines: a column each."""
    runs = {"sweep" if run.get("strategy") == "sweep" else str(run.get("strategy")): run}
    runs.update({name: r for name, r in (run.get("compare") or {}).items()})
    table = Table(title=f"Bench: {run.get('workers')} workers, {run.get('egress')} egress address(es)",
                  title_justify="left")
    table.add_column("figure")
    for name in runs:
        table.add_column(name, justify="right")
    for key in ("recall_resolution", "address_coverage", "blocks_found", "lookups", "lookups_per_block",
                "wasted_lookups", "rate_limited", "wall_s", "worker_peak_rss_mb", "staging_peak_rss_mb",
                "redis_peak_mb", "results_mb"):
        table.add_row(key, *(_n(r.get(key)) for r in runs.values()))
    return table


def diff_tables(doc: dict[str, Any]) -> list[Table]:
    """`whoiscrawl diff`: counts, then the changes listed."""
    fields = doc["changed_fields"]
    head = figures_table("Diff", [
        ("blocks old / new", f"{doc['old_blocks']:,} / {doc['new_blocks']:,}"),
        ("added", doc["added"]),
        ("removed", doc["removed"]),
        ("changed", doc["changed"]),
        ("transferred", doc["transferred"]),
        ("changed fields", "  ".join(f"{k} {v:,}" for k, v in fields.items() if v) or "-"),
    ])
    table = Table(title=f"Changes (first {len(doc['changes'])})", title_justify="left")
    for col in ("change", "block", "handle", "what"):
        table.add_column(col)
    for c in doc["changes"]:
        fields_changed = c.get("fields", {}).items()
        what = "; ".join(f"{k}: {_short(v['old'])} -> {_short(v['new'])}" for k, v in fields_changed)
        table.add_row(c["change"], f"{c['start_address']} - {c['end_address']}", c["handle"], what)
    return [head, table] if doc["changes"] else [head]


def _short(value: Any) -> str:
    text = " ".join(value) if isinstance(value, list) else str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _work_rows(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    """The rows a local crawl's status and a WhoisCrawl's share: shards, lookups, errors, pace."""
    return [
        ("shards", f"{doc['shards']['done']:,} / {doc['shards']['total']:,}"),
        ("lookups / blocks", f"{doc['lookups']:,} / {doc['blocks']:,}"),
        ("429s / errors", f"{doc['rate_limited']} / {doc['errors']}"),
        ("addresses per second", doc["addresses_per_s"]),
    ]


def status_tables(doc: dict[str, Any], name: str) -> list[Table]:
    """`whoiscrawl status`: progress and ETA, then the registries."""
    eta = doc["eta_s"]
    head = figures_table(f"Crawl {name}", [
        ("state", "complete" if doc["complete"] else "in progress or stopped"),
        ("progress", _pct(doc["addresses"]["done"], doc["addresses"]["total"])),
        *_work_rows(doc),
        ("ETA", "-" if eta is None else f"{eta / 60:.1f} min"),
        ("checkpoint written", doc["updated_at"]),
    ])
    regs = Table(title="By registry (shards by the IANA /8 table)", title_justify="left")
    for col in ("registry", "shards done", "shards active", "addresses walked", "records"):
        regs.add_column(col, justify="left" if col == "registry" else "right")
    for reg, r in doc["by_registry"].items():
        cells = (r["shards_done"], r["shards_active"], r["addresses_done"], r["blocks"])
        regs.add_row(reg, *(_n(c) for c in cells))
    for source, n in doc.get("by_source", {}).items():
        regs.add_row(f"source: {source}", "", "", "", _n(n))
    return [head, regs]


def _schedule_rows(sched: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """A scheduled crawl's generation, its slots and the last generation's result."""
    if not sched:
        return []
    last = sched.get("lastGeneration") or {}
    return [("generation", f"{sched.get('generation', 1)}  ({sched.get('state') or '-'})"),
            ("last / next schedule", f"{sched.get('lastScheduleTime') or '-'} / "
                                     f"{sched.get('nextScheduleTime') or '-'}"),
            *([("last skipped (too late)", sched["lastMissedTime"])] if sched.get("lastMissedTime") else []),
            ("last generation", f"{last['generation']}: {last.get('result')}, {last.get('blocks')} "
                                f"blocks, {last.get('lookups')} lookups, done {last.get('completionTime')}"
             if last else "-")]


def cluster_status_tables(doc: dict[str, Any]) -> list[Table]:
    """`whoiscrawl status NAME` for a WhoisCrawl: progress, workers, conditions."""
    eta, w = doc["eta_s"], doc["workers"]
    head = figures_table(f"WhoisCrawl {doc['crawl']}", [
        ("phase", doc["phase"]),
        ("progress", "-" if doc["progress"] is None else f"{100 * doc['progress']:.2f}%"),
        *_work_rows(doc),
        ("ETA", "-" if eta is None else f"{eta / 60:.1f} min ({doc['eta']})"),
        ("work lag (messages)", doc["lag"]),
        ("workers desired / current / ready",
         " / ".join(str(w.get(k, "-")) for k in ("desired", "current", "ready"))
         + (f"  {w['reason']}" if w.get("reason") else "")),
        *_schedule_rows(doc.get("schedule")),
    ])
    conditions = Table(title="Conditions", title_justify="left")
    for col in ("type", "status", "reason", "message"):
        conditions.add_column(col)
    for c in doc["conditions"]:
        conditions.add_row(*(str(c.get(k) or "") for k in ("type", "status", "reason", "message")))
    return [head, conditions]
