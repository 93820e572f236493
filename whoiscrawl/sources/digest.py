"""What one read of a registry's dump was made of, object by object: each object's text hashed, with
the network it gave (its span and the contacts it was joined with) or the contacts it names. Kept
beside the map (docs/refresh.md), so the next refresh parses only the objects whose text, or a
contact they were joined with, changed; the others are the previous map's records, as they were.

Held as numpy arrays, 64-bit hashes throughout (texts and contact keys alike), and kept as one
`.npz`: a refresh loads and compares a registry's hundreds of thousands of objects in array
operations, never an object per text (the JSON lines it replaced took seconds to load alone)."""

from __future__ import annotations

import json
import zipfile
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import xxhash

from whoiscrawl.ipv4 import span_keys

VERSION = 3  # 3: texts hashed by xxh3 (2: blake2b; its digests are not read)

OTHER, NETWORK = 0, 1  # what a text of the files read for networks gave: passed over, or a network


class DigestError(ValueError):
    """A digest that cannot be used (missing, cut off, another version); the text says which file."""


def number(text: bytes) -> int:
    """An object's text as the short hash the digest keeps (xxh3, 64 bits: a collision in a
    registry's millions of objects is about one chance in 10^6; blake2b's was ~8x the time, 0.5 s of
    CPU for RIPE NCC's 332 MB on `standard`)."""
    return xxhash.xxh3_64_intdigest(text)


def key_number(key: str) -> int:
    """A contact key (`dumps.Contacts.key_of`: `org:` or `box:` and a handle) as the integer kept."""
    return number(key.encode())


def path_of(folder: Path, registry: str) -> Path:
    """Where a read of `registry`'s dump keeps its digest: beside the files it read."""
    return folder / f"{registry}.digest.npz"


def owners(offsets: np.ndarray) -> np.ndarray:
    """For lists kept flat with `offsets` (list i is flat[offsets[i]:offsets[i + 1]]), the list
    each flat item belongs to."""
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))


def runs(which: np.ndarray) -> list[tuple[int, int]]:
    """`which` cut where it stops counting up by one: (start, end) of each run. A read's texts are
    mostly the previous read's in the same order, so a few runs copy a registry's whole digest."""
    if not len(which):
        return []
    cuts = (np.flatnonzero(np.diff(which) != 1) + 1).tolist()
    return list(zip([0, *cuts], [*cuts, len(which)], strict=True))


def gather(offsets: np.ndarray, flat: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lists `which` of (offsets, flat), in that order: their own offsets and flat items."""
    got = np.zeros(len(which) + 1, dtype=np.int64)
    np.cumsum(np.diff(offsets)[which], out=got[1:])
    out = np.empty(got[-1], dtype=flat.dtype)
    for start, end in runs(which):
        out[got[start]:got[end]] = flat[offsets[which[start]]:offsets[which[end - 1] + 1]]
    return got, out


@dataclass
class Lists:
    """Texts in file order, each with a hash and a list of contact keys: the contacts' texts (their
    keys, `clean` where none of their objects was broken) or the networks' (the keys joined)."""

    hashes: np.ndarray  # uint64, one a text
    offsets: np.ndarray  # int64, one more than texts: text i's keys are keys[offsets[i]:offsets[i + 1]]
    keys: np.ndarray  # uint64 (or, for a text's contact rows, the bytes of their JSON: uint8)

    def take(self, which: np.ndarray) -> Lists:
        offsets, keys = gather(self.offsets, self.keys, which)
        return Lists(self.hashes[which], offsets, keys)

    @staticmethod
    def placed(count: int, parts: list[tuple[np.ndarray, Lists]]) -> Lists:
        """`count` texts, each part's lists put at its indices (every text in one part)."""
        sizes = np.zeros(count, dtype=np.int64)
        hashes = np.zeros(count, dtype=np.uint64)
        for where, lists in parts:
            sizes[where] = np.diff(lists.offsets)
            hashes[where] = lists.hashes
        offsets = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        keys = np.zeros(offsets[-1], dtype=parts[0][1].keys.dtype if parts else np.uint64)
        for where, lists in parts:
            for start, end in runs(where):
                keys[offsets[where[start]]:offsets[where[end - 1] + 1]] = lists.keys[
                    lists.offsets[start]:lists.offsets[end]]
        return Lists(hashes, offsets, keys)

    @staticmethod
    def join(parts: list[Lists]) -> Lists:
        """Parts one after another."""
        ends = np.cumsum([0] + [len(p.keys) for p in parts[:-1]])
        offsets = np.concatenate([np.zeros(1, np.int64)] + [p.offsets[1:] + end for p, end in zip(parts, ends,
                                                                                                  strict=True)])
        return Lists(np.concatenate([p.hashes for p in parts]).astype(np.uint64), offsets.astype(np.int64),
                     np.concatenate([p.keys for p in parts]).astype(parts[0].keys.dtype))

    def rows(self, text: int) -> list[list[str | None]]:
        """A text's contact rows (`dumps.Contacts.rows_of`), where `keys` holds their JSON."""
        return list(orjson.loads(self.keys[self.offsets[text]:self.offsets[text + 1]].tobytes()))


