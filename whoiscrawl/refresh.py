"""Refresh by difference (`whoiscrawl crawl --refresh PREVIOUS`): a previous map brought to the
registries' newest published files, asking live only what the files cannot tell (docs/refresh.md).

- Free space: from the new statistics, as a crawl writes it.
- A registry read from its dump (RIPE NCC, APNIC, LACNIC, AFRINIC): each network of the new dump
  against the same network of the previous dump; unchanged, the previous record is kept (with what
  was asked live for it); new or changed, the dump's record (and, where the dump leaves out a field,
  one live lookup for it); networks the new dump no longer holds are gone.
- Any other registry (ARIN: no dump): the statistics' difference. Each delegation whose row is new
  or changed (date, status, country, registry) is walked live again, as a crawl walks it; every
  other network of the previous map is kept.
- A freshness sample (`--verify`) of the networks kept is asked again live.
The new map gets its own manifest and the change set from the previous map (`write_change_set`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from netaddr import IPSet

from whoiscrawl.crawl import Crawler, Member
from whoiscrawl.local import FileSink, LocalCrawl, LocalCrawlError, Seeding, scoped
from whoiscrawl.ratelimit import MemoryRateLimiter
from whoiscrawl.records import NetworkRecord
from whoiscrawl.registry import RegistryClient
from whoiscrawl.results.diff import diff_report
from whoiscrawl.results.source import ResultSet
from whoiscrawl.sources import freshness, manifest, seed, stats
from whoiscrawl.sources.difference import (
    Previous,
    Seen,
    StatsDifference,
    compare_dumped,
    removed,
    stats_difference,
)
from whoiscrawl.sources.dumps import DumpReport
from whoiscrawl.sources.published import RegistryDump, StatsPlan, fetch_dumps, load_stats, went_back
from whoiscrawl.space import Scope
from whoiscrawl.store.memory import MemoryStore


class RefreshError(LocalCrawlError):
    """A refresh that cannot be made as asked; nothing was written. The text says what to change."""


def write_change_set(old: Path, new: Path, path: Path, old_read: ResultSet | None = None) -> dict[str, Any]:
    """The changes from map `old` to map `new`, one JSON line each, and their counts (the one place
    a refresh's change set is made: today `whoiscrawl diff`'s comparison); `old_read`: `old` read
    already (`ResultSet(old, seekable=True)`)."""
    report = diff_report(ResultSet(old, seekable=True) if old_read is None else old_read,
                         ResultSet(new, seekable=True))
    with path.open("w", encoding="utf-8") as fh:
        for change in report.pop("changes"):
            fh.write(json.dumps(change, separators=(",", ":")) + "\n")
    return report


@dataclass
class Refresh:
    """A refresh of `previous` into `job.out`, with the job's settings (ranges, files, limits)."""

    job: LocalCrawl
    previous: Path
    counts: Counter[str] = field(default_factory=Counter)
    recheck: list[NetworkRecord] = field(default_factory=list)  # to ask again live
    # the freshness sample: every `--verify`-th network kept (unchanged), of `kept` so far
    sample: list[NetworkRecord] = field(default_factory=list)
    kept: int = 0
    phases: dict[str, float] = field(default_factory=dict)  # seconds each part took
    # each dump's staging process: its resident memory (MB) at its start and at its peak
    staging_rss_mb: dict[str, tuple[float, float]] = field(default_factory=dict)

    async def run(self) -> dict[str, Any]:
        job, clock = self.job, time.monotonic()
        old = self._check()
        seed.prepare_staging()  # the dumps' stagings' process loads while the files are fetched
        made_dir = not job.published.exists()
        try:
            published, dumps = await self._files(old)
        except RefreshError:
            if made_dir:
                shutil.rmtree(job.published, ignore_errors=True)
            raise
        clock = self._took("files", clock)
        with Previous.read(self.previous) as prev:  # held compactly: records read back when needed
            return await self._refresh(old, published, dumps, prev, clock)

    async def _refresh(self, old: manifest.Manifest, published: StatsPlan, dumps: list[RegistryDump],
                       prev: Previous, clock: float) -> dict[str, Any]:
        """The refresh once the files are fetched and the previous map read."""
        job = self.job
        clock = self._took("previous", clock)
        # the previous map's scope (`_check`), with the delegations the statistics list in its
        # special-purpose space: their rows compared too (before, a change of ARIN's AS112 block
        # was never seen, its previous record kept)
        asked = scoped(job.ranges, list(job.settings.excludes), published.special_delegations())
        scope = Scope.of((c.first, c.last) for c in IPSet(asked).iter_cidrs())
        sink = FileSink(job.out, each=False)  # what the files settle: a resume writes it again whole
        for record in published.free_records(scope):
            record.crawl = "local"
            await sink.emit(record)
        # the previous map's blocks found for the change set meanwhile: the loop mostly waits on the stagings
        indexed = asyncio.create_task(asyncio.to_thread(ResultSet, self.previous, seekable=True))
        dumped = await self._from_dumps(dumps, prev, scope, sink)
        clock = self._took("dumps", clock)
        walk = (await self._from_stats(old, published, prev, scope, dumped, sink)).walk(asked)
        sink.close()
        clock = self._took("statistics", clock)
        summary = await self._live(walk, published, scope)
        clock = self._took("live", clock)
        if not summary["complete"]:  # no manifest: the map is no map yet; --resume finishes it
            return {"refreshed": str(self.previous), "out": str(job.out), **summary,
                    "counts": dict(self.counts), "walked": walk, "changes": None, "notes": job.notes[:20]}
        rows = sorted(manifest.row_of(d) for d in published.delegations if scope.overlaps(d.first, d.last))
        made = max(published.end_dates.values(), default="")
        manifest.Manifest(old.scope, self._serials(published, dumps), rows, made).write(job.out)
        changes = write_change_set(self.previous, job.out, change_set_path(job.out), await indexed)
        self._took("change_set", clock)
        return {"refreshed": str(self.previous), "out": str(job.out), "complete": summary.pop("complete"),
                "counts": dict(self.counts), "walked": walk, **summary, "changes": changes,
                "phases_s": self.phases, "staging_rss_mb": self.staging_rss_mb, "notes": job.notes[:20]}

    def _took(self, phase: str, since: float) -> float:
        """The time since `since` kept as the phase's (the summary's `phases_s`); now."""
        now = time.monotonic()
        self.phases[phase] = round(now - since, 2)
        return now

    def _check(self) -> manifest.Manifest:
        """The previous map's manifest, for this scope; the new map's place free."""
        job = self.job
        if job.out.resolve() == self.previous.resolve():
            raise RefreshError(f"--out {job.out} is the map being refreshed: write the new one elsewhere")
        if manifest.path_of(job.out).exists():
            raise RefreshError(f"{job.out} already holds a complete map: choose another --out")
        if job.out.exists() and job.out.stat().st_size and not job.resume:
            raise RefreshError(f"{job.out} holds an unfinished refresh: add --resume to finish it, or choose "
                               "another --out")
        try:
            old = manifest.Manifest.read(self.previous)
        except manifest.ManifestError as exc:
            raise RefreshError(str(exc)) from exc
        asked = scoped(job.ranges, list(job.settings.excludes))
        if asked != old.scope:
            raise RefreshError(f"{self.previous} maps {_brief(old.scope)}, not {_brief(asked)}: refresh it "
                               "with the ranges (and --exclude) it was crawled with, or crawl the new scope "
                               "anew")
        # Resumed: what the files settle is written again (no request), the walk goes on from its
        # checkpoint, the networks to ask again are asked again.
        job.out.unlink(missing_ok=True)
        return old

    async def _files(self, old: manifest.Manifest) -> tuple[StatsPlan, list[RegistryDump]]:
        """The newest statistics and dumps, none older than the previous map's."""
        job = self.job
        published = await load_stats(job.settings.files_base, job.published)
        for warning in published.warnings:
            job.note(warning)
        _forward("statistics", "stats", published.serials, old)
        chosen = job.settings
        dumps: list[RegistryDump] = []
        notes: list[str] = []
        if "dumps" in chosen.sources:  # else every registry by the statistics' difference, as crawled
            dumps, notes = await fetch_dumps(chosen.files_base, job.published, chosen.accept_dump_terms)
        for note in notes:
            job.note(note)
        _forward("dump", "dump", {d.registry: d.serial or "" for d in dumps}, old)
        return published, dumps

    async def _from_dumps(self, dumps: list[RegistryDump], prev: Previous, scope: Scope,
                          sink: FileSink) -> set[str]:
        """The registries read from their new dumps (each staged as a crawl stages it, in a process
        of its own: `seed.staged_all`); the others are refreshed from the statistics instead."""
        dumped: set[str] = set()
        before = self.previous.with_name(self.previous.name + ".published")  # the previous map's files
        reuse = {d.registry: r for d in dumps if (r := prev.reuse(d.registry, before)) is not None}
        stagings = seed.staged_all(dumps, scope, self.job.published, digests=True, reuse=reuse)
        async with contextlib.aclosing(stagings):
            async for dump, staged, report in stagings:
                try:
                    if (read := seed.usable(dump, report, self.job.note, "refreshed live")) is None:
                        continue
                    self._read_how(dump.registry, read, dump.registry in reuse)
                    await self._from_dump(dump, staged, prev, sink)
                    dumped.add(dump.registry)
                finally:
                    staged.unlink(missing_ok=True)
        return dumped

    def _read_how(self, registry: str, report: DumpReport, offered: bool) -> None:
        """How the dump was read, in the counts: networks taken from the previous read unparsed;
        a note where the previous read's digest could not be used (the dump was read whole)."""
        self.counts[f"{registry}_not_parsed"] += report.reused
        if report.rss_mb is not None:
            self.staging_rss_mb[registry] = report.rss_mb
        if offered and report.digest_problem:
            self.job.note(f"{registry} dump read whole: the previous read's digest was not used "
                          f"({report.digest_problem})")

    async def _from_dump(self, dump: RegistryDump, staged: Path, prev: Previous, sink: FileSink) -> None:
        """A registry's networks from its new dump (staged, streamed: never all in memory) against
        the previous one."""
        registry = dump.registry
        seen = Seen(prev)  # of the previous map's networks only: the dump's others are not held
        recheck: list[NetworkRecord] = []
        spans = seed.SpanLog()  # every staged network's: what places the rechecked (`own_addresses`)
        with seed.open_staged(staged) as fh:
            for n, line in enumerate(fh):
                if n and n % Seeding.TURN == 0:  # a turn for Ctrl-C (the task cancelled): it stops here,
                    await asyncio.sleep(0)  # not after the dump's last network; no manifest: not done
                got = seed.staged_record(line)
                spans.add(got.first, got.last)
                compared = compare_dumped(got, prev, dump)
                record = compared.record
                record.crawl = "local"
                # the new dump's record: its serial (the next refresh compares it); what the dump left
                # unresolved (`raw`) is the fill's to ask, not a result
                await sink.emit(replace(record, raw=None) if record.raw else record)
                if compared.at >= 0:
                    seen.add(compared.at)
                self.counts[f"{registry}_{compared.kind}"] += 1
                if compared.kept is not None and self._sampled():
                    self.sample.append(compared.kept)
                if compared.after is not None:  # what was asked live for it still holds: after it
                    await sink.emit(compared.after)
                elif self.job.settings.fill_redacted and freshness.redacted(record):
                    # new, changed, or never filled (its children covered it whole): maybe now
                    recheck.append(record)
        asked = seed.SpanLog()
        for record in recheck:
            asked.add(record.first, record.last)
        self.recheck += seed.aimed(recheck, seed.own_addresses(spans.about(asked)))
        self.counts[f"{registry}_removed"] += len(removed(prev, registry, seen))

    async def _from_stats(self, old: manifest.Manifest, published: StatsPlan, prev: Previous, scope: Scope,
                          dumped: set[str], sink: FileSink) -> StatsDifference:
        """Registries without a dump read: the previous networks outside every delegation whose
        statistics row changed are kept; the changed delegations (`walk`: in scope) are to be walked."""
        now = (manifest.row_of(d) for d in published.delegations if scope.overlaps(d.first, d.last))
        difference = stats_difference(old.rows, now, dumped, published.serials)
        for at in prev.positions():  # in the map's order
            key = prev.key(at)
            if not difference.keeps(key, prev.free(at)):
                continue
            self.counts[f"{key[0]}_kept"] += 1
            if self._sampled():
                self.sample.append(prev.record(at))
            sink.write(prev.line(at).decode())  # as the previous map holds it (`to_json`'s bytes)
        self.counts["delegations_changed"] = len(difference.changed)
        return difference

    async def _live(self, walk: list[str], published: StatsPlan, scope: Scope) -> dict[str, Any]:
        """The changed delegations walked live (a crawl of just them), then the networks to ask
        again: fields a new dump left out, and the freshness sample of those kept."""
        job, lookups, complete = self.job, Counter[str](), True
        if walk:
            part = job.out.with_name(job.out.name + ".walk.jsonl")
            live_only = dataclasses.replace(job.settings, sources=frozenset({"live"}), excludes=())
            sub = LocalCrawl(ranges=walk, out=part, bootstrap=job.bootstrap, limits=job.limits,
                             settings=live_only, egresses=job.egresses, resume=part.exists(),
                             stopping=job.stopping, delegated=published.special_delegations())
            done = await sub.run()
            complete, lookups = bool(done["complete"]), Counter(done["lookups_by_registry"])
            if not complete:  # the walk's records and checkpoint stay for --resume
                return {"complete": False, "lookups": sum(lookups.values()),
                        "lookups_by_registry": dict(lookups)}
            with job.out.open("a", encoding="utf-8") as fh, part.open(encoding="utf-8") as walked:
                shutil.copyfileobj(walked, fh)
            part.unlink()
            sub.checkpoint.unlink(missing_ok=True)
        asked = await self._ask_again(self.recheck + self.sample, published, scope)
        lookups.update(asked.pop("lookups_by_registry"))
        return {"complete": complete, "lookups": sum(lookups.values()), "lookups_by_registry": dict(lookups),
                "asked_again": asked}

    def _sampled(self) -> bool:
        """Is the next network kept (`kept` counts them) one of the freshness sample's?"""
        step, n = freshness.every(self.job.settings.verify), self.kept
        self.kept += 1
        return freshness.sampled(n, step)

    async def _ask_again(self, records: list[NetworkRecord], published: StatsPlan,
                         scope: Scope) -> dict[str, Any]:
        """Each record asked again live at its first address (`Seeding.fresh`: a changed answer is
        written after it, and the latest record of a block wins)."""
        job = self.job
        if not records:
            return {"lookups_by_registry": {}}
        recheck = job.out.with_name(job.out.name + ".recheck.jsonl")
        recheck.write_text("".join(r.to_json().decode() + "\n" for r in records), encoding="utf-8")
        sink = FileSink(job.out)
        delegated = published.router()
        client = RegistryClient(job.bootstrap, MemoryRateLimiter(job.limits), job.egresses,
                                dict(job.settings.whois_servers),
                                delegated_by=delegated, delegation_country=stats.configured_country(),
                                delegation_at=published.holders(), timeout=job.settings.lookup_timeout,
                                listing_timeout=job.settings.listing_timeout)
        store = MemoryStore(job.out.with_name(job.out.name + ".recheck.checkpoint.json"))
        crawler = Crawler(store, sink, client, Member(uuid.uuid4().hex), job.settings, scope=scope,
                          stopping=job.stopping)
        try:
            figures = await Seeding(job, store, sink, scope).fresh(recheck, crawler)
        finally:
            sink.close()
            await client.close()
        return {**figures, "lookups_by_registry": dict(crawler.lookups_by_registry)}

    @staticmethod
    def _serials(published: StatsPlan, dumps: list[RegistryDump]) -> dict[str, dict[str, str]]:
        serials = {r: {"stats": s} for r, s in published.serials.items()}
        for d in dumps:
            if d.serial:
                serials.setdefault(d.registry, {})["dump"] = d.serial
        return serials


def change_set_path(out: Path) -> Path:
    return out.with_name(out.name + ".changes.jsonl")


def _forward(what: str, kind: str, serials: dict[str, str], old: manifest.Manifest) -> None:
    """Refuse files older than the previous map's (a serial that went backwards)."""
    for registry, serial in serials.items():
        was = old.serials.get(registry, {}).get(kind)
        if went_back(was, serial):
            raise RefreshError(f"{registry} {what} serial {serial} is older than the previous map's {was}: "
                               "the files went backwards; point --files-base at the registries' current "
                               "files")


def _brief(scope: list[str]) -> str:
    return ", ".join(scope[:3]) + (f" and {len(scope) - 3} more" if len(scope) > 3 else "")
