"""The published files in a fleet crawl: loaded once, by whichever worker holds the load's lease,
before any shard is walked (docs/sources.md).

Each item (a registry's free space from its statistics; a registry's dump) is staged to disk,
then sent to the results topic in batches. Before a batch, where the results topic ends is noted
in Redis; once the broker has acknowledged the batch, its blocks go to the block log and the
item's count moves on, in one write fenced by the lease. A loader that dies mid-batch leaves the
note: the next reads what the results topic got since and sends only the rest. Killing a loader
loses nothing and sends nothing twice. Each progress write is copied to the checkpoints topic
before the load goes on, so a Redis that loses the crawl is rebuilt with it: the next loader goes
on from there (before, it loaded the files again and sent every record twice). A dump's parents
become leaves only once the whole dump is sent (a load cut short leaves them parents, walked live).

A generation given the previous one (`previous`, `WHOISCRAWL_PREVIOUS`) refreshes it by difference
(worker/carry.py): what the previous map holds that the newer files leave unchanged is sent as one
more item a registry (`carried:<registry>`), logged as leaves, so no walk asks it again. The `done`
write keeps the load's manifest (its scope, serials and statistics rows) for the next generation."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from whoiscrawl.worker import carry

from whoiscrawl import queue
from whoiscrawl.crawl import ResultSink
from whoiscrawl.ipv4 import Spans
from whoiscrawl.publish import publish_plan
from whoiscrawl.records import FillBatch, NetworkRecord
from whoiscrawl.registry import RegistryClient
from whoiscrawl.sources import changed, digest, dumps, fill, freshness, manifest, seed
from whoiscrawl.sources.difference import Previous, facts, stats_difference
from whoiscrawl.sources.fetch import discard
from whoiscrawl.sources.published import (
    RegistryDump,
    SourcesSettings,
    StatsPlan,
    fetch_dumps,
    stale_note,
    went_back,
)
from whoiscrawl.space import Plan, Scope, special_shards
from whoiscrawl.store import Lease, LeaseLost, renewing
from whoiscrawl.store.redis_admin import RedisCrawlAdmin
from whoiscrawl.store.redis_blocks import RedisBlockStore
from whoiscrawl.strategy import Answer

log = logging.getLogger(__name__)

BATCH = 500  # records a batch: sent, acknowledged, then logged as blocks in one write
MARKS_EVERY = 10  # batches noted with the results topic's ends asked once (`_marks`)
FILL_CHUNK = 1000  # the fill's batches published at a time (acknowledged, then counted among the shards)
WAIT_S = 0.5  # how often a worker waiting for another's load looks again
PREVIOUS_DIGESTS = "previous-digests"  # the cache's folder of the previous generation's digests


@dataclass(frozen=True)
class Results:
    """The crawl's results topic, as the load reads it back."""

    bootstrap: str
    prefix: str
    crawl: str
    config: dict[str, str] = field(default_factory=dict)

    @functools.cached_property
    def admin(self) -> AdminClient:
        """One client for the load's life (`ends` is asked before every batch), made when first
        asked: a worker that never loads makes none."""
        return AdminClient({"bootstrap.servers": self.bootstrap, **self.config})

    def ends(self) -> dict[int, int]:
        return queue.results_ends(self.bootstrap, self.prefix, self.crawl, self.config, self.admin)

    def since(self, marks: dict[int, int]) -> set[tuple[bytes, bytes]]:
        return queue.results_since(self.bootstrap, self.prefix, self.crawl, marks, self.config)

    def of(self, crawl: str) -> Iterator[bytes]:
        """Every record of another crawl's results topic (a previous generation's), as written."""
        return queue.iter_result_values(self.bootstrap, self.prefix, crawl, self.config)


def _facts(raw: bytes) -> bytes:
    """A record as a resumed batch tells it delivered: every field but when and by whom it was read
    (`difference.facts`). The loader taking over reads the same files at another time (a dump served
    without the same Last-Modified is dated by its fetch), so its copy of a delivered record differs
    in those alone: exact bytes sent it twice. Hashable, to look each record of the batch up."""
    return json.dumps(facts(json.loads(raw)), sort_keys=True).encode()


