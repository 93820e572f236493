"""What one read of a registry's dump was made of, object by object: each object's text hashed, with
the network it gave (its span and the contacts it was joined with) or the contacts it names. Kept
beside the map (docs/refresh.md), so the next refresh parses only the objects whose text, or a
contact they were joined with, changed; the others are the previous map's records, as they were.

Held as numpy arrays, 64-bit hashes throughout (texts and contact keys alike), and kept as one
`.npz`: a refresh loads and compares a registry's hundreds of thousands of objects in array
operations, never an object per text (the JSON lines it replaced took seconds to load alone). The
`.npz` is stored uncompressed, so a refresh maps its columns from the file rather than reading them
(`Digest.load`): the previous read costs the staging process pages of the file as they are touched,
which the system may drop and read again, not memory of its own (RIPE NCC's 35 MB on `standard`)."""

from __future__ import annotations

import itertools
import json
import mmap
import struct
import tempfile
import zipfile
from array import array
from collections.abc import Iterable, Iterator, Sequence
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


def offsets_of(sizes: Sequence[int] | np.ndarray) -> np.ndarray:
    """The offsets of lists of these sizes kept flat (list i is flat[offsets[i]:offsets[i + 1]]):
    `owners`' other way round."""
    got = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=got[1:])
    return got


def owners(offsets: np.ndarray) -> np.ndarray:
    """For lists kept flat with `offsets` (list i is flat[offsets[i]:offsets[i + 1]]), the list
    each flat item belongs to."""
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))


@dataclass
class Lists:
    """Texts in file order, each with a hash and a list of contact keys: the contacts' texts (their
    keys, `clean` where none of their objects was broken) or the networks' (the keys joined)."""

    hashes: np.ndarray  # uint64, one a text
    offsets: np.ndarray  # int64, one more than texts: text i's keys are keys[offsets[i]:offsets[i + 1]]
    keys: np.ndarray  # uint64 (or, for a text's contact rows, the bytes of their JSON: uint8)

    def sizes(self, which: np.ndarray) -> np.ndarray:
        """How many keys each of texts `which` has."""
        return self.offsets[which + 1] - self.offsets[which]

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
        """The digest at `path`, its columns mapped from the file (`mapped`: none of them read);
        DigestError naming it when it cannot be used."""
        try:
            got = mapped(path)
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


def mapped(path: Path) -> dict[str, np.ndarray]:
    """Each array of the `.npz` at `path` (as `Writer` or `np.savez` writes it: members stored, not
    compressed) as a read-only view of the file mapped into memory, by name: only each member's
    headers are read here; the system reads a column's pages when they are used. ValueError where
    a member is compressed, cut off or not a one-dimensional array of numbers."""
    with path.open("rb") as fh, zipfile.ZipFile(fh) as archive:
        whole = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)  # kept open by the arrays on it
        got = {}
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"{info.filename} is compressed")
            fh.seek(info.header_offset)
            local = fh.read(30)  # a member's local header: its name's and extra field's lengths at 26
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                raise ValueError(f"{info.filename}: no member header at {info.header_offset}")
            start = info.header_offset + 30 + sum(struct.unpack("<HH", local[26:30]))
            fh.seek(start)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}[np.lib.format.read_magic(fh)]
            shape, fortran, dtype = read_header(fh)
            if len(shape) != 1 or fortran or dtype.hasobject:
                raise ValueError(f"{info.filename}: not a column of numbers ({dtype}, {shape})")
            if fh.tell() + shape[0] * dtype.itemsize > start + info.file_size:
                raise ValueError(f"{info.filename}: cut off")
            got[info.filename.removesuffix(".npy")] = np.frombuffer(whole, dtype, shape[0], fh.tell())
    return got


