"""Work and result messages and crawl counters: the records that cross Kafka, Redis, files and processes."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import orjson

from whoiscrawl.ipv4 import ip_int

RESULT_SCHEMA = "whoiscrawl.result/v1"
SHARD_SCHEMA = "whoiscrawl.shard/v1"
FILL_SCHEMA = "whoiscrawl.fill/v1"
DEAD_LETTER_SCHEMA = "whoiscrawl.deadletter/v1"
# Of what a dead letter keeps of its bytes: enough to see what broke, small beside Kafka's 1 MB messages.
DEAD_LETTER_BYTES = 64 << 10


class RecordError(ValueError):
    """A message that does not match its schema; the text says which field is wrong."""


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    text = resources.files("whoiscrawl.schemas").joinpath(f"{name}.schema.json").read_text()
    return jsonschema.Draft202012Validator(json.loads(text))


def schema_of(name: str) -> dict[str, Any]:
    """A record's JSON Schema (`whoiscrawl/schemas/<name>.schema.json`): the one statement of its fields."""
    return dict(_validator(name).schema)


def validate(name: str, doc: dict[str, Any]) -> None:
    errors = sorted(_validator(name).iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.path) or "(record)"
        raise RecordError(f"{name} record invalid at {where}: {err.message}")


def parse(name: str, raw: bytes | str) -> dict[str, Any]:
    """A message's JSON, checked against its schema."""
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{name} message is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise RecordError(f"{name} message is not a JSON object")
    validate(name, doc)
    return doc


_clock: tuple[int, str] = (-1, "")  # the last second `_now` gave, and its text


