"""Answer bodies as read: a small one in memory, a big one spooled to a file the parse process reads.

A listing of 10,000 networks (RIPE NCC's row limit; full's ARIN parts) is ~48 MB. Read into memory,
copied, then pickled to the parse process, each such answer cost the worker ~150 MB until parsed,
and at `full` many were in flight at once (ARIN has no connection cap): the worker's peak grew with
answer size x answers in flight. Spooled, a big answer costs the worker one chunk; the bytes
spooled at once are bounded (`SpoolBudget`), so the disk they take is too. Each process spools
into a folder of its own, locked while it lives (`spool_folder`): a process killed mid-answer
(SIGKILL, OOM) leaves its folder unlocked, and the next process to spool deletes it, so repeated
kills do not fill the disk (a worker container restarted in place keeps its scratch volume).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import os
import shutil
import tempfile
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import aiohttp

from whoiscrawl.records import DEAD_LETTER_BYTES

SPOOL_AT = 1 << 20  # bodies past this are spooled and parsed in the parse process (a smaller one: < 15 ms)
MAX_SPOOLED_BYTES = 256 << 20  # bytes of big answers spooled at once (read and not yet parsed)
CHUNK = 1 << 16
FOLDER_PREFIX = "whoiscrawl-spool-"
LOCK = ".lock"  # in each spool folder, held (flock) by the process spooling there while it lives

_folders: dict[tuple[int, str], tuple[Path, int]] = {}  # (pid, temp dir) -> its folder and lock's fd


def spool_folder() -> Path:
    """This process's spool folder in the temp dir, made (and locked) when first asked; the folders
    of processes that died meanwhile, found unlocked, are deleted then."""
    key = (os.getpid(), tempfile.gettempdir())
    if key not in _folders:
        _sweep(Path(key[1]))
        making = Path(tempfile.mkdtemp(prefix=f".{FOLDER_PREFIX}"))  # no sweep looks at it yet
        fd = os.open(making / LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel however the process ends
        folder = making.with_name(making.name[1:])
        making.rename(folder)  # seen by sweeps only once locked
        atexit.register(shutil.rmtree, folder, True)  # a process that ends well leaves none
        _folders[key] = (folder, fd)
    return _folders[key][0]


def _sweep(temp: Path) -> None:
    """Delete the spool folders in `temp` no living process holds (a killed one's answers)."""
    for folder in temp.glob(f"{FOLDER_PREFIX}*"):
        try:
            fd = os.open(folder / LOCK, os.O_RDWR)
        except OSError:  # not made whole yet (its lock to come), or gone
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a living process's
        else:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)


@dataclass(frozen=True)
class Body:
    """An answer's body as read: whole in `head`, or spooled to `path` (`head` its first bytes, as
    much as a dead letter keeps). `whole` False: cut at the client's cap."""

    head: bytes
    size: int
    whole: bool = True
    path: Path | None = None


class SpoolBudget:
    """Bytes of big answers spooled and not yet parsed: at most `limit`, one answer over it alone.
    An answer takes its share whole once it knows its size (else the most an answer may be), so
    no two wait on each other, in the order they came (a big one is not passed by small ones)."""

    def __init__(self, limit: int = MAX_SPOOLED_BYTES) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0  # the most held at once
        self._changed = asyncio.Condition()
        self._waiting: deque[object] = deque()

    @contextlib.asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        turn = object()
        async with self._changed:
            self._waiting.append(turn)
            try:
                await self._changed.wait_for(
                    lambda: self._waiting[0] is turn and (self.held == 0 or self.held + size <= self.limit))
            finally:  # taken, or given up (cancelled): the next in line may go
                self._waiting.remove(turn)
                self._changed.notify_all()
            self.held += size
            self.peak = max(self.peak, self.held)
        try:
            yield
        finally:
            async with self._changed:
                self.held -= size
                self._changed.notify_all()


@contextlib.asynccontextmanager
async def read_body(resp: aiohttp.ClientResponse, limit: int, budget: SpoolBudget) -> AsyncIterator[Body]:
    """A response's body, read no further than `limit` bytes (a hostile server's endless body costs
    at most that; one that says it is longer is not read at all). Past `SPOOL_AT` bytes it is
    spooled to a file, within `budget`, deleted when the caller is done with it."""
    if resp.content_length is not None and resp.content_length > limit:
        yield Body(b"", 0, whole=False)
        return
    head = bytearray()
    chunks = resp.content.iter_chunked(CHUNK)
    async for chunk in chunks:
        head += chunk
        if len(head) > min(limit, SPOOL_AT):
            break
    else:
        yield Body(bytes(head), len(head))
        return
    if len(head) > limit:
        yield Body(bytes(head), len(head), whole=False)
        return
    async with budget.hold(min(resp.content_length or limit, limit)):
        fd, name = tempfile.mkstemp(prefix="whoiscrawl-answer-", suffix=".json", dir=spool_folder())
        try:
            with os.fdopen(fd, "wb") as file:
                size, whole = await _spool(file, bytes(head), chunks, limit)
            yield Body(bytes(head[:DEAD_LETTER_BYTES]), size, whole, Path(name))
        finally:
            Path(name).unlink(missing_ok=True)


async def _spool(file: BinaryIO, head: bytes, chunks: AsyncIterator[bytes], limit: int) -> tuple[int, bool]:
    """Write `head` and the chunks after it to `file`, up to `limit` bytes: (bytes, whole)."""
    file.write(head)
    size = len(head)
    async for chunk in chunks:
        file.write(chunk)
        size += len(chunk)
        if size > limit:
            return size, False
    return size, True
