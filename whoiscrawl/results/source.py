"""Result sets: a JSONL file or a crawl's compacted topic, deduplicated by block, read as a stream."""

from __future__ import annotations

import contextlib
import os
import tempfile
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from whoiscrawl import records as record_schemas
from whoiscrawl.ipv4 import ip_int

TOPIC_PREFIX = "topic:"  # RESULTS given as topic:NAME reads crawl NAME's compacted results topic
_CHUNK = 1 << 20  # records compared at once while deduplicating (bounds the temporary arrays)
_SCAN_CHUNK = 1 << 16  # keys parsed before they are stored (a Python int is 32 bytes, a stored key 8)
_TOP = np.uint64(0xFFFFFFFF)
_READ_BYTES = 1 << 25  # lines the columnar read parses at once (bounds its temporaries)
_COUNT_BYTES = 1 << 20  # bytes read at a time to count a file's lines
# A dotted quad as `ip_int` takes one: four decimal numbers 0 to 255, none with a leading zero.
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_QUAD = rf"^{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}$"
_ONE_THREAD = pajson.ReadOptions(use_threads=False)
_REQUIRED = ("start_address", "end_address", "registry", "handle")  # what makes a line a record


class ResultsError(ValueError):
    """A result set that cannot be read; the text says which and why."""


def block_key(first: int, last: int) -> int:
    """A block's sort and dedup key: by first address, then the larger block first (parents before
    their children), so sorted keys walk the hierarchy top-down."""
    return (first << 32) | (0xFFFFFFFF - last)


def block_keys(first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """`block_key` of arrays of first and last addresses (uint64)."""
    return (first.astype(np.uint64) << np.uint64(32)) | (_TOP - last.astype(np.uint64))


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
    `seekable`, 8 more for its byte offset), the second streams the winners. No record is kept.
    With `spill`, those are kept in temporary files mapped into memory (pages the system may drop
    and read again), not in the process's own memory: a byte a record is left there (`_mask`).
    For a reader that holds whole-IPv4 maps beside other work (the operator's change feed opens two:
    ~21 bytes a block each, ~0.5 GB for two of `full`'s 11M blocks, past the operator's limit)."""

    path: Path
    seekable: bool = False  # keep keys and offsets, to read winners in hierarchy order (`nested`)
    spill: bool = False  # keep them in temporary files mapped into memory
    records: int = 0  # valid records read (duplicates included)
    bad_records: int = 0  # blank lines excluded
    blocks: int = 0  # unique blocks
    winners: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))  # positions, key order
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))  # winners' keys (seekable)
    _offsets: np.ndarray | None = None
    _mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.path.is_file():
            raise ResultsError(f"{self.path} is not a results file")
        entries, offsets = self._scan()
        if not self.records and self.bad_records:
            raise ResultsError(f"{self.path} holds no result records ({self.bad_records} lines are not one)")
        self._mask = np.zeros(self.records, bool)
        self.blocks, order = _dedup(entries, self._mask, self.seekable, self.spill)
        del entries
        if order is not None:  # latest() needs only the mask; nested() the order and the offsets
            self.winners, self.keys = order
            self._offsets = offsets

    def _scan(self) -> tuple[np.ndarray, np.ndarray | None]:
        lines = _count_lines(self.path)
        entries = _array(lines, _ENTRY, self.spill)
        offsets = _array(lines, np.dtype(np.uint64), self.spill) if self.seekable else None
        keys: list[int] = []
        at: array = array("Q")
        with self.path.open("rb") as fh:
            offset = 0
            for line in fh:
                doc = parse_line(line)
                if doc is not None:
                    keys.append(block_key(doc["_first"], doc["_last"]))
                    at.append(offset)
                    if len(keys) == _SCAN_CHUNK:
                        self._store(entries, offsets, keys, at)
                elif line.strip():
                    self.bad_records += 1
                offset += len(line)
        self._store(entries, offsets, keys, at)
        return entries[: self.records], None if offsets is None else offsets[: self.records]

    def _store(self, entries: np.ndarray, offsets: np.ndarray | None, keys: list[int], at: array) -> None:
        n = self.records
        entries["key"][n : n + len(keys)] = keys
        entries["pos"][n : n + len(keys)] = np.arange(n, n + len(keys), dtype=np.uint32)
        if offsets is not None:
            offsets[n : n + len(keys)] = np.frombuffer(at, np.uint64)
        self.records += len(keys)
        keys.clear()
        del at[:]

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
        return self.records_at(range(len(self.winners)))

    def records_at(self, blocks: Iterable[int]) -> Iterator[dict[str, Any]]:
        """The winning records of these blocks (positions in hierarchy order, as `spans` gives them),
        each read where it lies in the file."""
        for line in self.lines_at(blocks):
            doc = parse_line(line)
            assert doc is not None
            yield doc

    def lines_at(self, blocks: Iterable[int]) -> Iterator[bytes]:
        """`records_at`'s lines, unparsed."""
        if self._offsets is None:
            raise ResultsError("reading records by block needs a ResultSet opened with seekable=True")
        with self.path.open("rb") as fh:
            for block in blocks:
                fh.seek(int(self._offsets[self.winners[block]]))
                yield fh.readline()