def _now() -> str:
    """The time, to the second, as ISO 8601 (UTC): written once a second, not once a record (a
    refresh makes a hundred thousand a second; `datetime.now().isoformat` was a fifth of copying one)."""
    global _clock
    second = int(time.time())
    if second != _clock[0]:
        _clock = (second, datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds"))
    return _clock[1]


@dataclass(frozen=True)
class Shard:
    """A contiguous range of IPv4 space for one worker to walk, with the strategy's settings."""

    crawl: str
    shard_id: str
    first: int  # first address, as an integer
    last: int  # last address, inclusive
    strategy: str = "sweep"
    resolution: int = 24  # gap-probe grid, as a prefix length
    samples: int = 0  # for the sample strategy: probes in this shard

    def to_json(self) -> bytes:
        doc = {"schema": SHARD_SCHEMA, **asdict(self)}
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Shard:
        doc = parse("shard", raw)
        doc.pop("schema")
        return cls(**doc)


@dataclass(frozen=True)
class FillBatch:
    """Dumped networks to ask again live (the fill of what a dump left out, the freshness sample),
    published by a fleet's load for any worker to ask (worker/fill.py)."""

    crawl: str
    batch_id: str  # "fill:<item>:<n>": the same for the same staged files, whichever loader publishes
    item: str  # the load's item the networks are of ("dump:lacnic", "carried:ripencc")
    networks: list[dict[str, Any]]  # each a `NetworkRecord.to_dict`

    @property
    def registry(self) -> str:
        return self.item.split(":", 1)[1]

    def to_json(self) -> bytes:
        doc = {"schema": FILL_SCHEMA, **asdict(self)}
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> FillBatch:
        doc = parse("fill", raw)
        doc.pop("schema")
        return cls(**doc)

    def records(self) -> list[NetworkRecord]:
        """The batch's networks (RecordError: one is no result record)."""
        return [NetworkRecord.from_dict(doc) for doc in self.networks]


@dataclass
class NetworkRecord:
    """One registry network object (an RDAP ip network), as a crawl found it."""

    registry: str  # arin | ripencc | apnic | lacnic | afrinic
    handle: str
    start_address: str
    end_address: str
    cidrs: list[str]
    name: str | None = None
    country: str | None = None
    country_source: str | None = None  # network | holder | delegation: where `country` was read
    parent_handle: str | None = None
    type: str | None = None  # the registry's own status word: "ASSIGNED PA", "DIRECT ALLOCATION"...
    status: list[str] = field(default_factory=list)  # RDAP status values ("active", ...)
    abuse_emails: list[str] = field(default_factory=list)
    registrant: str | None = None  # the holder: registrant of kind org, else the first (docs/results.md)
    registration_date: str | None = None
    last_changed: str | None = None
    query_address: str | None = None
    source: str = "rdap"  # rdap | whois | dump | stats: where the record was read (docs/sources.md)
    crawl: str | None = None
    fetched_at: str = field(default_factory=_now)
    serial: str | None = None  # the published file's serial (a dump's CURRENTSERIAL, the statistics')
    # When the registry said so: the answer's time for rdap and whois (fetched_at), a published file's date.
    observed_at: str | None = None
    raw: dict[str, Any] | None = None
    # Fields read elsewhere than `source` says, each with where and when: a dumped network whose
    # abuse addresses its contact's RDAP entity gave (`seed.filled_by_contact`) is
    # {"abuse_emails": {"source": "rdap", "observed_at": ..., "entity": handle}}; None: every field
    # is the `source`'s (docs/sources.md, Provenance)
    filled: dict[str, dict[str, str]] | None = None

    def __post_init__(self) -> None:
        if self.observed_at is None:
            self.observed_at = self.fetched_at  # a live answer (or a record older than the field)

    @property
    def first(self) -> int:
        return ip_int(self.start_address)

    @property
    def last(self) -> int:
        return ip_int(self.end_address)

    def to_dict(self) -> dict[str, Any]:
        doc = {"schema": RESULT_SCHEMA, **asdict(self)}
        return _without_none(doc)

    def to_json(self) -> bytes:
        # `to_dict`'s fields, not copied (`asdict` copies every list: most of the time of writing a map)
        doc = {"schema": RESULT_SCHEMA, **{name: getattr(self, name) for name in _RESULT_FIELDS}}
        doc = _without_none(doc)
        if "raw" not in doc:
            # orjson's bytes are json.dumps's (a tenth of its time) for strings, lists and nulls of
            # printable ASCII; json.dumps writes \u escapes for DEL and beyond, orjson UTF-8.
            with contextlib.suppress(orjson.JSONEncodeError):  # a lone surrogate: json.dumps escapes it
                fast = orjson.dumps(doc)
                if fast.isascii() and b"\x7f" not in fast:
                    return fast
        return json.dumps(doc, separators=(",", ":")).encode()

    def read_again(self, serial: str | None, observed_at: str | None) -> NetworkRecord:
        """This network read again, unchanged, from newer files: its fields, their provenance."""
        again = object.__new__(NetworkRecord)  # as `copy.copy`, without its steps per object; `replace`
        again.__dict__.update(self.__dict__)  # ran __init__ again: most of the time of a refresh's copy
        again.serial, again.observed_at, again.fetched_at = serial, observed_at, _now()
        return again

    def with_filled(self, name: str, value: Any, source: str, entity: str) -> NetworkRecord:
        """This record with field `name` read now from `source` (asking `entity`), every other field
        still its `source`'s, and `filled` saying which is which."""
        at = _now()
        filled = {**(self.filled or {}), name: {"source": source, "observed_at": at, "entity": entity}}
        return replace(self, **{name: value}, filled=filled, fetched_at=at)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> NetworkRecord:
        validate("result", doc)
        return cls._from_valid(doc)

    @classmethod
    def from_json(cls, raw: bytes | str) -> NetworkRecord:
        return cls._from_valid(parse("result", raw))

    @classmethod
    def from_own_json(cls, raw: bytes | str) -> NetworkRecord:
        """A record of a file this project wrote from records (a map with its manifest, a staged
        dump), read without `from_json`'s schema check: that check is most of the time of reading
        a map of millions. A line that is no such record still fails, as RecordError."""
        try:
            doc = orjson.loads(raw)
            if doc.pop("schema") != RESULT_SCHEMA:
                raise ValueError(f"schema is not {RESULT_SCHEMA}")
            if doc.keys() == _WRITTEN and doc["observed_at"] is not None:  # as `to_json` writes it
                record = object.__new__(cls)  # no default or check left for __init__: half the time
                record.__dict__.update(doc, raw=None, filled=None)
                return record
            return cls(**doc)
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"result record unreadable: {exc}") from exc

    @classmethod
    def _from_valid(cls, doc: dict[str, Any]) -> NetworkRecord:
        return cls(**{k: v for k, v in doc.items() if k != "schema"})