@dataclass
class Item:
    """One thing the load sends: a registry's dump, or its statistics' free space, staged to disk."""

    name: str  # "stats:<registry>", "dump:<registry>" or "carried:<registry>"
    serials: dict[str, str]  # registry -> the serial of the file it came from
    staged: Path
    how: dict[str, Any] | None = None  # a dump's leaf rule (seed.leaf_rule); None: statistics
    figures: dict[str, Any] = field(default_factory=dict)
    dump: RegistryDump | None = None  # a dump's: what a refresh compares with the previous map
    kept_live: Spans = field(default_factory=Spans)  # a dump's networks whose fill is carried

    @property
    def kind(self) -> str:
        return self.name.split(":", 1)[0]


@dataclass
class FleetLoad:
    """One worker's part in loading the crawl's published files (`ready`)."""

    settings: SourcesSettings
    store: RedisBlockStore
    sink: ResultSink
    results: Results
    client: RegistryClient  # the freshness check's lookups
    owner: str
    cache: Path  # where files are downloaded and staged
    stats: StatsPlan | None = None  # the statistics, fetched already (the worker routes by them)
    # Where the load's progress is copied, for a rebuild of a lost Redis (None: Redis alone)
    checkpoints: queue.CheckpointSink | None = None
    resolution: int = 24
    concurrency: int = 16
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    notes: list[str] = field(default_factory=list)
    # Registries whose statistics here (`stats`) are older than those the crawl's load used: not
    # routed by (`stale_routing`)
    stale: set[str] = field(default_factory=set)
    previous: str | None = None  # the previous generation's crawl, refreshed by difference (None: none)
    refresh: dict[str, Any] = field(default_factory=dict)  # what the refresh did, or why it was refused
    refused: set[str] = field(default_factory=set)  # registries whose statistics the load refused (stale)
    # seconds each part of this loader's load took (`_timed`), kept in `done` for the bench: where
    # a generation's wall goes (issue 24)
    phases: dict[str, float] = field(default_factory=dict)
    _ends: tuple[int, dict[int, int]] | None = None  # the results topic's ends last asked, and batches since

    @contextlib.contextmanager
    def _timed(self, phase: str) -> Iterator[None]:
        """Add the seconds the block takes to `phases[phase]`."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.phases[phase] = self.phases.get(phase, 0.0) + time.monotonic() - started

    def note(self, text: str) -> None:
        log.warning("%s", text)
        self.notes.append(text)

    async def ready(self) -> dict[str, Any] | None:
        """Return once the files are loaded (by this worker or another) and their blocks known:
        the load's figures. None: the worker stops first."""
        while not self.stopping.is_set():
            state = await self.store.sources_state()
            if "done" in state:
                await self.store.sync()
                done: dict[str, Any] = json.loads(state["done"])
                self.stale = self.stale_routing(state)
                return done
            if await self.store.take_sources(self.owner):
                try:
                    renew = functools.partial(self.store.renew_sources, self.owner)
                    async with renewing(renew, "the published files' load", Lease.sources()):
                        await self._load(state)
                except LeaseLost as lost:
                    log.warning("%s (a stall?): another worker loads the files now", lost)
                finally:
                    await self.store.release_sources(self.owner)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), WAIT_S)
        return None

    async def _load(self, state: dict[str, str]) -> None:
        """The delegations in special-purpose space planned, every item sent (from where the last
        loader stopped), then the freshness check."""
        self.phases["started_at"] = round(time.time(), 2)
        await self.store.sync()
        if self.stats is not None and "special" not in state:
            with self._timed("special"):
                await self._plan_special()
        scope = await self.store.scope()
        self.cache.mkdir(parents=True, exist_ok=True)
        with self._timed("previous_manifest"):
            old = await self._previous()
        with contextlib.ExitStack() as held:
            prev = None
            if old is not None:
                with self._timed("read_previous_map"):  # the whole previous map: in a thread
                    prev = await asyncio.to_thread(self._previous_map)
                if prev is not None:  # read before the dumps, each staged against its previous read
                    held.enter_context(prev)
            # a file older than this crawl used is refused, not compared with the previous generation
            staged = await self._stage(scope, old if prev is not None else None, prev)
            used = [i for i in staged if not self._stale(i, _done(state, i))]
            self.refused = {r for i in staged if i.kind == "stats" and i not in used for r in i.serials}
            if old is not None and prev is not None:
                try:  # reads every staged dump: in a thread
                    with self._timed("compare"):
                        carried = await asyncio.to_thread(self._carry, old, used, scope, prev)
                except carry.Refused as why:
                    self._refused(str(why))
                else:
                    used += [i for i in carried if not self._stale(i, _done(state, i))]
        inflight = json.loads(state.get("inflight", "null"))
        for item in used:
            done = _done(state, item)
            same = bool(done) and done["serials"] == item.serials
            sent = same and done.get("sent")  # whole, by a loader before
            with self._timed(f"send_{item.kind}"):
                if not sent and not await self._send(item, done["count"] if same else 0, inflight):
                    return  # stopping: the next loader carries on from here
            if item.how is not None:
                with self._timed("leaves"):
                    await self._leaves(item)  # again after a loader that died past it: the same leaves
        if not self.stopping.is_set():
            await self._finish(used, scope, state)

    async def _plan_special(self) -> None:
        """The delegations the statistics list in special-purpose space the plan withheld (ARIN's
        AS112 block 192.175.48.0/24): the operator plans without the statistics, so they are
        planned here, before any shard is walked, as a plan is published (`publish_plan`: the work
        topic, then the planned shards, totals and scope). Their ids are the load's progress: a
        loader after this one plans them no more (one killed before that publishes them again, with
        the same ids: counted once, walked once)."""
        assert self.stats is not None
        shards = special_shards(await self.store.special(), self.stats.special_delegations())
        if shards:
            admin, results = RedisCrawlAdmin(self.store.url, self.results.crawl), self.results
            plan = Plan(results.crawl, shards)
            try:
                await asyncio.to_thread(publish_plan, plan, bootstrap=results.bootstrap,
                                        prefix=results.prefix, store=admin, config=results.config)
            finally:
                admin.client.close()
            log.info("planned %d shards of special-purpose space the statistics list delegated", len(shards))
        await self._write(fields={"special": json.dumps([s.shard_id for s in shards])})

    async def _stage(self, scope: Scope | None, old: manifest.Manifest | None = None,
                     prev: Previous | None = None) -> list[Item]:
        """The statistics' free space and the dumps in scope, staged (as items to send); with the
        previous generation's manifest and map, each dump read against its previous read's digest
        (`_reuse`: only what changed parsed). Each read's digest is kept on the crawl's digests
        topic, for the next generation."""
        # Staging reads whole files: in a thread, or the loop could not renew the lease meanwhile.
        with self._timed("stage_stats"):
            items = await asyncio.to_thread(self._free_space, self.stats, scope) if self.stats else []
        if "dumps" in self.settings.sources:
            settings = self.settings
            with self._timed("download_dumps"):
                got, notes = await fetch_dumps(settings.files_base, self.cache, settings.accept_dump_terms)
            for text in notes:
                self.note(text)
            with self._timed("read_previous_digests"):
                reuse = await asyncio.to_thread(self._reuse, got, scope, old, prev) if old and prev else {}
            stagings = seed.staged_all(got, scope, self.cache, digests=True, reuse=reuse)
            with self._timed("parse_dumps"):
                async with contextlib.aclosing(stagings):
                    async for dump, staged, report in stagings:  # in processes of their own
                        discard(dump.paths, self.cache)  # staged (or not to be used): not read again
                        if (item := self._staged(dump, staged, report, dump.registry in reuse)) is not None:
                            items.append(item)
            shutil.rmtree(self.cache / PREVIOUS_DIGESTS, ignore_errors=True)  # read: its disk back
            with self._timed("keep_digests"):
                for item in items:
                    if item.dump is not None:
                        await asyncio.to_thread(self._keep_digest, item.dump.registry)
        return items

    def _previous_map(self) -> Previous | None:
        """The previous generation's map from its results topic (None, and a note why: none)."""
        assert self.previous is not None
        try:
            return carry.previous_map(self.previous, self.results.of(self.previous), self.cache)
        except carry.Refused as why:
            self._refused(str(why))
            return None

    def _reuse(self, got: list[RegistryDump], scope: Scope | None, old: manifest.Manifest,
               prev: Previous) -> dict[str, changed.Reuse]:
        """Each dump's previous read, if the previous generation can be refreshed from with these
        files (`carry.check`, as `_carry` checks it again) and kept its digest: the dump is then read
        against it, its unchanged networks staged unparsed (`seed.stage`). None kept (a generation
        loaded before 2026-12-07, or its topic gone): read whole."""
        stats = self.stats.serials if self.stats else {}
        now: dict[str, dict[str, str]] = {r: {"stats": s} for r, s in stats.items()}
        for dump in got:
            now.setdefault(dump.registry, {})["dump"] = dump.serial or ""
        try:
            carry.check(self.previous or "", old, scope, now)
        except carry.Refused:
            return {}  # said by `_carry`, which refuses it again
        folder = self.cache / PREVIOUS_DIGESTS
        kept = queue.get_digests(self.results.bootstrap, self.results.prefix, self.previous or "",
                                 functools.partial(digest.path_of, folder), self.results.config)
        return {d.registry: r for d in got if d.registry in kept and (r := prev.reuse(d.registry, folder))}

    def _keep_digest(self, registry: str) -> None:
        """A dump read's digest onto the crawl's digests topic (the next generation's `_reuse`)."""
        path = digest.path_of(self.cache, registry)
        if not path.exists():
            return
        try:
            queue.put_digest(self.results.bootstrap, self.results.prefix, self.results.crawl, registry, path,
                             self.results.config)
        except KafkaException as exc:  # the map is whole without it: the next generation parses it whole
            self.note(f"{registry} dump's digest not kept ({exc}): the next generation reads the dump whole")
        finally:
            path.unlink()  # on the topic (or not to be had): its disk back (GBs for the whole space)

    async def _finish(self, used: list[Item], scope: Scope | None, state: dict[str, str]) -> None:
        """Every item sent: the fill and the freshness sample published as work for every worker
        (`_publish_fill`), then `done` with the load's figures and manifest: the walk starts now,
        beside the fill. What the fill's batches asked is summed from them as they are answered
        (`sources.fill.loaded`), not kept in `done`."""
        figures: dict[str, Any] = {}
        results = self.results
        with self._timed("publish_fill"):
            await asyncio.to_thread(queue.ensure_fill_topic, results.bootstrap, results.prefix, results.crawl,
                                    results.config)  # every worker reads it once the load is done
            for item in used:
                if item.how is not None:
                    fresh = await self._publish_fill(item, state)
                    figures[item.name.split(":", 1)[1]] = {**item.figures, "freshness": fresh}
                elif item.kind == "carried" and (asked := await self._publish_fill(item, state)):
                    self.refresh.setdefault("asked", {})[item.name.split(":", 1)[1]] = asked
        made = carry.made_by(scope, self.stats, self._serials(used))
        header, rows = carry.manifest_fields(made)
        loaded = {"sources": sorted(self.settings.sources), "dumps": figures, "notes": self.notes[:20],
                  "serials": {i.name: i.serials for i in used}, "manifest": header,
                  **({"refresh": self.refresh} if self.refresh else {}),
                  "phases": {**{k: round(v, 2) for k, v in self.phases.items()},
                             "ended_at": round(time.time(), 2)}}
        # the manifest's rows and `done` in one write: a finished load always has its whole manifest
        await self._write(fields={**rows, "done": json.dumps(loaded)})

    async def _previous(self) -> manifest.Manifest | None:
        """The previous generation's manifest, if this load refreshes one it can (else a note why not)."""
        if not self.previous:
            return None
        try:
            return carry.read_manifest(self.previous, await self.store.sources_state(self.previous))
        except carry.Refused as why:
            self._refused(str(why))
            return None

    def _serials(self, items: list[Item]) -> dict[str, dict[str, str]]:
        """registry -> {"stats": serial, "dump": serial} of the files the load used (a manifest's):
        every registry's statistics read, whether or not it has free space in scope (an item), but
        those refused as older than this crawl used; the dumps sent."""
        stats = self.stats.serials.items() if self.stats else []
        serials = {r: {"stats": s} for r, s in stats if r not in self.refused}
        for item in items:
            if item.kind == "dump":
                for registry, serial in item.serials.items():
                    serials.setdefault(registry, {})["dump"] = serial
        return serials

    def _refused(self, why: str) -> None:
        self.note(f"not a refresh of {self.previous}: {why}; this generation crawls anew")
        self.refresh = {"previous": self.previous, "refused": why}

    def _carry(self, old: manifest.Manifest, items: list[Item], scope: Scope | None,
               prev: Previous) -> list[Item]:
        """The previous generation's networks the new files leave unchanged, staged as one item a
        registry (`carried:<registry>`); Refused (nothing carried) if it cannot be refreshed from."""
        assert self.previous is not None
        serials = self._serials(items)
        carry.check(self.previous, old, scope, serials)
        carried = carry.Carried(self.cache)  # spooled there, read back, deleted: a map of GBs
        with contextlib.closing(carried):
            for item in items:
                if item.dump is not None:
                    resolved = item.staged.with_name(f"resolved-{item.staged.name}")
                    with seed.open_staged(item.staged) as fh, seed.open_staged(resolved, "w") as out:
                        carry.from_dump(carried, item.dump, fh, prev, out)
                    resolved.replace(item.staged)  # what the item sends: every network parsed
                    item.kept_live = carried.kept_live.get(item.dump.registry, Spans())
            made = carry.made_by(scope, self.stats, serials)
            dumped = {i.dump.registry for i in items if i.dump is not None}
            fresh = {r for r, s in serials.items() if "stats" in s}
            difference = stats_difference(old.rows, made.rows, dumped, fresh)
            step = freshness.every(self.settings.verify) if "live" in self.settings.sources else 0
            carry.from_stats(carried, difference, prev, step)
        self.refresh = {"previous": self.previous, "by_registry": carried.figures()}
        return [self._carried(registry, carried.path(registry), carried.sample.get(registry, []),
                              serials.get(registry, {})) for registry in sorted(carried.files)]

    def _carried(self, registry: str, staged: Path, sample: list[NetworkRecord],
                 serials: dict[str, str]) -> Item:
        """A registry's carried networks (staged by `carry.Carried`), and its freshness sample as its
        recheck file."""
        serial = serials.get("dump") or serials.get("stats") or ""
        item = Item(f"carried:{registry}", {registry: serial}, staged)
        if sample:
            with self._recheck(item).open("w", encoding="utf-8") as fh:
                fh.writelines(replace(r, raw=None).to_json().decode() + "\n" for r in sample)
        return item

    async def _write(
        self, answers: list[Answer] | None = None, *, fields: dict[str, str] | None = None,
        clear: tuple[str, ...] = (), wait: bool = True,
    ) -> None:
        """One step of the load in Redis (`sources_write`, fenced by the lease), its progress then
        copied to the checkpoints topic and delivered before the load goes on: a Redis lost at any
        moment is rebuilt with the load's progress (`recover.rebuild`), and the next loader sends
        nothing the topic has (before, it loaded every file again: every record twice). A batch's
        count needs no wait (`wait` False): until the next batch's note delivers it, the rebuilt
        progress holds this batch's note, whose records the next loader finds on the topic."""
        await self.store.sources_write(self.owner, answers or (), fields=fields, clear=clear)
        if self.checkpoints is not None and (fields or clear):
            copy: dict[str, str | None] = {**dict.fromkeys(clear), **(fields or {})}
            await asyncio.to_thread(self.checkpoints.put_now, copy, wait=wait)

    def _free_space(self, stats: StatsPlan, scope: Scope | None) -> list[Item]:
        """The statistics' free and reserved space in the scope, as records, staged: one item a
        registry (each file's serial is its own)."""
        for warning in stats.warnings:
            self.note(warning)
        items: dict[str, Item] = {}
        files: dict[str, Any] = {}
        try:
            for record in stats.free_records(scope or Scope.of([(0, (1 << 32) - 1)])):
                registry = record.registry
                if registry not in items:
                    staged = self.cache / f"stats-{registry}.records.jsonl"
                    items[registry] = Item(f"stats:{registry}", {registry: stats.serials[registry]}, staged)
                    files[registry] = staged.open("w", encoding="utf-8")
                files[registry].write(record.to_json().decode() + "\n")
        finally:
            for fh in files.values():
                fh.close()
        return [items[r] for r in sorted(items)]

    def _staged(
        self, dump: RegistryDump, staged: Path, got: dumps.DumpReport | dumps.DumpError, offered: bool = False
    ) -> Item | None:
        """A dump's records in scope staged (`seed.staged_all`), if it read well (else a note:
        crawled live); `offered` its previous read's digest (a note if it could not be used)."""
        if (report := seed.usable(dump, got, self.note)) is None:
            return None
        if offered and report.digest_problem:
            self.note(f"{dump.registry} dump read whole: the previous read's digest was not used "
                      f"({report.digest_problem})")
        figures = {"serial": dump.serial, "records": report.records, "skipped": report.skipped,
                   **({"not_parsed": report.reused} if offered else {})}
        return Item(f"dump:{dump.registry}", {dump.registry: dump.serial or ""}, staged,
                    seed.leaf_rule(dump, report), figures, dump)

    def stale_routing(self, state: dict[str, str]) -> set[str]:
        """The registries whose statistics this worker read (to route its lookups by) are older
        than those the crawl's load used (its progress, `state`), each noted: like a file the load
        refuses, they are not used, and the worker routes those registries' lookups by the
        bootstrap (before, a worker on a stale mirror routed by them unchecked)."""
        stale: set[str] = set()
        for registry, serial in (self.stats.serials if self.stats else {}).items():
            used = (json.loads(state.get(f"item:stats:{registry}", "null")) or {}).get("serials", {})
            if went_back(used.get(registry), serial):
                self.note(stale_note(f"{registry} statistics (routing)", used[registry], serial))
                stale.add(registry)
        return stale

    def _stale(self, item: Item, done: dict[str, Any] | None) -> bool:
        """Is a file older than the one this crawl already loaded from? Then it is refused, named,
        and nothing of it written: what the crawl has stays."""
        used = (done or {}).get("serials", {})
        back = [r for r, serial in item.serials.items() if went_back(used.get(r), serial)]
        for registry in back:
            what = f"{registry} {'statistics' if item.how is None else 'dump'}"
            self.note(stale_note(what, used[registry], item.serials[registry]))
        return bool(back)

    async def _send(self, item: Item, start: int, inflight: dict[str, Any] | None) -> bool:
        """The item's records from `start` to the results topic and their blocks to the log, a batch
        at a time; False: stopping part way."""
        n = start
        with seed.open_staged(item.staged) as fh:
            lines = itertools.islice(fh, start, None)
            while batch := list(itertools.islice(lines, BATCH)):
                if self.stopping.is_set():
                    return False
                records = [NetworkRecord.from_own_json(line) for line in batch]
                for record in records:
                    record.crawl = self.results.crawl
                    record.raw = None  # what the dump left unresolved is the fill's to ask (`_leaves`)
                await self._send_batch(item, n, records, inflight)
                n += len(records)
                item.figures["in_scope"] = n
        progress = {"serials": item.serials, "count": n, "sent": True}
        await self._write(fields={f"item:{item.name}": json.dumps(progress)})
        item.figures["in_scope"] = n
        return True

    async def _send_batch(
        self, item: Item, n: int, records: list[NetworkRecord], inflight: dict[str, Any] | None
    ) -> None:
        """One batch: where the results topic ends noted first, then sent, then logged. The batch a
        dead loader was sending (`inflight`) is sent only where the topic lacks it."""
        delivered: set[tuple[bytes, bytes]] = set()
        if inflight and inflight["item"] == item.name and inflight["from"] == n:
            marks = {int(p): o for p, o in inflight["marks"].items()}
            got = await asyncio.to_thread(self.results.since, marks)
            delivered = {(key, _facts(raw)) for key, raw in got}
        else:
            note = {"item": item.name, "from": n, "marks": await self._marks()}
            with self._timed("batch_note"):
                await self._write(fields={"inflight": json.dumps(note)})
        unsent = records
        if delivered:  # only a batch a dead loader was sending: compared, not every batch
            unsent = [r for r in records if (queue.result_key(r), _facts(r.to_json())) not in delivered]
        with self._timed("batch_emit"):
            await asyncio.gather(*(self.sink.emit(r) for r in unsent))
        progress = {"serials": item.serials, "count": n + len(records)}
        # what is carried is known whole (its children carried too, or none): no walk probes inside it
        leaves = item.kind == "carried"
        with self._timed("batch_log"):
            await self._write([Answer(r.first, r.last, True) if leaves else Answer.of(r, self.resolution)
                               for r in records],
                              fields={f"item:{item.name}": json.dumps(progress)}, clear=("inflight",),
                              wait=False)

    async def _marks(self) -> dict[int, int]:
        """Where each partition of the results topic ended before the batch, or before one not long
        ago (`MARKS_EVERY`): any offset at or before a partition's end is a mark a loader taking over
        can read from, finding the batch's records after it (and those of a few batches before, the
        topic holding them already). Asked of the broker once every `MARKS_EVERY` batches, no longer
        before each: at `standard` the asking was 9.2 s of the dumps' 14.7 s of sending."""
        if self._ends is None or self._ends[0] >= MARKS_EVERY:
            with self._timed("batch_ends"):
                self._ends = (0, await asyncio.to_thread(self.results.ends))
        self._ends = (self._ends[0] + 1, self._ends[1])
        return self._ends[1]

    def _recheck(self, item: Item) -> Path:
        return self.cache / f"{item.name.replace(':', '-')}.recheck.jsonl"

    async def _leaves(self, item: Item) -> None:
        """A dump sent whole: its parents are leaves now (`seed.dump_leaf`), and the networks to ask
        again live are written to its recheck file."""
        assert item.how is not None
        live = "live" in self.settings.sources
        step = freshness.every(self.settings.verify) if live else 0
        fill_redacted = self.settings.fill_redacted and live
        leaves: list[Answer] = []
        recheck, n = self._recheck(item), -1
        with seed.open_staged(item.staged) as fh, recheck.open("w", encoding="utf-8") as again:
            for n, line in enumerate(fh):
                record = NetworkRecord.from_own_json(line)
                if not Answer.of(record, self.resolution).terminal and seed.dump_leaf(record, item.how):
                    leaves.append(Answer(record.first, record.last, True))
                # a fill the refresh carries (its network unchanged) is not asked again
                fill = fill_redacted and (record.first, record.last) not in item.kept_live
                if (asking := seed.to_ask(record, n, step, fill)) is not None:
                    again.write(asking.to_json().decode() + "\n")
                if len(leaves) >= BATCH:
                    await self.store.sources_write(self.owner, leaves)
                    leaves = []
                elif n % BATCH == 0:
                    await asyncio.sleep(0)  # the lease's renewal runs meanwhile
        item.figures["in_scope"] = n + 1
        progress = {"serials": item.serials, "count": item.figures["in_scope"], "sent": True, "leafed": True}
        await self._write(leaves, fields={f"item:{item.name}": json.dumps(progress)})
        item.staged.unlink()

    async def _publish_fill(self, item: Item, state: dict[str, str]) -> dict[str, Any]:
        """The networks of an item's recheck file (`_leaves`, `_carried`) to ask again live, published
        to the fill topic as batches any worker asks (`sources.fill.batches`, worker/fill.py), a
        chunk at a time, each chunk counted among the shards once the broker has it; then the load's
        progress (`fill:<item>`) says so, and a loader after this one publishes them no more. One
        killed before that publishes the same batches again, with the same ids: answered once. An
        item published before, or with no recheck file here (sent whole before), has none to publish."""
        name = f"fill:{item.name}"
        if name in state:
            published: dict[str, Any] = json.loads(state[name])
            return published
        recheck = self._recheck(item)
        if not recheck.exists():
            return {}
        results, counted = self.results, {"batches": 0, "networks": 0}

        def send(chunk: list[tuple[bytes, FillBatch]]) -> None:
            queue.publish_fill(results.bootstrap, results.prefix, results.crawl, chunk, results.config)

        batches = fill.batches(recheck, results.crawl, item.name)
        while chunk := list(itertools.islice(batches, FILL_CHUNK)):
            await asyncio.to_thread(send, chunk)
            await self.store.add_fill(self.owner, {b.batch_id: item.name for _, b in chunk})
            counted["batches"] += len(chunk)
            counted["networks"] += sum(len(b.networks) for _, b in chunk)
        await self.store.add_fill(self.owner, {}, name, json.dumps(counted))
        if self.checkpoints is not None:
            await asyncio.to_thread(self.checkpoints.put_now, {name: json.dumps(counted)})
        recheck.unlink()
        return counted


def _done(state: dict[str, str], item: Item) -> Any:
    """An item's progress as the load's state holds it (a JSON object; None: never sent)."""
    return json.loads(state.get(f"item:{item.name}", "null"))
