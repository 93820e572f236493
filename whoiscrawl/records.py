"""Work and result messages and crawl counters: the records that cross Kafka, Redis, files and processes."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from netaddr import IPAddress

RESULT_SCHEMA = "whoiscrawl.result/v1"
SHARD_SCHEMA = "whoiscrawl.shard/v1"


class RecordError(ValueError):
    """A message that does not match its schema; the text says which field is wrong."""


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    text = resources.files("whoiscrawl.schemas").joinpath(f"{name}.schema.json").read_text()
    return jsonschema.Draft202012Validator(json.loads(text))


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
    fetched_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    serial: str | None = None  # the published file's serial (a dump's CURRENTSERIAL, the statistics')
    # When the registry said so: the answer's time for rdap and whois (fetched_at), a published file's date.
    observed_at: str | None = None
    raw: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.observed_at is None:
            self.observed_at = self.fetched_at  # a live answer (or a record older than the field)

    @property
    def first(self) -> int:
        return int(IPAddress(self.start_address))

    @property
    def last(self) -> int:
        return int(IPAddress(self.end_address))

    def to_dict(self) -> dict[str, Any]:
        doc = {"schema": RESULT_SCHEMA, **asdict(self)}
        if doc["raw"] is None:
            del doc["raw"]
        return doc

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> NetworkRecord:
        validate("result", doc)
        return cls._from_valid(doc)

    @classmethod
    def from_json(cls, raw: bytes | str) -> NetworkRecord:
        return cls._from_valid(parse("result", raw))

    @classmethod
    def _from_valid(cls, doc: dict[str, Any]) -> NetworkRecord:
        return cls(**{k: v for k, v in doc.items() if k != "schema"})


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