_RESULT_FIELDS = tuple(f.name for f in fields(NetworkRecord))
# Fields a record leaves out rather than writing null: most records have neither (a map stays as
# it was written before them).
_OMITTED_IF_NONE = ("raw", "filled")
_WRITTEN = frozenset(_RESULT_FIELDS) - set(_OMITTED_IF_NONE)  # a usual record's JSON, its schema read


def _without_none(doc: dict[str, Any]) -> dict[str, Any]:
    for name in _OMITTED_IF_NONE:
        if doc[name] is None:
            del doc[name]
    return doc


@dataclass
class DeadLetter:
    """Something the crawl received and could not read, kept with its context (docs/data-plane.md):
    a registry's answer the parsers refused (malformed, over a cap, hostile; `kind` answer) or a
    work message that does not match its schema (`kind` work). `body`: its first DEAD_LETTER_BYTES."""

    kind: str  # answer | work
    reason: str
    asked: str  # the RDAP URL or whois://server/query; a work message's topic[partition]@offset
    body: str  # the bytes as text, or base64 where they are not UTF-8 (`encoding`)
    encoding: str = "utf-8"  # utf-8 | base64
    size: int = 0  # bytes received (an answer over a cap is read no further than the cap)
    truncated: bool = False  # `body` holds only the first bytes, or the answer was cut at a cap
    registry: str | None = None
    crawl: str | None = None
    at: str = field(default_factory=_now)

    @classmethod
    def of(cls, kind: str, reason: str, asked: str, raw: bytes, registry: str | None = None,
           whole: bool = True, size: int | None = None) -> DeadLetter:
        """A letter of `raw` bytes (`whole` False: what was read of an answer cut at a cap; `size`:
        how many it had, where `raw` is only its first bytes)."""
        kept = raw[:DEAD_LETTER_BYTES]
        size = len(raw) if size is None else size
        try:
            body, encoding = kept.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            body, encoding = base64.b64encode(kept).decode("ascii"), "base64"
        return cls(kind, reason, asked, body, encoding, size, len(kept) < size or not whole, registry)

    def raw(self) -> bytes:
        """The bytes kept, as received."""
        return base64.b64decode(self.body) if self.encoding == "base64" else self.body.encode("utf-8")

    def to_json(self) -> bytes:
        return json.dumps({"schema": DEAD_LETTER_SCHEMA, **asdict(self)}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> DeadLetter:
        doc = parse("deadletter", raw)
        doc.pop("schema")
        return cls(**doc)


@dataclass
class Progress:
    """A crawl's counters, as the operator and the progress display read them."""

    shards_total: int = 0
    shards_done: int = 0
    lookups: int = 0
    blocks: int = 0
    addresses_total: int = 0
    addresses_done: int = 0
    rate_limited: int = 0
    errors: int = 0
    wasted: int = 0  # lookups answered with a leaf this crawl already had (a race or a redo)
    # Writes made under a lease that had passed to another holder (a stalled worker's), refused;
    # and checkpoints that moved a shard's cursor back (a former owner's: none once fenced).
    stale_writes_refused: int = 0
    checkpoints_backwards: int = 0

    @classmethod
    def from_mapping(cls, raw: dict[Any, Any]) -> Progress:
        names = {f.name for f in fields(cls)}
        values = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        return cls(**{k: v for k, v in values.items() if k in names})