def changed_keys(before: Lists, now: Lists) -> np.ndarray:
    """The contact keys whose texts, in file order, differ between two reads (new, gone or edited):
    given in one read only, by another number of texts, or by another text at some place. Each
    read's (key, text) rows sorted by key once, compared in place (a sort of both reads' rows
    together held ~100 bytes a row at its peak: the staging's most, RIPE NCC's on `standard`)."""
    (b_key, b_text), (n_key, n_text) = _by_key(before), _by_key(now)
    (b_keys, b_count), (n_keys, n_count) = _counted(b_key), _counted(n_key)
    common, b_at, n_at = np.intersect1d(b_keys, n_keys, assume_unique=True, return_indices=True)
    alike = b_count[b_at] == n_count[n_at]
    b_in, n_in = among(b_key, common[alike]), among(n_key, common[alike])
    # a key's texts are in file order in both, as many in each: compared text by text
    differ = b_key[b_in][b_text[b_in] != n_text[n_in]]
    return np.unique(np.concatenate([np.setxor1d(b_keys, n_keys, assume_unique=True), common[~alike],
                                     differ]))


def _by_key(lists: Lists) -> tuple[np.ndarray, np.ndarray]:
    """(key, its text's hash) for every key of every text, by key, a key's texts in file order."""
    order = np.argsort(lists.keys, kind="stable")
    return lists.keys[order], lists.hashes[np.searchsorted(lists.offsets, order, side="right") - 1]


