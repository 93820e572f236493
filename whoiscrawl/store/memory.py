"""The store of one process (a local crawl): known blocks, claims, checkpoints and counters in memory,
saved to a JSON-lines checkpoint file."""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from whoiscrawl.blocks import KnownBlocks
from whoiscrawl.records import Progress
from whoiscrawl.store import Lease, LeaseLost, ListingClaim, remember, step_counts
from whoiscrawl.strategy import Answer

log = logging.getLogger(__name__)


# A local crawl saves every half second. Its checkpoint file is JSON lines: the first line the
# whole state (a snapshot), each further line what changed since the line before (a journal), so
# a save writes what changed, not the whole map (which made a crawl of all IPv4 slow down as it
# grew). The file is rewritten as one snapshot (compacted) once the journal outgrows the snapshot,
# so compaction costs at most as much again as the journal lines it replaces.
COMPACT_MIN_BYTES = 64 * 1024  # a small crawl's journal: not worth rewriting the file for


class CheckpointError(ValueError):
    """A local crawl's checkpoint file cannot be read; the text names the file and the line."""


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A local crawl's state from its checkpoint file: the snapshot with the journal's changes
    applied. A last line cut off mid-write (the crawl was killed) is dropped: the state is then the
    one saved before it, as after a kill between two saves."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    state: dict[str, Any] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError as exc:
            if number == len(lines) and number > 1:  # the last line, with no newline: cut off
                break
            raise CheckpointError(
                f"{path} is damaged at line {number} ({exc}): resume from a copy, or start the "
                "crawl anew with another --out"
            ) from exc
        if number == 1:
            state = {"counters": doc["counters"], "cursors": dict(doc["cursors"]),
                     "done": list(doc["done"]), "partly_listed": list(doc.get("partly_listed", [])),
                     "listed_whole": list(doc.get("listed_whole", [])), "seeded": doc.get("seeded", {})}
        else:
            _apply(state, doc)
    if not state:
        raise CheckpointError(f"{path} holds no snapshot: start the crawl anew with another --out")
    return state


def _apply(state: dict[str, Any], change: dict[str, Any]) -> None:
    """One journal line onto the state (a cursor of null: the shard's walk ended)."""
    state["counters"] = change["counters"]
    for shard_id, cursor in change.get("cursors", {}).items():
        if cursor is None:
            state["cursors"].pop(shard_id, None)
        else:
            state["cursors"][shard_id] = cursor
    for name in ("done", "partly_listed", "listed_whole"):
        state[name].extend(change.get(name, []))


@dataclass
class _Journal:
    """What changed since the checkpoint file's last line, and how big the file's parts are."""

    cursors: set[str] = field(default_factory=set)  # shards whose cursor changed or was dropped
    done: list[str] = field(default_factory=list)
    partly_listed: list[int] = field(default_factory=list)
    listed_whole: list[int] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)  # as last written
    seeded: dict[str, Any] = field(default_factory=dict)  # as last written (a change: a new snapshot)
    snapshot_bytes: int | None = None  # None: no snapshot written by this process yet
    journal_bytes: int = 0

    def clear(self) -> None:
        self.cursors.clear()
        self.done.clear()
        self.partly_listed.clear()
        self.listed_whole.clear()


