"""The fleet's fill as work: a dump's networks to ask again live (its recheck file) cut into batches
every worker may take (`FillBatch`, on the crawl's fill topic), and what the answered batches asked,
summed into the load's figures (pure; the asking is worker/fill.py)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from whoiscrawl.records import FillBatch, NetworkRecord
from whoiscrawl.sources import dumps
from whoiscrawl.store.redis_admin import RedisCrawlAdmin

NETWORKS = 20  # networks a batch, about: the networks naming one contact are kept together
BYTES = 800_000  # at most, a batch's networks as JSON: under Kafka's default 1 MB a message


def batches(recheck: Path, crawl: str, item: str) -> Iterator[tuple[bytes, FillBatch]]:
    """The recheck file's networks as batches, each with its Kafka key. The networks naming one
    abuse contact (by handle only: the contact is asked once for them all) are in one batch, unless
    they are more than `BYTES`: then in batches keyed alike, taken in order from one partition. The
    same file gives the same batches and ids (`fill:<item>:<n>`): a loader that publishes again
    after another died publishes the same batches, each answered once."""
    groups: dict[str, list[str]] = {}  # contact -> its networks (as JSON); "" none named
    loose: list[str] = []
    with recheck.open(encoding="utf-8") as fh:
        for line in fh:
            contact = dumps.unresolved_abuse(NetworkRecord.from_own_json(line))
            (groups.setdefault(contact, []) if contact else loose).append(line.strip())
    n = 0
    registry = item.split(":", 1)[1]
    pending: list[str] = []
    key = b""
    for contact, lines in [*sorted(groups.items()), ("", loose)]:
        for part in _parts(lines):
            if pending and (len(pending) + len(part) > NETWORKS or _size(pending) + _size(part) > BYTES):
                yield key, _batch(crawl, item, n, pending)
                n, pending = n + 1, []
            if not pending:
                key = f"{registry}:{contact}".encode() if contact else f"fill:{item}:{n}".encode()
            pending += part
    if pending:
        yield key, _batch(crawl, item, n, pending)


def _parts(lines: list[str]) -> Iterator[list[str]]:
    """One contact's networks in parts of at most `BYTES` (one part, nearly always)."""
    part: list[str] = []
    for line in lines:
        if part and _size(part) + len(line) > BYTES:
            yield part
            part = []
        part.append(line)
    if part:
        yield part


def _size(lines: list[str]) -> int:
    return sum(len(line) + 1 for line in lines)


def _batch(crawl: str, item: str, n: int, lines: list[str]) -> FillBatch:
    networks = [NetworkRecord.from_own_json(line).to_dict() for line in lines]
    return FillBatch(crawl, f"fill:{item}:{n}", item, networks)


def added(counts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """`seed.ask_again`'s counts of several passes, summed (its `fields` by field)."""
    total: Counter[str] = Counter()
    fields: Counter[str] = Counter()
    for one in counts:
        fields.update(one.get("fields") or {})
        total.update({k: v for k, v in one.items() if isinstance(v, int)})
    return {**dict(total), "fields": dict(fields)}


def figures(done: dict[str, Any], published: Mapping[str, str],
            answered: Mapping[str, str]) -> dict[str, Any]:
    """The load's figures (`done`) with the fill's: each dump's `freshness` (and a refresh's `asked`,
    the carried networks' sample) summed over its batches answered so far, beside how many were
    published (`batches`) and answered (`answered`), and the batches and lookups of each worker that
    finished one (`by_worker`). `published`: batch id -> its item; `answered`: batch id -> what it
    asked (JSON)."""
    by_item: dict[str, list[dict[str, Any]]] = {}
    for batch, item in published.items():
        by_item.setdefault(item, [])
        if batch in answered:
            by_item[item].append(json.loads(answered[batch]))
    for item, counts in sorted(by_item.items()):
        kind, registry = item.split(":", 1)
        workers: dict[str, Counter[str]] = {}
        for one in counts:
            mine = workers.setdefault(str(one.get("worker")), Counter())
            mine.update(batches=1, lookups=one.get("lookups", 0))
        asked = {**added(counts), "batches": sum(1 for i in published.values() if i == item),
                 "answered": len(counts), "by_worker": {w: dict(c) for w, c in sorted(workers.items())}}
        if kind == "dump" and registry in done.get("dumps", {}):
            done["dumps"][registry]["freshness"] = asked
        elif kind == "carried" and "refresh" in done:
            done["refresh"].setdefault("asked", {})[registry] = asked
    return done


def loaded(store: RedisCrawlAdmin) -> dict[str, Any] | None:
    """The crawl's load's figures (`RedisCrawlAdmin.loaded`) with its fill's summed from the batches
    answered so far (`figures`); None before the load is done."""
    done = store.loaded()
    return None if done is None else figures(done, *store.fill())