@dataclass
class Digest:
    """A read, loaded: its contacts' texts (file order), and what each text of its network files gave
    (a network: span, contacts joined; or nothing: OTHER)."""

    registry: str
    serial: str | None
    observed_at: str | None
    contacts: Lists
    clean: np.ndarray  # bool, a contact text each
    rows: Lists  # each contact text's rows as `dumps.Contacts` keeps them (JSON): read without the text
    networks: Lists  # keys: the contacts joined
    kind: np.ndarray  # uint8, NETWORK or OTHER, a text each
    firsts: np.ndarray  # uint32 (0 for OTHER)
    lasts: np.ndarray

    @classmethod
    def load(cls, path: Path) -> Digest:
        """The digest at `path`; DigestError naming it when it cannot be used."""
        try:
            with np.load(path, allow_pickle=False) as got:
                head = json.loads(bytes(got["head"]))
                if not isinstance(head, dict) or head.get("version") != VERSION:
                    raise DigestError(f"{path}: not a version {VERSION} digest")
                return cls(head["registry"], head["serial"], head["observed_at"],
                           Lists(got["c_hash"], got["c_off"], got["c_keys"]), got["c_clean"],
                           Lists(got["c_hash"], got["r_off"], got["r_json"]),
                           Lists(got["n_hash"], got["n_off"], got["n_keys"]), got["n_kind"], got["n_first"],
                           got["n_last"])
        except DigestError:
            raise
        except (OSError, EOFError, KeyError, TypeError, ValueError, zipfile.BadZipFile) as exc:  # JSON's too
            raise DigestError(f"{path}: cannot be read ({exc})") from exc

    def twice(self) -> np.ndarray:
        """For each text, whether it gave a span another text gave too (read again, never reused)."""
        net = self.kind == NETWORK
        span = span_keys(self.firsts[net], self.lasts[net])
        _, inverse, counts = np.unique(span, return_inverse=True, return_counts=True)
        out = np.zeros(len(net), dtype=bool)
        out[net] = counts[inverse] > 1
        return out


def changed_keys(before: Lists, now: Lists) -> np.ndarray:
    """The contact keys whose texts, in file order, differ between two reads (new, gone or edited):
    each (key, its n-th text, that text's hash) of one read not in the other."""
    rows = [_key_rows(before), _key_rows(now)]
    key, nth, text = (np.concatenate([r[i] for r in rows]) for i in range(3))
    order = np.lexsort((text, nth, key))
    key, nth, text = key[order], nth[order], text[order]
    same = (key[1:] == key[:-1]) & (nth[1:] == nth[:-1]) & (text[1:] == text[:-1])
    paired = np.zeros(len(key), dtype=bool)
    paired[1:] |= same
    paired[:-1] |= same
    return np.unique(key[~paired])


