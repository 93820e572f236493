"""What the simulated registries publish, where, generated once per scenario and kept in the cache.

Every file is at the host and path of its real URL in the catalogue (`rirs.Rir.stats_url`,
`dump_urls`, `serial_url`, and the statistics' `.md5`), so `rirs.published_at(url, base)` finds it
under the simulator's `<root>/published` or under a directory `sim files` wrote. Files are written
streaming (a gzip writer fed one object at a time) into `$WHOISCRAWL_CACHE/sim-published/`, keyed
by scenario, seed and generator version (other versions' files deleted), and renamed into place
when whole. Faulty variants (`faults.FILE_FAULTS`) are derived from the sound files beside them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from whoiscrawl import rirs
from whoiscrawl.sim import data, dumps, stats
from whoiscrawl.sim.churn import CHURN_VERSION
from whoiscrawl.sim.faults import DUMP_FAULTS, TRANSFER_FAULTS, FileFaults
from whoiscrawl.sim.model import MODEL_VERSION, World
from whoiscrawl.sim.scenarios import Scenario

FILES_VERSION = 1  # bump when a file's content changes: invalidates the cache
GZIP_LEVEL = 6  # gzip's own default (what `gzip file` writes)
SERIAL_BASE = {"ripencc": 39_000_000, "apnic": 13_000_000}  # where the serials count from
UPDATES_A_DAY = 40_000  # how far a dump's serial moves a day (one a database update)
STALE_BY = 100_000  # how far a stale serial lags


@dataclass(frozen=True)
class Item:
    """One published file: its registry, real URL and what it is (stats, md5, dump, serial)."""

    registry: str
    url: str
    kind: str

    @property
    def path(self) -> str:
        """`<host>/<path>`: where it sits under a mirror's base."""
        return self.url.split("://", 1)[-1]

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def encoding(self) -> str:
        return "latin-1" if self.registry == "lacnic" else "utf-8"


def catalogue() -> list[Item]:
    """Every file the five registries publish, as the catalogue lists them."""
    out: list[Item] = []
    for r in rirs.CATALOGUE:
        out += [Item(r.id, r.stats_url, "stats"), Item(r.id, r.stats_url + ".md5", "md5")]
        out += [Item(r.id, url, "dump") for url in r.dump_urls]
        if r.serial_url:
            out.append(Item(r.id, r.serial_url, "serial"))
    return out


def spoils(item: Item, kind: str) -> bool:
    """Does a file fault spoil this file? Dump faults the registry's first dump; `record_count`
    the statistics and their `.md5` (the md5 of the spoiled file: that fault alone); `md5_mismatch`
    the `.md5`; `stale_serial` the serial file. A transfer fault spoils no file's bytes."""
    if kind in TRANSFER_FAULTS:
        return False
    if kind in DUMP_FAULTS:
        return item.url == rirs.BY_ID[item.registry].dump_urls[0]
    return item.kind in {"record_count": ("stats", "md5"), "md5_mismatch": ("md5",),
                         "stale_serial": ("serial",)}[kind]


class Files:
    """A scenario's published files in the cache: generated on first use, one writer per file."""

    def __init__(self, scenario: Scenario, world: World | None = None) -> None:
        self.scenario = scenario
        self._world = world
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        # day 0: the first world, whatever changes later
        changed = (CHURN_VERSION, scenario.churn) if scenario.day else ()
        key = hashlib.sha1(repr((FILES_VERSION, MODEL_VERSION, scenario.seed, scenario.generate_all,
                                 tuple(scenario.ranges), *changed)).encode()).hexdigest()[:12]
        day = f"-day{scenario.day}" if scenario.day else ""
        # the versions in the name: what another version left is told apart, and deleted (`_generate`)
        self._stem, self._version = f"{scenario.name}-{scenario.seed}", f"v{MODEL_VERSION}.{FILES_VERSION}-"
        self.root = data.cache_dir() / "sim-published" / f"{self._stem}-{self._version}{key}{day}"
        self.items = {i.path: i for i in catalogue()}

    @property
    def world(self) -> World:
        if self._world is None:
            self._world = self.scenario.world()
        return self._world

    @property
    def edition(self) -> tuple[World, int] | None:
        """The changed world and its day, for the statistics (None: the real files' own rows)."""
        return (self.world, self.scenario.day) if self.scenario.day else None

    def _lock(self, path: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(path, threading.Lock())

    def sound(self, item: Item) -> Path:
        """The file as the registry publishes it, generated if it is not in the cache yet."""
        target = self.root / item.path
        with self._lock(item.path):
            if not target.is_file():
                self._generate(item, target)
        return target

    def path(self, item: Item, faults: FileFaults | None = None) -> Path:
        """The file to serve: sound, or spoiled by the registry's file faults that target it."""
        kinds = sorted(k for k in (faults or {}).get(item.registry, ()) if spoils(item, k))
        sound = self.sound(item)
        if not kinds:
            return sound
        target = self.root / "faulty" / "+".join(kinds) / item.path
        with self._lock(f"faulty/{'+'.join(kinds)}/{item.path}"):
            if not target.is_file():
                _spoiled(self, item, kinds, sound, target)
        return target

    def _generate(self, item: Item, target: Path) -> None:
        if not self.root.exists():  # the first file of this version: older versions' go (1.2 GB on `full`)
            self.root.parent.mkdir(parents=True, exist_ok=True)
            data.prune_other_versions(self.root, self._stem, self._version)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{time.time_ns()}.tmp")
        try:
            if item.kind in ("stats", "md5"):
                named = target.with_name(stats.file_name(item.registry))
                write_stats(item.registry, named, edition=self.edition)
                return
            if item.kind == "dump":
                write_dump(self.world, item, tmp)
            else:
                tmp.write_text(f"{serial(self.scenario, item.registry)}\n")
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)

    def prepare(self, faults: FileFaults | None = None) -> None:
        """Every file made now, as the registries' files exist before anyone asks: a crawl then
        waits on no file being written (`full`'s RIPE NCC dump takes minutes the first time)."""
        for item in self.items.values():
            self.path(item, faults)

    def write_all(self, out: Path, faults: FileFaults | None = None) -> Iterator[dict[str, object]]:
        """Every file under `out/<host>/<path>` (hard links into the cache where they can be), one
        at a time, with how long each took to make and its size."""
        for item in self.items.values():
            started = time.monotonic()
            source = self.path(item, faults)
            seconds = time.monotonic() - started
            dest = out / item.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.unlink(missing_ok=True)
            try:
                dest.hardlink_to(source)
            except OSError:  # another file system
                shutil.copyfile(source, dest)
            yield {"path": item.path, "bytes": dest.stat().st_size, "seconds": round(seconds, 3)}


