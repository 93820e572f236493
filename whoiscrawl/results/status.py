"""`whoiscrawl status`: one view of a local crawl from its checkpoint and results: progress, ETA."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from whoiscrawl.ipv4 import ip_int
from whoiscrawl.records import Progress, Shard
from whoiscrawl.results.source import parse_line
from whoiscrawl.space import registry_for
from whoiscrawl.store.memory import CheckpointError, read_checkpoint
from whoiscrawl.strategy import walk_for

CHECKPOINT_SUFFIX = ".checkpoint.json"  # beside the results file, as `whoiscrawl crawl` writes it


class StatusError(ValueError):
    """No crawl to show: the text says what was looked for."""


def paths_of(name: str) -> tuple[Path, Path]:
    """(results, checkpoint) from either path."""
    path = Path(name)
    if path.name.endswith(CHECKPOINT_SUFFIX):
        return path.with_name(path.name[: -len(CHECKPOINT_SUFFIX)]), path
    return path, path.with_name(path.name + CHECKPOINT_SUFFIX)


@dataclass
class Snapshot:
    """A local crawl as its files show it at one moment."""

    progress: Progress
    taken_at: float  # the checkpoint's modification time (the crawl saves it every 0.5 s)
    started_at: float | None  # when the first result arrived
    by_registry: dict[str, dict[str, int]]
    by_source: dict[str, int]  # records by where they were read: rdap, whois, dump, stats


def snapshot(name: str) -> Snapshot:
    results, checkpoint = paths_of(name)
    if not checkpoint.is_file():
        raise StatusError(f"no checkpoint {checkpoint}: is {results} a local crawl's --out?")
    try:
        state = read_checkpoint(checkpoint)
    except CheckpointError as exc:
        raise StatusError(str(exc)) from exc
    by_registry: dict[str, dict[str, int]] = {}
    for shard_id in state.get("done", []):
        first, last = (ip_int(a) for a in shard_id.split("-"))
        row = _row(by_registry, first)
        row["shards_done"] += 1
        row["addresses_done"] += last - first + 1
    for shard_id, saved in state.get("cursors", {}).items():
        first, last = (ip_int(a) for a in shard_id.split("-"))
        walk = walk_for(Shard("local", shard_id, first, last), str(saved))  # read as the crawl reads it
        row = _row(by_registry, first)
        row["shards_active"] += 1
        row["addresses_done"] += max(0, walk.cursor - first)
    started, blocks, sources = _results(results)
    for registry, n in blocks.items():
        by_registry.setdefault(registry, _empty())["blocks"] = n
    return Snapshot(Progress(**state["counters"]), checkpoint.stat().st_mtime, started,
                    dict(sorted(by_registry.items())), dict(sorted(sources.items())))


def _empty() -> dict[str, int]:
    return {"shards_done": 0, "shards_active": 0, "addresses_done": 0, "blocks": 0}


def _row(rows: dict[str, dict[str, int]], first: int) -> dict[str, int]:
    return rows.setdefault(registry_for(first) or "iana", _empty())


def _results(path: Path) -> tuple[float | None, Counter[str], Counter[str]]:
    """When the first record arrived, and records per registry and per source (a streaming read)."""
    started, blocks, sources = None, Counter[str](), Counter[str]()
    if path.is_file():
        with path.open("rb") as fh:
            for line in fh:
                doc = parse_line(line)
                if doc is None:
                    continue
                blocks[doc["registry"]] += 1
                sources[str(doc.get("source") or "rdap")] += 1
                if started is None and doc.get("fetched_at"):
                    started = datetime.fromisoformat(doc["fetched_at"]).timestamp()
    return started, blocks, sources


def report(now: Snapshot, before: Snapshot | None = None) -> dict[str, Any]:
    """Progress, rate and ETA: the rate between two snapshots, or since the first result."""
    p = now.progress
    done, total = p.addresses_done, p.addresses_total
    rate = None
    if before is not None and now.taken_at > before.taken_at:
        rate = (done - before.progress.addresses_done) / (now.taken_at - before.taken_at)
    elif now.started_at is not None and now.taken_at > now.started_at:
        rate = done / (now.taken_at - now.started_at)
    complete = bool(p.shards_total) and p.shards_done >= p.shards_total
    eta = 0.0 if complete else ((total - done) / rate if rate else None)
    return {
        "complete": complete,
        "progress": round(done / total, 6) if total else None,
        "shards": {"done": p.shards_done, "total": p.shards_total},
        "addresses": {"done": done, "total": total},
        "lookups": p.lookups, "blocks": p.blocks, "rate_limited": p.rate_limited, "errors": p.errors,
        "addresses_per_s": round(rate, 1) if rate is not None else None,
        "eta_s": round(eta, 1) if eta is not None else None,
        "updated_at": datetime.fromtimestamp(now.taken_at).isoformat(timespec="seconds"),
        "by_registry": now.by_registry,
        "by_source": now.by_source,
    }


# (namespace, name) -> the WhoisCrawl resource, or None when there is none. The CLI picks the backend
# (the operator's Kubernetes client) and passes it down: results import nothing of the operator.
CrawlReader = Callable[[str, str], dict[str, Any] | None]


def fetch_crawl(name: str, namespace: str, read: CrawlReader) -> dict[str, Any]:
    """A WhoisCrawl resource through `read`; a StatusError naming it when there is none."""
    crawl = read(namespace, name)
    if crawl is None:
        raise StatusError(f"no local crawl {name}, and no whoiscrawl {name} in namespace {namespace}")
    return crawl


def cluster_report(crawl: dict[str, Any]) -> dict[str, Any]:
    """The same view from a WhoisCrawl's status, as the operator writes it (no per-registry figures:
    the operator keeps none)."""
    st = crawl.get("status") or {}
    meta = crawl.get("metadata") or {}
    shards = st.get("shards") or {}
    addresses = st.get("addresses") or {}
    conditions = {c.get("type"): c for c in st.get("conditions") or []}
    completed = conditions.get("Completed", {}).get("status") == "True"
    progress = st.get("progress")
    return {
        "crawl": f"{meta.get('namespace')}/{meta.get('name')}",
        "phase": st.get("phase"),
        "complete": completed,
        "progress": round(progress / 100, 6) if isinstance(progress, int | float) else None,
        "shards": {"done": shards.get("done", 0), "total": shards.get("total", 0)},
        "addresses": {"done": addresses.get("done", 0), "total": addresses.get("total", 0)},
        "lookups": st.get("lookups", 0), "blocks": st.get("blocks", 0),
        "rate_limited": st.get("rateLimited", 0), "errors": st.get("errors", 0),
        "addresses_per_s": (st.get("rate") or {}).get("addressesPerSecond"),
        "eta_s": st.get("etaSeconds"),
        "eta": st.get("eta"),
        "lag": st.get("lag"),
        "workers": st.get("workers") or {},
        "schedule": st.get("schedule"),  # a scheduled crawl's generation, slots, last result
        "conditions": [{k: c.get(k) for k in ("type", "status", "reason", "message")}
                       for c in st.get("conditions") or []],
    }