def _key_rows(lists: Lists) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(key, which of its texts this is, the text's hash) for every key of every text."""
    text = lists.hashes[owners(lists.offsets)]
    order = np.argsort(lists.keys, kind="stable")  # a key's texts stay in file order
    key, text = lists.keys[order], text[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, np.int64)
    nth = np.arange(len(key)) - np.repeat(starts, np.diff(np.r_[starts, len(key)]))
    return key, nth, text


class Writer:
    """A digest made as a dump is read (kept in arrays: a few numbers a text), written under a
    temporary name by `commit` and renamed (a read cut short leaves none)."""

    def __init__(self, path: Path, registry: str, serial: str | None, observed_at: str | None) -> None:
        self.path = path
        self._head = {"version": VERSION, "registry": registry, "serial": serial, "observed_at": observed_at}
        self._contacts, self._networks = _Part(), _Part()
        self._rows, self._row_ends = bytearray(), array("q", [0])
        self._all_rows: Lists | None = None
        self._clean, self._kind = array("B"), array("B")
        self._firsts, self._lasts = array("I"), array("I")
        self._taken: list[tuple[Lists, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def contacts(self, text: int, keys: Iterable[str], clean: bool, rows: Sequence[Sequence[str | None]]
                 ) -> None:
        """A text read for contacts: the keys of those it holds; `clean`: nothing in it was broken;
        the rows they gave (`dumps.Contacts.rows_of`)."""
        self._contacts.add(text, keys)
        self._clean.append(clean)
        self._rows += orjson.dumps(rows)
        self._row_ends.append(len(self._rows))

    def network(self, text: int, first: int, last: int, joined: Iterable[str]) -> None:
        self._networks.add(text, joined)
        self._kind.append(NETWORK)
        self._firsts.append(first)
        self._lasts.append(last)

    def other(self, text: int) -> None:
        self._networks.add(text, ())
        self._kind.append(OTHER)
        self._firsts.append(0)
        self._lasts.append(0)

    def set_contacts(self, lists: Lists, clean: np.ndarray, rows: Lists) -> None:
        """Every contact text at once (a refresh's, known in arrays), in place of `contacts`."""
        self._contacts = _Part(lists)
        self._clean = array("B", clean.astype(np.uint8).tobytes())
        self._all_rows = rows

    def take(self, before: Digest, which: np.ndarray) -> None:
        """Texts `which` of the files read for networks, as `before` had them (unchanged)."""
        self._taken.append((before.networks.take(which), before.kind[which], before.firsts[which],
                            before.lasts[which], which))

    def commit(self) -> None:
        own = self._networks.lists()
        parts = [own] + [t[0] for t in self._taken]
        arrays = {
            "head": np.frombuffer(json.dumps(self._head).encode(), dtype=np.uint8),
            **_named("c", self._contacts.lists()),
            "c_clean": np.frombuffer(self._clean, np.uint8).astype(bool),
            **self._rows_kept(),
            **_named("n", Lists.join(parts)),
            "n_kind": np.concatenate([np.frombuffer(self._kind, np.uint8)] + [t[1] for t in self._taken]),
            "n_first": np.concatenate([np.frombuffer(self._firsts, np.uint32)] + [t[2] for t in self._taken]),
            "n_last": np.concatenate([np.frombuffer(self._lasts, np.uint32)] + [t[3] for t in self._taken]),
        }
        part = self.path.with_name(self.path.name + ".part")
        with part.open("wb") as fh:
            np.savez(fh, allow_pickle=False, **arrays)
        part.replace(self.path)

    def _rows_kept(self) -> dict[str, np.ndarray]:
        if self._all_rows is not None:
            return {"r_off": self._all_rows.offsets, "r_json": self._all_rows.keys}
        return {"r_off": np.frombuffer(self._row_ends, np.int64),
                "r_json": np.frombuffer(bytes(self._rows), np.uint8)}

    def discard(self) -> None:
        self.path.with_name(self.path.name + ".part").unlink(missing_ok=True)


def _named(prefix: str, lists: Lists) -> dict[str, np.ndarray]:
    return {f"{prefix}_hash": lists.hashes, f"{prefix}_off": lists.offsets, f"{prefix}_keys": lists.keys}


class _Part:
    """Texts added one at a time (hash, keys), or all at once (`Lists`)."""

    def __init__(self, whole: Lists | None = None) -> None:
        self._whole = whole
        self._hashes, self._keys, self._offsets = array("Q"), array("Q"), array("q", [0])

    def add(self, text: int, keys: Iterable[str]) -> None:
        self._hashes.append(text)
        self._keys.extend(key_number(k) for k in keys)
        self._offsets.append(len(self._keys))

    def lists(self) -> Lists:
        if self._whole is not None:
            return self._whole
        return Lists(np.frombuffer(self._hashes, np.uint64), np.frombuffer(self._offsets, np.int64),
                     np.frombuffer(self._keys, np.uint64))
