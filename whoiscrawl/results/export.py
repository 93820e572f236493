"""`whoiscrawl export`: one column schema, written as JSONL, CSV or Parquet in batches, with filters."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from whoiscrawl.results.source import ResultSet
from whoiscrawl.space import Scope, parse_ranges

FORMATS = ("jsonl", "csv", "parquet")
BATCH_ROWS = 16_384  # rows buffered before a batch is written (bounds memory, whatever the size)

_STR = pa.string()
_LIST = pa.list_(pa.string())


def _field(name: str, kind: pa.DataType, doc: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, kind, nullable=nullable, metadata={"description": doc})


# The one column schema of every export format (docs/results.md lists the same, from this).
SCHEMA = pa.schema([
    _field("registry", _STR, "arin, ripencc, apnic, lacnic or afrinic", False),
    _field("handle", _STR, "the registry's handle of the network", False),
    _field("start_address", _STR, "first address, dotted quad", False),
    _field("end_address", _STR, "last address, dotted quad", False),
    _field("first", pa.uint32(), "first address as an integer", False),
    _field("last", pa.uint32(), "last address as an integer", False),
    _field("addresses", pa.int64(), "last - first + 1", False),
    _field("cidrs", _LIST, "the CIDRs exactly covering the range (CSV: space-separated)", False),
    _field("name", _STR, "the network's name"),
    _field("country", _STR, "ISO 3166 country code: the network's, else its holder's, else its delegation's"),
    _field("country_source", _STR, "where the country was read: network, holder or delegation"),
    _field("registrant", _STR, "the holder: the registrant entity of kind org, else the first registrant"),
    _field("type", _STR, "the registry's status word: ASSIGNED PA, DIRECT ALLOCATION, ..."),
    _field("status", _LIST, "RDAP status values (CSV: space-separated)", False),
    _field("parent_handle", _STR, "the enclosing network's handle"),
    _field("abuse_emails", _LIST, "abuse contact addresses (CSV: space-separated)", False),
    _field("registration_date", _STR, "as the registry gives it (ISO 8601 in RDAP)"),
    _field("last_changed", _STR, "as the registry gives it"),
    _field("source", _STR, "where it was read: rdap, whois, dump or stats", False),
    _field("serial", _STR, "the published file's serial (dump, stats)"),
    _field("query_address", _STR, "the address whose lookup answered this network"),
    _field("crawl", _STR, "the crawl's name"),
    _field("fetched_at", _STR, "when the answer arrived (UTC, ISO 8601)", False),
    _field("observed_at", _STR, "when the registry said so: the answer's time, or the file's date", False),
])
COLUMNS = tuple(SCHEMA.names)
_LISTS = frozenset(f.name for f in SCHEMA if pa.types.is_list(f.type))


def row(doc: dict[str, Any]) -> dict[str, Any]:
    """A result record (as `source.parse_line` reads it) as a row of SCHEMA."""
    out = {name: doc.get(name) for name in COLUMNS}
    out["first"], out["last"] = doc["_first"], doc["_last"]
    out["addresses"] = doc["_last"] - doc["_first"] + 1
    for name in _LISTS:
        out[name] = [str(v) for v in out[name] or []]
    out["source"] = out["source"] or "rdap"
    out["fetched_at"] = out["fetched_at"] or ""
    out["observed_at"] = out["observed_at"] or out["fetched_at"]
    return out


@dataclass(frozen=True)
class Filters:
    """Which blocks to keep: registries, countries (any of each), and ranges the block overlaps."""

    registries: frozenset[str] = frozenset()
    countries: frozenset[str] = frozenset()
    ranges: Scope | None = None

    @classmethod
    def of(cls, registries: Iterable[str] = (), countries: Iterable[str] = (),
           ranges: Iterable[str] = ()) -> Filters:
        spans = [(int(r.first), int(r.last)) for r in parse_ranges(ranges).iter_ipranges()]
        return cls(frozenset(r.lower() for r in registries), frozenset(c.upper() for c in countries),
                   Scope.of(spans) if spans else None)

    def __call__(self, doc: dict[str, Any]) -> bool:
        if self.registries and doc["registry"] not in self.registries:
            return False
        if self.countries and str(doc.get("country") or "").upper() not in self.countries:
            return False
        return self.ranges is None or self.ranges.overlaps(doc["_first"], doc["_last"])


@dataclass
class Writer:
    """Rows in, batches out: SCHEMA's columns through pyarrow's Parquet and CSV writers, or JSON lines.
    Rows wait in column lists (no dict per row), BATCH_ROWS at a time."""

    fmt: str
    out: Path
    columns: dict[str, list[Any]] = field(default_factory=lambda: {name: [] for name in COLUMNS})
    pending: int = 0
    written: int = 0
    _sink: Any = None
    _file: IO[bytes] | None = None

    def add(self, item: dict[str, Any]) -> None:
        for name, values in self.columns.items():
            values.append(item[name])
        self.pending += 1
        if self.pending >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.pending and self._sink is not None:
            return
        if self.fmt == "jsonl":
            self._jsonl()
        else:
            batch = pa.RecordBatch.from_pydict(self.columns, schema=SCHEMA)
            self._sink = self._sink or self._open()
            self._sink.write(_csv_batch(batch) if self.fmt == "csv" else batch)
        self.written += self.pending
        self.pending = 0
        for values in self.columns.values():
            values.clear()

    def _open(self) -> Any:
        if self.fmt == "parquet":
            return pq.ParquetWriter(str(self.out), SCHEMA, compression="zstd")
        return pacsv.CSVWriter(str(self.out), _csv_schema())

    def _jsonl(self) -> None:
        if self._file is None:
            self._file = self.out.open("wb")
        rows = (dict(zip(COLUMNS, r, strict=True)) for r in zip(*self.columns.values(), strict=True))
        self._file.write(b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in rows))

    def close(self) -> None:
        self.flush()
        for closing in (self._sink, self._file):
            if closing is not None:
                closing.close()


def _csv_schema() -> pa.Schema:
    return pa.schema([pa.field(f.name, _STR if f.name in _LISTS else f.type, f.nullable) for f in SCHEMA])


def _csv_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """CSV has no lists: list columns become space-separated strings."""
    columns = [
        pa.array([" ".join(v) for v in col.to_pylist()], _STR) if name in _LISTS else col
        for name, col in zip(batch.schema.names, batch.columns, strict=True)
    ]
    return pa.RecordBatch.from_arrays(columns, schema=_csv_schema())


def export(results: ResultSet, fmt: str, out: Path,
           keep: Callable[[dict[str, Any]], bool] = Filters()) -> int:
    """Write the latest record of every block that passes `keep`; returns the rows written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use {', '.join(FORMATS)}")
    writer = Writer(fmt, out)
    with contextlib.closing(writer):
        for doc in results.latest():
            if keep(doc):
                writer.add(row(doc))
    return writer.written
