"""Fetching a published file: streamed to disk from its real location or a mirror's (`--files-base`).

The one HTTP edge of `sources/`: files are written through to a cache directory as they arrive
(the largest dump is ~1 GB compressed), and parsed from there."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from whoiscrawl import rirs

CHUNK = 1 << 16


class FetchError(RuntimeError):
    """A published file that could not be had; the text names its URL and why."""


@dataclass(frozen=True)
class Fetched:
    """A file on disk, where it came from and the date its server gave it (ISO 8601, or None)."""

    url: str
    path: Path
    modified: str | None


async def fetch(url: str, files_base: str | None, cache: Path, session: aiohttp.ClientSession) -> Fetched:
    """A published file at its real URL or under `files_base` (a URL or a local directory),
    downloaded into `cache` under its host and path."""
    where = rirs.published_at(url, files_base)
    if not where.startswith(("http://", "https://")):
        path = Path(where)
        if not path.is_file():
            raise FetchError(f"{where}: no such file (from {url} under --files-base {files_base})")
        return Fetched(where, path, None)
    path = cache / url.split("://", 1)[-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        async with session.get(where, timeout=aiohttp.ClientTimeout(total=None, sock_read=60)) as resp:
            if resp.status != 200:
                raise FetchError(f"{where}: HTTP {resp.status}")
            with part.open("wb") as fh:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    fh.write(chunk)
            modified = resp.headers.get("Last-Modified")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise FetchError(f"{where}: {exc!r}") from exc
    part.replace(path)
    when = email.utils.parsedate_to_datetime(modified).isoformat() if modified else None
    return Fetched(where, path, when)


async def fetch_text(url: str, files_base: str | None, cache: Path, session: aiohttp.ClientSession) -> str:
    """A small published file (a serial, an md5) as text."""
    fetched = await fetch(url, files_base, cache, session)
    return fetched.path.read_text(encoding="utf-8", errors="replace")