def serial(scenario: Scenario, registry: str) -> int:
    """The dumps' serial: the same for a world every time it is written, higher each day."""
    return SERIAL_BASE[registry] + scenario.seed + scenario.day * UPDATES_A_DAY


def write_stats(registry: str, target: Path, records_delta: int = 0,
                edition: tuple[World, int] | None = None) -> None:
    """The delegation statistics and their `.md5` beside them, the md5 of what was written; of a
    changed world's day where `edition` gives one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{time.time_ns()}.tmp")
    digest = hashlib.md5()
    with open(tmp, "wb") as fh:
        for line in stats.lines(registry, records_delta, *(edition or (None, 0))):
            raw = (line + "\n").encode("utf-8")
            digest.update(raw)
            fh.write(raw)
    md5 = target.with_name(target.name + ".md5")
    md5_tmp = md5.with_name(f".{md5.name}.{time.time_ns()}.tmp")
    md5_tmp.write_text(stats.md5_line(registry, digest.hexdigest()))
    md5_tmp.replace(md5)
    tmp.replace(target)


def write_dump(world: World, item: Item, target: Path) -> None:
    """One dump, streamed: a gzip writer fed one object at a time in the registry's encoding and
    line ends (LACNIC: Latin-1, CRLF; RIPE NCC: its header, a blank line before each object)."""
    newline = "\r\n" if item.registry == "lacnic" else "\n"
    shape = dumps.lacnic_text if item.registry == "lacnic" else dumps.text
    with gzip.open(target, "wb", compresslevel=GZIP_LEVEL) as raw, \
            io.TextIOWrapper(raw, encoding=item.encoding, newline=newline) as fh:
        fh.write(dumps.header(item.name))
        batch: list[str] = []  # a few thousand objects a write: gzip's and the encoder's calls cost
        for attrs in dumps.objects(world, item.name):
            batch.append("\n" + shape(attrs))
            if len(batch) >= 4096:
                fh.write("".join(batch))
                batch.clear()
        fh.write("".join(batch))


def _spoiled(files: Files, item: Item, kinds: Iterable[str], sound: Path, target: Path) -> None:
    """Write the faulty variant of a file: objects appended before a truncation cuts the file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if "record_count" in kinds:  # the version line promises more records than follow
        write_stats(item.registry, target.with_name(stats.file_name(item.registry)), records_delta=7,
                    edition=files.edition)
    else:
        shutil.copyfile(sound, target)
    for kind in sorted(kinds, key=lambda k: k == "truncated_gzip"):
        if kind == "md5_mismatch":  # the md5 of an empty file
            target.write_text(stats.md5_line(item.registry, hashlib.md5(b"").hexdigest()))
        elif kind == "stale_serial":
            target.write_text(f"{serial(files.scenario, item.registry) - STALE_BY}\n")
        elif kind == "truncated_gzip":
            size = target.stat().st_size
            with open(target, "r+b") as fh:
                fh.truncate(max(size // 2, 1))
        elif kind != "record_count":  # broken_object, wrong_encoding: a gzip member holding the bad object
            with open(target, "ab") as fh:
                fh.write(gzip.compress(bad_object(item, kind)))


def bad_object(item: Item, kind: str) -> bytes:
    """An object no parser should take: one whose range is cut short and whose second line has
    no colon (broken_object), or one in the wrong encoding (wrong_encoding: Latin-1 in a UTF-8
    file, UTF-8 in LACNIC's Latin-1 one)."""
    newline = "\r\n" if item.registry == "lacnic" else "\n"
    if kind == "broken_object":
        lines = ["inetnum:        192.0.2.0 - 192.0.2", "netname         BROKEN-OBJECT",
                 "source:         BROKEN"]
        return (newline + newline.join(lines) + newline).encode(item.encoding)
    wrong = "utf-8" if item.encoding == "latin-1" else "latin-1"
    lines = ["inetnum:        192.0.2.0 - 192.0.2.255", "netname:        WRONG-ENCODING",
             "descr:          Telecomunicações Señal Ltda.", "country:        BR", "source:         WRONG"]
    return (newline + newline.join(lines) + newline).encode(wrong)
