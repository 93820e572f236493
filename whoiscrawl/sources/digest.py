"""What one read of a registry's dump was made of, object by object: each object's text hashed, with
the network it gave (its span and the contacts it was joined with) or the contacts it names. Kept
beside the map (docs/refresh.md), so the next refresh parses only the objects whose text, or a
contact they were joined with, changed; the others are the previous map's records, as they were."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

VERSION = 1


class DigestError(ValueError):
    """A digest that cannot be used (missing, cut off, another version); the text says which file."""


def fingerprint(text: bytes) -> str:
    """An object's text as a short hash (64 bits: a collision in a registry's millions of objects
    is about one chance in 10^6)."""
    return hashlib.blake2b(text, digest_size=8).hexdigest()


def path_of(folder: Path, registry: str) -> Path:
    """Where a read of `registry`'s dump keeps its digest: beside the files it read."""
    return folder / f"{registry}.digest.jsonl.gz"


@dataclass(frozen=True)
class Network:
    """An object that gave one network: its span and the contacts (`Contacts.key_of`) it was joined with."""

    first: int
    last: int
    joined: tuple[str, ...]


OTHER = "other"  # an object of another type where networks are read: passed over


class Writer:
    """A digest written as the dump is read (one JSON line an object: nothing held), under a
    temporary name until `commit` (a read cut short leaves none)."""

    def __init__(self, path: Path, registry: str, serial: str | None, observed_at: str | None) -> None:
        self.path, self._part = path, path.with_name(path.name + ".part")
        self._lines: list[bytes] = []  # written a batch at a time: a write per object is most of the cost
        self._fh = gzip.GzipFile(self._part, "wb", compresslevel=1)  # closed by `commit` or `discard`
        self._line({"version": VERSION, "registry": registry, "serial": serial, "observed_at": observed_at})

    def _line(self, doc: Any) -> None:
        self._lines.append(orjson.dumps(doc))
        if len(self._lines) >= 4096:
            self._flush()

    def _flush(self) -> None:
        if self._lines:
            self._fh.write(b"\n".join(self._lines) + b"\n")
            self._lines.clear()

    def contacts(self, text: str, keys: Iterable[str], clean: bool) -> None:
        """A text read for contacts: the keys of those it holds; `clean`: nothing in it was broken."""
        self._line(["c", text, list(keys), clean])

    def network(self, text: str, first: int, last: int, joined: Iterable[str]) -> None:
        self._line(["n", text, first, last, list(joined)])

    def other(self, text: str) -> None:
        self._line(["o", text])

    def commit(self) -> None:
        self._flush()
        self._fh.close()
        self._part.replace(self.path)

    def discard(self) -> None:
        self._fh.close()
        self._part.unlink(missing_ok=True)


@dataclass
class Digest:
    """A previous read, loaded: what each text gave, and each contact key's texts in file order."""

    registry: str
    serial: str | None
    observed_at: str | None
    contacts: dict[str, tuple[tuple[str, ...], bool]] = field(default_factory=dict)  # text -> keys, clean
    state: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # key -> its texts
    found: dict[str, Network | str] = field(default_factory=dict)  # text -> its network, or OTHER
    twice: set[tuple[int, int]] = field(default_factory=set)  # spans two texts gave: read again

    @classmethod
    def load(cls, path: Path) -> Digest:
        """The digest at `path`; DigestError naming it when it cannot be used."""
        try:
            with gzip.open(path, "rb") as fh:
                head = orjson.loads(fh.readline())
                if not isinstance(head, dict) or head.get("version") != VERSION:
                    raise DigestError(f"{path}: not a version {VERSION} digest")
                got = cls(head["registry"], head["serial"], head["observed_at"])
                got._read(fh)
        except DigestError:
            raise
        except (OSError, EOFError, zlib.error, KeyError, TypeError, ValueError) as exc:  # JSON's too
            raise DigestError(f"{path}: cannot be read ({exc})") from exc
        return got

    def _read(self, fh: gzip.GzipFile) -> None:
        spans: Counter[tuple[int, int]] = Counter()
        for doc in _docs(fh):
            if doc[0] == "c":
                keys = tuple(doc[2])
                self.contacts[doc[1]] = (keys, doc[3])
                for key in keys:
                    self.state[key].append(doc[1])
            elif doc[0] == "n":
                self.found[doc[1]] = Network(doc[2], doc[3], tuple(doc[4]))
                spans[(doc[2], doc[3])] += 1
            else:
                self.found[doc[1]] = OTHER
        self.twice = {span for span, n in spans.items() if n > 1}

    def changed(self, state: dict[str, list[str]]) -> set[str]:
        """The contact keys whose texts differ from this read's in `state` (new, gone or edited)."""
        return {k for k in state.keys() | self.state.keys() if state.get(k, []) != self.state.get(k, [])}


def _docs(fh: gzip.GzipFile, batch: int = 4096) -> Iterator[Any]:
    """A digest's lines as JSON, parsed a batch at a time (one parse of many lines: most of the
    cost of loading a digest is the calls, not the JSON)."""
    lines = list(itertools.islice(fh, batch))
    while lines:
        yield from orjson.loads(b"[" + b",".join(lines) + b"]")
        lines = list(itertools.islice(fh, batch))