def arrow_schema(names: Sequence[str]) -> pa.Schema:
    """Arrow types for these result-record fields, read from the record's one JSON Schema
    (`schemas/result.schema.json`): a string (nullable, or one of an enum) is a string, an array of
    strings a list of strings."""
    properties = record_schemas.schema_of("result")["properties"]
    fields = []
    for name in names:
        spec = properties.get(name)
        if spec is None:
            raise ResultsError(f"{name!r} is not a field of a result record")
        if spec.get("type") == "array" and spec.get("items", {}).get("type") == "string":
            fields.append(pa.field(name, pa.list_(pa.string())))
        elif "enum" in spec or "const" in spec or spec.get("type") in ("string", ["string", "null"]):
            fields.append(pa.field(name, pa.string()))
        else:
            raise ResultsError(f"result field {name!r} is neither a string nor a list of strings")
    return pa.schema(fields)


class ColumnReader:
    """A JSONL result file read as columns a run of lines at a time, with the same records and the
    same rule as ResultSet (a line is a record as `parse_line` says; the last line of a block wins):
    `runs()` yields each run's records (the fields asked for, file order), and afterwards `latest()`
    says which of them are the latest of each block. pyarrow's JSON reader parses a run at once,
    typed by the record's JSON Schema, keeping only the fields asked for (and the block's); a run
    holding a line pyarrow refuses (not JSON, a field of another type) is read again a line at a
    time. Nothing of a run is kept but its blocks' keys (8 bytes a record): a reader that needs the
    runs' values keeps what it wants of them."""

    def __init__(self, path: Path, fields: Sequence[str]) -> None:
        if not path.is_file():
            raise ResultsError(f"{path} is not a results file")
        self.path, self.fields = path, list(fields)
        self.schema = arrow_schema(list(dict.fromkeys([*_REQUIRED, "fetched_at", *fields])))
        self.records = 0  # valid records read (duplicates included)
        self.bad_records = 0  # non-blank lines that are no record
        self.newest: str | None = None  # the greatest fetched_at of any record read: the map's age
        self._keys: list[np.ndarray] = []

    def runs(self) -> Iterator[pa.Table]:
        """Each run's records, the fields asked for, in file order (a run may hold none)."""
        newest = ""
        for run in _line_runs(self.path):
            table, refused = _parse_run(run, self.schema)
            del run
            table, first, last, dropped = _records_of(table)
            self.bad_records += refused + dropped
            self.records += table.num_rows
            self._keys.append(block_keys(first, last))
            newest = max(newest, pc.max(table["fetched_at"]).as_py() or "")
            self.newest = newest or None
            yield table.select(self.fields)
        if not self.records and self.bad_records:
            raise ResultsError(f"{self.path} holds no result records ({self.bad_records} lines are not one)")

    def latest(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """After `runs`: the latest record of each block (its position among the records read, file
        order) and its first and last address (uint32), in hierarchy order."""
        entries = np.empty(self.records, _ENTRY)
        entries["key"] = np.concatenate(self._keys) if self._keys else 0
        self._keys = []
        entries["pos"] = np.arange(self.records, dtype=np.uint32)
        _, order = _dedup(entries, np.zeros(self.records, bool), True)
        del entries
        assert order is not None
        winners, latest = order
        first = (latest >> np.uint64(32)).astype(np.uint32)
        return winners, first, (_TOP - (latest & _TOP)).astype(np.uint32)


def _line_runs(path: Path) -> Iterator[bytes | memoryview]:
    """The file's bytes in runs of whole lines, about _READ_BYTES each (a line cut by the end of a
    run is read again with the next, so no run is copied)."""
    with path.open("rb") as fh:
        while run := fh.read(_READ_BYTES):
            cut = run.rfind(b"\n") + 1
            if 0 < cut < len(run):
                fh.seek(cut - len(run), os.SEEK_CUR)
                yield memoryview(run)[:cut]
            elif cut == 0 and len(run) == _READ_BYTES:  # a line longer than a run: read on to its end
                yield run + fh.readline()
            else:
                yield run


def _parse_run(run: bytes | memoryview, schema: pa.Schema) -> tuple[pa.Table, int]:
    """A run of lines as a table of `schema` and how many non-blank lines were refused."""
    options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:  # one thread: on 2 shared cores pyarrow's threads made a run slower, not faster (docs/serving.md)
        return pajson.read_json(pa.BufferReader(pa.py_buffer(run)), _ONE_THREAD, options), 0
    except pa.ArrowInvalid:  # a line that is no JSON object, or a field of another type
        lines = bytes(run).split(b"\n")
        docs = [doc for doc in map(parse_line, lines) if doc is not None]
        refused = sum(1 for line in lines if line.strip()) - len(docs)
        rows = [_conformed(doc, schema) for doc in docs]
        return pa.Table.from_pylist(rows, schema) if rows else schema.empty_table(), refused


def _conformed(doc: dict[str, Any], schema: pa.Schema) -> dict[str, Any]:
    """A record `parse_line` took, its fields as `schema` types them (a value of another JSON type
    as its text, a list in a string field joined by newlines), so the run loses no record."""
    out: dict[str, Any] = {}
    for f in schema:
        value = doc.get(f.name)
        if value is None:
            out[f.name] = None
        elif pa.types.is_list(f.type):
            out[f.name] = [str(v) for v in value] if isinstance(value, list) else [str(value)]
        else:
            out[f.name] = "\n".join(map(str, value)) if isinstance(value, list) else str(value)
    return out


def _records_of(table: pa.Table) -> tuple[pa.Table, np.ndarray, np.ndarray, int]:
    """The rows that are records (dotted-quad addresses, a registry and a handle: `parse_line`'s
    rule), their first and last addresses, and how many rows were not."""
    ok = pc.and_(pc.match_substring_regex(table["start_address"], _QUAD),
                 pc.match_substring_regex(table["end_address"], _QUAD))
    ok = pc.fill_null(pc.and_(ok, pc.and_(pc.is_valid(table["registry"]), pc.is_valid(table["handle"]))),
                      False)
    dropped = table.num_rows - int(pc.sum(ok).as_py() or 0)
    if dropped:
        table = table.filter(ok)
    return table, _addresses(table["start_address"]), _addresses(table["end_address"]), dropped


def _addresses(column: pa.ChunkedArray) -> np.ndarray:
    """Dotted quads (checked) as uint32."""
    octets = pc.list_flatten(pc.split_pattern(column, ".")).cast(pa.uint32()).to_numpy()
    q = octets.reshape(-1, 4)
    return (q[:, 0] << 24 | q[:, 1] << 16 | q[:, 2] << 8 | q[:, 3]).astype(np.uint32)


def _count_lines(path: Path) -> int:
    """One more than the file's newlines, counted a block at a time in one buffer: read 16 MB at a
    time, the count took 33 MB at its peak, the most of opening a results file (the operator's change
    feed opens two at once)."""
    buffer = bytearray(_COUNT_BYTES)
    lines = 1
    with path.open("rb", buffering=0) as fh:
        while got := fh.readinto(buffer):
            lines += buffer.count(b"\n", 0, got)
    return lines


def _array(count: int, dtype: np.dtype, spill: bool) -> np.ndarray:
    """An array of `count` items, uninitialised: in the process's memory, or with `spill` in an
    anonymous temporary file mapped into it (removed when the array and the file are closed)."""
    if not spill or not count:
        return np.empty(count, dtype)
    with tempfile.TemporaryFile(prefix="whoiscrawl-index-") as fh:
        fh.truncate(count * dtype.itemsize)
        return np.memmap(fh, dtype, "r+", shape=(count,))  # the mapping outlives the descriptor


def _dedup(
    entries: np.ndarray, mask: np.ndarray, with_order: bool, in_place: bool = False
) -> tuple[int, tuple[np.ndarray, np.ndarray] | None]:
    """Mark the latest record of each key in `mask`; count the keys and, if asked, return those
    records' positions and keys in key order. Sorted in place by (key, position), so the last entry
    of each key is its latest record; compared a chunk at a time, so temporaries stay small. The
    winners are gathered at the front of `entries` as they are found (never past the chunk
    compared); `in_place` gives them there, as views, else copied out."""
    entries.sort(order=("key", "pos"))
    n, blocks = len(entries), 0
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        run = entries["key"][start:stop]
        is_last = np.empty(len(run), bool)
        is_last[:-1] = run[1:] != run[:-1]
        is_last[-1] = stop == n or run[-1] != entries["key"][stop]
        won = entries[start:stop][is_last]  # a copy: the front is written below
        mask[won["pos"]] = True
        entries[blocks : blocks + len(won)] = won
        blocks += len(won)
    if not with_order:
        return blocks, None
    front = entries[:blocks]
    if in_place:
        return blocks, (front["pos"], front["key"])
    return blocks, (np.ascontiguousarray(front["pos"]), np.ascontiguousarray(front["key"]))


@contextlib.contextmanager
def results_file(spec: str | Path, kafka_bootstrap: str | None = None, topic_prefix: str = "whoiscrawl.",
                 kafka_config: dict[str, str] | None = None) -> Iterator[Path]:
    """The JSONL file of a result set: a path as given, or `topic:CRAWL` (that crawl's compacted
    results topic) copied to a temporary file as it streams in, removed afterwards. Kafka's client
    settings are `kafka_config` (the operator's, from a crawl's credentials Secret), else the
    environment's `WHOISCRAWL_KAFKA_*`."""
    text = str(spec)
    if not text.startswith(TOPIC_PREFIX):
        yield Path(text)
        return
    from whoiscrawl import queue  # Kafka's client, only for topic:CRAWL

    if not kafka_bootstrap:
        raise ResultsError("topic:NAME needs --kafka-bootstrap (or WHOISCRAWL_KAFKA_BOOTSTRAP)")
    crawl = text[len(TOPIC_PREFIX) :]
    fd, tmp = tempfile.mkstemp(prefix=f"whoiscrawl-{crawl}-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "wb") as fh:
            config = queue.kafka_config_from(os.environ) if kafka_config is None else kafka_config
            for record in queue.iter_results(kafka_bootstrap, topic_prefix, crawl, config):
                fh.write(record.to_json() + b"\n")
        yield Path(tmp)
    finally:
        os.unlink(tmp)


@contextlib.contextmanager
def open_results(
    spec: str | Path, kafka_bootstrap: str | None = None, topic_prefix: str = "whoiscrawl.",
    seekable: bool = False, kafka_config: dict[str, str] | None = None, spill: bool = False,
) -> Iterator[ResultSet]:
    """A result set from a JSONL path or `topic:CRAWL` (`results_file`)."""
    with results_file(spec, kafka_bootstrap, topic_prefix, kafka_config) as path:
        yield ResultSet(path, seekable=seekable, spill=spill)
