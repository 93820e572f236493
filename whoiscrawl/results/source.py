"""Result sets: a JSONL file or a crawl's compacted topic, deduplicated by block, read as a stream."""

from __future__ import annotations

import contextlib
import os
import tempfile
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from whoiscrawl.ipv4 import ip_int

TOPIC_PREFIX = "topic:"  # RESULTS given as topic:NAME reads crawl NAME's compacted results topic
_CHUNK = 1 << 20  # records compared at once while deduplicating (bounds the temporary arrays)
_SCAN_CHUNK = 1 << 16  # keys parsed before they are stored (a Python int is 32 bytes, a stored key 8)
_TOP = np.uint64(0xFFFFFFFF)


class ResultsError(ValueError):
    """A result set that cannot be read; the text says which and why."""


def block_key(first: int, last: int) -> int:
    """A block's sort and dedup key: by first address, then the larger block first (parents before
    their children), so sorted keys walk the hierarchy top-down."""
    return (first << 32) | (0xFFFFFFFF - last)


def key_span(key: int) -> tuple[int, int]:
    return key >> 32, 0xFFFFFFFF - (key & 0xFFFFFFFF)


def parse_line(line: bytes | str) -> dict[str, Any] | None:
    """One result record, or None for a blank or malformed line (counted, never fatal)."""
    if not line.strip():
        return None
    try:
        doc = orjson.loads(line)  # ~4x json.loads: the results are read at millions of records
        doc["_first"], doc["_last"] = ip_int(doc["start_address"]), ip_int(doc["end_address"])
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(doc.get("registry"), str) or not isinstance(doc.get("handle"), str):
        return None
    return doc


_ENTRY = np.dtype([("key", "<u8"), ("pos", "<u4")])  # 12 bytes a record while deduplicating


@dataclass
class ResultSet:
    """A JSONL result file, deduplicated by block with the latest record (the last line) winning.

    Two passes over the file: the first keeps 12 bytes per record (its block's key and position; with
    `seekable`, 8 more for its byte offset), the second streams the winners. No record is kept."""

    path: Path
    seekable: bool = False  # keep keys and offsets, to read winners in hierarchy order (`nested`)
    records: int = 0  # valid records read (duplicates included)
    bad_records: int = 0  # blank lines excluded
    blocks: int = 0  # unique blocks
    winners: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))  # positions, key order
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))  # winners' keys (seekable)
    # Called with (position, record) for every valid record as the one read streams past, so a
    # caller that wants every record (the serving index) decodes each line once, not twice.
    each: Callable[[int, dict[str, Any]], None] | None = None
    _offsets: np.ndarray | None = None
    _mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.path.is_file():
            raise ResultsError(f"{self.path} is not a results file")
        entries, offsets = self._scan()
        if not self.records and self.bad_records:
            raise ResultsError(f"{self.path} holds no result records ({self.bad_records} lines are not one)")
        self._mask = np.zeros(self.records, bool)
        self.blocks, order = _dedup(entries, self._mask, self.seekable)
        del entries
        if order is not None:  # latest() needs only the mask; nested() the order and the offsets
            self.winners, self.keys = order
            self._offsets = np.frombuffer(offsets, np.uint64) if offsets else np.zeros(0, np.uint64)

    def _scan(self) -> tuple[np.ndarray, array]:
        entries = np.empty(_count_lines(self.path), _ENTRY)
        offsets: array = array("Q")
        keys: list[int] = []
        with self.path.open("rb") as fh:
            offset = 0
            for line in fh:
                doc = parse_line(line)
                if doc is not None:
                    if self.each is not None:
                        self.each(self.records + len(keys), doc)
                    keys.append(block_key(doc["_first"], doc["_last"]))
                    if self.seekable:
                        offsets.append(offset)
                    if len(keys) == _SCAN_CHUNK:
                        self._store(entries, keys)
                elif line.strip():
                    self.bad_records += 1
                offset += len(line)
        self._store(entries, keys)
        return entries[: self.records], offsets

    def _store(self, entries: np.ndarray, keys: list[int]) -> None:
        n = self.records
        entries["key"][n : n + len(keys)] = keys
        entries["pos"][n : n + len(keys)] = np.arange(n, n + len(keys), dtype=np.uint32)
        self.records += len(keys)
        keys.clear()

    def spans(self) -> tuple[np.ndarray, np.ndarray]:
        """Every unique block's first and last address, in hierarchy order (int64 arrays)."""
        first = (self.keys >> np.uint64(32)).astype(np.int64)
        last = (_TOP - (self.keys & _TOP)).astype(np.int64)
        return first, last

    def latest(self) -> Iterator[dict[str, Any]]:
        """The winning record of every block, in file order (one sequential read)."""
        mask = self._mask
        assert mask is not None
        pos = 0
        with self.path.open("rb") as fh:
            for line in fh:
                doc = parse_line(line)
                if doc is None:
                    continue
                if mask[pos]:
                    yield doc
                pos += 1

    def nested(self) -> Iterator[dict[str, Any]]:
        """The winning record of every block in hierarchy order: by first address, parents first."""
        if self._offsets is None:
            raise ResultsError("nested() needs a ResultSet opened with seekable=True")
        with self.path.open("rb") as fh:
            for pos in self.winners:
                fh.seek(int(self._offsets[pos]))
                doc = parse_line(fh.readline())
                assert doc is not None
                yield doc


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 24), b"")) + 1


