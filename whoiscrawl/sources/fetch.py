"""Fetching a published file: streamed to disk from its real location or a mirror's (`--files-base`).

The one HTTP edge of `sources/`: files are written through to a cache directory as they arrive
(the largest dump is ~1 GB compressed), and parsed from there."""

from __future__ import annotations

import asyncio
import email.utils
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from whoiscrawl import rirs

CHUNK = 1 << 16
PAUSES = (2.0, 10.0, 30.0)  # between attempts at one file: ~40 s of patience for a busy server

log = logging.getLogger(__name__)


class FetchError(RuntimeError):
    """A published file that could not be had; the text names its URL and why. `transient`: a
    dropped transfer, a timeout or a 5xx, worth asking again; not a missing file or a refusal."""

    def __init__(self, text: str, transient: bool = False) -> None:
        super().__init__(text)
        self.transient = transient


@dataclass(frozen=True)
class Fetched:
    """A file on disk, where it came from and the date its server gave it (ISO 8601, or None)."""

    url: str
    path: Path
    modified: str | None


async def fetch(url: str, files_base: str | None, cache: Path, session: aiohttp.ClientSession,
                pauses: tuple[float, ...] = PAUSES) -> Fetched:
    """A published file at its real URL or under `files_base` (a URL or a local directory),
    downloaded into `cache` under its host and path; asked again after each of `pauses` while
    the download fails in a way that may pass (the dumps are large: transfers drop)."""
    where = rirs.published_at(url, files_base)
    if not where.startswith(("http://", "https://")):
        path = Path(where)
        if not path.is_file():
            raise FetchError(f"{where}: no such file (from {url} under --files-base {files_base})")
        return Fetched(where, path, None)
    path = cache / url.split("://", 1)[-1]
    for attempt, pause in enumerate((*pauses, None), start=1):
        try:
            return await _download(where, path, session)
        except FetchError as exc:
            if not exc.transient or pause is None:
                raise
            log.warning("%s; asked again in %g s (attempt %d of %d)", exc, pause, attempt + 1,
                        len(pauses) + 1)
            await asyncio.sleep(pause)
    raise AssertionError("unreachable: the last attempt returns or raises")


async def _download(where: str, path: Path, session: aiohttp.ClientSession) -> Fetched:
    """One download of `where` into `path`, through a `.part` file so a dropped one leaves none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        async with session.get(where, timeout=aiohttp.ClientTimeout(total=None, sock_read=60)) as resp:
            if resp.status != 200:
                passing = resp.status >= 500 or resp.status == 429
                raise FetchError(f"{where}: HTTP {resp.status}", transient=passing)
            with part.open("wb") as fh:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    fh.write(chunk)
            modified = resp.headers.get("Last-Modified")
    except aiohttp.ClientConnectorError as exc:  # no server there (or no such name): said at once
        part.unlink(missing_ok=True)
        raise FetchError(f"{where}: {exc!r}") from exc
    except (aiohttp.ClientError, TimeoutError) as exc:  # a transfer dropped, a server slow: may pass
        part.unlink(missing_ok=True)
        raise FetchError(f"{where}: {exc!r}", transient=True) from exc
    except OSError as exc:  # the cache's disk: nothing asking again would mend
        part.unlink(missing_ok=True)
        raise FetchError(f"{where}: {exc!r}") from exc
    part.replace(path)
    when = email.utils.parsedate_to_datetime(modified).isoformat() if modified else None
    return Fetched(where, path, when)


async def fetch_text(url: str, files_base: str | None, cache: Path, session: aiohttp.ClientSession) -> str:
    """A small published file (a serial, an md5) as text."""
    fetched = await fetch(url, files_base, cache, session)
    return fetched.path.read_text(encoding="utf-8", errors="replace")


def discard(paths: Iterable[Path], cache: Path) -> None:
    """Files downloaded into `cache` deleted once read (a dump is GBs at the whole space: a fleet
    worker's scratch volume, docs/sources.md, Disk); a local mirror's (`--files-base` a directory:
    read where they are, never copied) left alone."""
    for path in paths:
        if path.is_relative_to(cache):
            path.unlink(missing_ok=True)