@dataclass
class MemoryStore:
    """The store of a local crawl: everything in this process, checkpointed to a JSON-lines file."""

    checkpoint_path: Path | None = None
    index: KnownBlocks = field(default_factory=KnownBlocks)
    counters: Progress = field(default_factory=Progress)
    cursors: dict[str, str] = field(default_factory=dict)  # shard id -> its walk's checkpoint
    done: set[str] = field(default_factory=set)
    partly_listed: set[int] = field(default_factory=set)  # parents no listing could settle
    listed_whole: set[int] = field(default_factory=set)  # parents listed whole: leaves the file cannot tell
    # registry -> the dump seeded: its serial, whether whole, the spans it skipped (sources/seed.dump_leaf)
    seeded: dict[str, dict[str, Any]] = field(default_factory=dict)
    _journal: _Journal = field(default_factory=_Journal, repr=False)
    # Walks fenced as a fleet's are (store/__init__.Store), though a local crawl walks each shard once.
    _walks: dict[str, str] = field(default_factory=dict, repr=False)  # walk under way -> its shard
    _owners: dict[str, str] = field(default_factory=dict, repr=False)  # shard -> its newest walk
    _tokens: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)
    # Probes' answers kept until their step is written (not saved: a resumed crawl asks again)
    _kept: dict[int, str] = field(default_factory=dict, repr=False)

    async def sync(self) -> None:
        return None

    async def take_shard(self, shard_id: str, owner: str) -> str:
        walk = f"{next(self._tokens)}/{owner}"
        self._walks[walk], self._owners[shard_id] = shard_id, walk
        return walk

    def leave_shard(self, walk: str) -> None:
        self._walks.pop(walk, None)

    async def claim(self, address: int, owner: str) -> bool:
        return True  # one walk per region in one process: nothing to race

    async def renew_claim(self, address: int, owner: str) -> bool:
        return True

    async def release(self, address: int, owner: str) -> None:
        return None

    async def first_to_list(self, first: int, last: int, owner: str) -> ListingClaim:
        # One process: the crawler itself keeps two lanes from listing one parent at once.
        return "partly" if (first << 32 | last) in self.partly_listed else "mine"

    async def renew_listing(self, first: int, last: int, owner: str) -> bool:
        return True

    async def listed(self, first: int, last: int, owner: str, whole: bool | None) -> None:
        if whole is None:
            return
        key = first << 32 | last
        kept, journal = (self.listed_whole, self._journal.listed_whole) if whole else (
            self.partly_listed, self._journal.partly_listed)
        if key not in kept:
            kept.add(key)
            journal.append(key)

    async def keep_answer(self, address: int, answer: str) -> None:
        self._kept[address] = answer

    async def kept_answer(self, address: int) -> str | None:
        return self._kept.get(address)

    async def forget_answer(self, address: int) -> None:
        self._kept.pop(address, None)

    async def cursor(self, shard_id: str) -> str | None:
        return self.cursors.get(shard_id)

    async def is_done(self, shard_id: str) -> bool:
        return shard_id in self.done

    async def record_step(
        self,
        shard_id: str,
        checkpoint: str,
        answer: Answer | None,
        *,
        lookups: int = 1,
        rate_limited: int = 0,
        errors: int = 0,
        under: Lease | None = None,
        walk: str | None = None,
    ) -> bool:
        known, changed = remember(self.index, answer)
        # As in Redis: an ended walk writes no checkpoint; one whose shard was taken again (or
        # finished) has its checkpoint refused, and stops unless it is a listing's step.
        ended = walk is not None and walk not in self._walks
        refused = not ended and walk is not None and (
            self._owners.get(shard_id) != walk or shard_id in self.done)
        if not (ended or refused):
            self.cursors[shard_id] = checkpoint
            self._journal.cursors.add(shard_id)
        for name, value in step_counts(answer, known, changed, lookups, rate_limited, errors).items():
            setattr(self.counters, name, getattr(self.counters, name) + value)
        if refused:
            self.counters.stale_writes_refused += 1
            if under is None or under.kind != "listing":
                raise LeaseLost(f"shard {shard_id}", None)
            self._walks.pop(walk or "", None)  # its listing goes on, writing no checkpoint
        return changed

    async def shard_done(self, shard_id: str, addresses: int) -> None:
        if shard_id not in self.done:
            self.done.add(shard_id)
            self._journal.done.append(shard_id)
            self.counters.shards_done += 1
            self.counters.addresses_done += addresses
        if self.cursors.pop(shard_id, None) is not None:
            self._journal.cursors.add(shard_id)
        for walk in [w for w, s in self._walks.items() if s == shard_id]:
            del self._walks[walk]  # a done shard has no checkpoint left to write
        self._owners.pop(shard_id, None)

    async def progress(self) -> Progress:
        return self.counters

    def save(self) -> None:
        """Append what changed since the last save (nothing if nothing did), or write the whole
        state anew: the first time, and once the journal outgrew the snapshot."""
        if self.checkpoint_path is None:
            return
        journal = self._journal
        limit = max(journal.snapshot_bytes or 0, COMPACT_MIN_BYTES)
        # The dumps seeded (once a crawl) and the parents they settled go out with a whole snapshot.
        if journal.snapshot_bytes is None or journal.journal_bytes > limit or self.seeded != journal.seeded:
            self._write_snapshot()
            return
        counters = asdict(self.counters)
        if counters == journal.counters and not (
            journal.cursors or journal.done or journal.partly_listed or journal.listed_whole
        ):
            return
        change: dict[str, Any] = {"counters": counters}
        if journal.cursors:
            change["cursors"] = {s: self.cursors.get(s) for s in sorted(journal.cursors)}
        for name in ("done", "partly_listed", "listed_whole"):
            if getattr(journal, name):
                change[name] = getattr(journal, name)
        line = json.dumps(change).encode() + b"\n"
        with self.checkpoint_path.open("ab") as fh:
            fh.write(line)  # one write: a kill cuts at most this line short, which load drops
        journal.journal_bytes += len(line)
        journal.counters = counters
        journal.clear()

    def _write_snapshot(self) -> None:
        assert self.checkpoint_path is not None
        counters = asdict(self.counters)
        state = {
            "counters": counters,
            "cursors": self.cursors,
            "done": sorted(self.done),
            "partly_listed": sorted(self.partly_listed),
            "listed_whole": sorted(self.listed_whole),
            "seeded": self.seeded,
        }
        line = json.dumps(state).encode() + b"\n"
        tmp = self.checkpoint_path.with_suffix(".tmp")
        tmp.write_bytes(line)
        os.replace(tmp, self.checkpoint_path)  # atomic: a crash leaves the old or the new file
        self._journal.clear()
        self._journal.counters = counters
        self._journal.seeded = json.loads(json.dumps(self.seeded))
        self._journal.snapshot_bytes, self._journal.journal_bytes = len(line), 0

    def load(self) -> bool:
        """The state saved last (False: no checkpoint). The next save writes a snapshot, which
        also drops a journal line a kill cut off."""
        if self.checkpoint_path is None or not self.checkpoint_path.exists():
            return False
        state = read_checkpoint(self.checkpoint_path)
        self.counters = Progress(**state["counters"])
        self.cursors = {k: str(v) for k, v in state["cursors"].items()}  # older files: a bare cursor
        self.done = set(state["done"])
        self.partly_listed = set(state.get("partly_listed", []))
        self.listed_whole = set(state.get("listed_whole", []))
        self.seeded = dict(state.get("seeded", {}))
        for key in self.listed_whole:
            self.index.add(key >> 32, key & 0xFFFFFFFF, True)
        self._journal = _Journal()
        return True