def _counted(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The keys of a sorted array, each once, and how many times each is there."""
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, np.int64)
    return key[starts], np.diff(np.r_[starts, len(key)])


def among(key: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Which of `key` are in `wanted` (sorted): `np.isin`'s answer, in 9 bytes a key where its sort
    of both together held ~30."""
    if not len(wanted):
        return np.zeros(len(key), dtype=bool)
    at = np.minimum(np.searchsorted(wanted, key), len(wanted) - 1)
    return wanted[at] == key


class Writer:
    """A digest made as a dump is read, written under a temporary name by `commit` and renamed (a
    read cut short leaves none). Its columns are appended to files of their own (`_Spool`) as the
    texts are read, and `commit` copies them into the `.npz` a block at a time: what it holds is a
    few buffers, whatever the dump (held in arrays, RIPE NCC's ~6M inetnums and as many contacts
    took the staging process of `full` past 1.3 GB)."""

    def __init__(self, path: Path, registry: str, serial: str | None, observed_at: str | None) -> None:
        self.path = path
        self._head = {"version": VERSION, "registry": registry, "serial": serial, "observed_at": observed_at}
        self._dir = tempfile.TemporaryDirectory(prefix=f".{path.name}-", dir=path.parent)
        folder = Path(self._dir.name)
        self._contacts = {name: _Spool(folder / name, code) for name, code in _CONTACT_COLUMNS.items()}
        # the texts read here, then those taken from the previous read: written in that order
        self._own, self._taken = ({name: _Spool(folder / f"{part}.{name}", code)
                                   for name, code in _NETWORK_COLUMNS.items()} for part in ("own", "taken"))

    def contacts(self, text: int, keys: Iterable[str], clean: bool, rows: Sequence[Sequence[str | None]]
                 ) -> None:
        """A text read for contacts: the keys of those it holds; `clean`: nothing in it was broken;
        the rows they gave (`dumps.Contacts.rows_of`)."""
        c = self._contacts
        c["c_hash"].append(text)
        c["c_size"].append(c["c_keys"].extend([key_number(k) for k in keys]))
        c["c_clean"].append(clean)
        c["r_size"].append(c["r_json"].extend(orjson.dumps(rows)))

    def network(self, text: int, first: int, last: int, joined: Iterable[str]) -> None:
        self._add(text, NETWORK, first, last, [key_number(k) for k in joined])

    def other(self, text: int) -> None:
        self._add(text, OTHER, 0, 0, [])

    def _add(self, text: int, kind: int, first: int, last: int, keys: list[int]) -> None:
        own = self._own
        own["n_hash"].append(text)
        own["n_size"].append(own["n_keys"].extend(keys))
        own["n_kind"].append(kind)
        own["n_first"].append(first)
        own["n_last"].append(last)

    def set_contacts(self, hashes: np.ndarray, clean: np.ndarray,
                     parts: Sequence[tuple[np.ndarray, np.ndarray, Lists, Lists]]) -> tuple[Lists, Lists]:
        """Every contact text at once (a refresh's, known in arrays), in place of `contacts`: texts
        `hashes`, text where[j] of each part (where, which, contacts, rows) being text which[j] of its
        contacts and rows. Written a run at a time (`_placed`) and given back as this read's contacts
        and rows, mapped from what was written: the previous read's are copied, never held."""
        c = self._contacts
        c["c_hash"].write(hashes)
        c["c_clean"].write(clean)
        keys = _placed(len(hashes), [(w, i, k) for w, i, k, _ in parts], c["c_size"], c["c_keys"])
        rows = _placed(len(hashes), [(w, i, r) for w, i, _, r in parts], c["r_size"], c["r_json"])
        return Lists(hashes, keys, c["c_keys"].mapped()), Lists(hashes, rows, c["r_json"].mapped())

    def take(self, before: Digest, which: np.ndarray) -> None:
        """Texts `which` of the files read for networks, as `before` had them (unchanged): copied a
        run of texts at a time, never gathered."""
        taken = self._taken
        for name, values in (("n_hash", before.networks.hashes), ("n_kind", before.kind),
                             ("n_first", before.firsts), ("n_last", before.lasts)):
            taken[name].write(values[which])
        _placed(len(which), [(np.arange(len(which)), which, before.networks)], taken["n_size"],
                taken["n_keys"])

    def commit(self) -> None:
        """The columns copied into the `.npz` (`np.load` reads it as `np.savez` wrote it), renamed."""
        c, parts = self._contacts, (self._own, self._taken)
        part = self.path.with_name(self.path.name + ".part")
        head = json.dumps(self._head).encode()
        try:
            with zipfile.ZipFile(part, "w", zipfile.ZIP_STORED, allowZip64=True) as out:
                _member(out, "head", np.dtype(np.uint8), len(head), [head])
                for name, dtype in (("c_hash", np.uint64), ("c_keys", np.uint64), ("c_clean", np.bool_),
                                    ("r_json", np.uint8)):
                    _member(out, name, np.dtype(dtype), len(c[name]), c[name].blocks())
                for name, sizes in (("c_off", [c["c_size"]]), ("r_off", [c["r_size"]]),
                                    ("n_off", [p["n_size"] for p in parts])):
                    _member(out, name, np.dtype(np.int64), sum(map(len, sizes)) + 1, _ends(sizes))
                for name, code in _NETWORK_COLUMNS.items():
                    if name != "n_size":
                        _member(out, name, np.dtype(code), sum(len(p[name]) for p in parts),
                                itertools.chain.from_iterable(p[name].blocks() for p in parts))
            part.replace(self.path)
        finally:
            self.discard()  # the spools; and the part, where it was not renamed (a disk full)

    def discard(self) -> None:
        """The part written and the spools removed (a read cut short, or committed)."""
        self.path.with_name(self.path.name + ".part").unlink(missing_ok=True)
        for spools in (self._contacts, self._own, self._taken):
            for spool in spools.values():
                spool.close()
        self._dir.cleanup()


# Each column `Writer` spools, by its name in the `.npz` (a `_size` column is written as offsets,
# `_off`), with the `array` type code its numbers are kept as (`c_clean`: 0 or 1, read as bool).
_CONTACT_COLUMNS = {"c_hash": "Q", "c_size": "Q", "c_keys": "Q", "c_clean": "B", "r_size": "Q", "r_json": "B"}
_NETWORK_COLUMNS = {"n_hash": "Q", "n_size": "Q", "n_keys": "Q", "n_kind": "B", "n_first": "I", "n_last": "I"}


class _Spool:
    """A column of numbers appended to a file of its own, a buffer at a time: `Writer` holds the
    buffer, never the column."""

    BUFFER = 1 << 10  # numbers (or bytes) kept before they are written: 8 kB at most a column
    BLOCK = 1 << 16  # bytes read back at a time (a multiple of every item size)

    def __init__(self, path: Path, code: str) -> None:
        self.path, self.dtype = path, np.dtype(code)
        self._buffer = array(code)
        self._written = 0
        self._fh = path.open("wb")

    def __len__(self) -> int:
        return self._written + len(self._buffer)

    def append(self, value: int) -> None:
        self._buffer.append(value)
        if len(self._buffer) >= self.BUFFER:
            self._flush()

    def extend(self, values: list[int] | bytes) -> int:
        """`values` appended (bytes: for a column of bytes); how many."""
        self._buffer.frombytes(values) if isinstance(values, bytes) else self._buffer.extend(values)
        if len(self._buffer) >= self.BUFFER:
            self._flush()
        return len(values)

    def write(self, values: np.ndarray) -> None:
        """Many numbers at once (converted to the column's type)."""
        self._flush()
        self._fh.write(np.ascontiguousarray(values, dtype=self.dtype).data)
        self._written += len(values)

    def mapped(self) -> np.ndarray:
        """What was appended so far, mapped from the file (read-only; nothing may be appended while
        it is used)."""
        self._flush()
        self._fh.flush()
        if not len(self):
            return np.zeros(0, dtype=self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(len(self),))

    def _flush(self) -> None:
        self._buffer.tofile(self._fh)
        self._written += len(self._buffer)
        del self._buffer[:]

    def close(self) -> None:
        if not self._fh.closed:
            self._flush()
            self._fh.close()

    def blocks(self) -> Iterator[bytes]:
        """The column's bytes, a block at a time (the file closed: nothing more is appended)."""
        self.close()
        with self.path.open("rb") as fh:
            while block := fh.read(self.BLOCK):
                yield block


def _placed(count: int, parts: Sequence[tuple[np.ndarray, np.ndarray, Lists]], sizes: _Spool,
            flat: _Spool) -> np.ndarray:
    """`count` lists, list where[j] of each part (where, which, lists) being list which[j] of its
    lists (every list in one part): their sizes appended to `sizes`, their keys to `flat`, each run
    of lists that follow one another in one part copied at once; their offsets. A read's texts are
    mostly the previous read's in the same order: a few runs copy a registry's whole digest."""
    part, source = np.zeros(count, dtype=np.int64), np.zeros(count, dtype=np.int64)
    size = np.zeros(count, dtype=np.int64)
    for n, (where, which, lists) in enumerate(parts):
        part[where], source[where], size[where] = n, which, lists.sizes(which)
    sizes.write(size)
    cuts = (np.flatnonzero((np.diff(part) != 0) | (np.diff(source) != 1)) + 1).tolist()
    for start, end in zip([0, *cuts], [*cuts, count], strict=True):
        if start < end:
            lists = parts[int(part[start])][2]
            flat.write(lists.keys[lists.offsets[source[start]]:lists.offsets[source[end - 1] + 1]])
    return offsets_of(size)


def _ends(sizes: list[_Spool]) -> Iterator[bytes]:
    """Offsets (`Lists.offsets`) of lists whose sizes are `sizes`' columns one after another."""
    yield np.zeros(1, dtype=np.int64).tobytes()
    end = 0
    for spool in sizes:
        for block in spool.blocks():
            ends = np.cumsum(np.frombuffer(block, spool.dtype), dtype=np.int64) + end
            end = int(ends[-1])
            yield ends.tobytes()


def _member(out: zipfile.ZipFile, name: str, dtype: np.dtype, count: int, blocks: Iterable[bytes]
            ) -> None:
    """A one-dimensional array `name` of `count` items written into `out` as `np.savez` writes it
    (an `.npy` header, then the bytes), its bytes streamed from `blocks`."""
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (count,)}
    with out.open(f"{name}.npy", "w", force_zip64=True) as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for block in blocks:
            fh.write(block)