def _dedup(
    entries: np.ndarray, mask: np.ndarray, with_order: bool
) -> tuple[int, tuple[np.ndarray, np.ndarray] | None]:
    """Mark the latest record of each key in `mask`; count the keys and, if asked, return those
    records' positions and keys in key order. Sorted in place by (key, position), so the last entry
    of each key is its latest record; compared a chunk at a time, so temporaries stay small."""
    entries.sort(order=("key", "pos"))
    winners, keys = [], []
    n, blocks = len(entries), 0
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        run = entries["key"][start:stop]
        is_last = np.empty(len(run), bool)
        is_last[:-1] = run[1:] != run[:-1]
        is_last[-1] = stop == n or run[-1] != entries["key"][stop]
        pos = entries["pos"][start:stop][is_last]
        mask[pos] = True
        blocks += len(pos)
        if with_order:
            winners.append(pos)
            keys.append(run[is_last])
    if not with_order:
        return blocks, None
    if not winners:
        return 0, (np.zeros(0, np.uint32), np.zeros(0, np.uint64))
    return blocks, (np.concatenate(winners), np.concatenate(keys))


@contextlib.contextmanager
def open_results(
    spec: str | Path, kafka_bootstrap: str | None = None, topic_prefix: str = "whoiscrawl.",
    seekable: bool = False, each: Callable[[int, dict[str, Any]], None] | None = None,
) -> Iterator[ResultSet]:
    """A result set from a JSONL path or `topic:CRAWL` (that crawl's compacted results topic, copied
    to a temporary file as it streams in, then read like a file); `each` as ResultSet's."""
    text = str(spec)
    if not text.startswith(TOPIC_PREFIX):
        yield ResultSet(Path(text), seekable=seekable, each=each)
        return
    from whoiscrawl import queue  # Kafka's client, only for topic:CRAWL

    if not kafka_bootstrap:
        raise ResultsError("topic:NAME needs --kafka-bootstrap (or WHOISCRAWL_KAFKA_BOOTSTRAP)")
    crawl = text[len(TOPIC_PREFIX) :]
    fd, tmp = tempfile.mkstemp(prefix=f"whoiscrawl-{crawl}-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "wb") as fh:
            config = queue.kafka_config_from(os.environ)
            for record in queue.iter_results(kafka_bootstrap, topic_prefix, crawl, config):
                fh.write(record.to_json() + b"\n")
        yield ResultSet(Path(tmp), seekable=seekable, each=each)
    finally:
        os.unlink(tmp)
