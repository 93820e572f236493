"""RPSL objects read one at a time from a dump's lines: continuation lines, comments, broken objects named.

Pure and streaming: lines in, objects out, nothing held but the object being read."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from whoiscrawl.registry.whois import span_of

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class RpslObject:
    """One object: its attributes in order (continuations joined with a newline), and where it starts."""

    line: int  # the line its first attribute is on
    attributes: tuple[tuple[str, str], ...]

    @property
    def kind(self) -> str:
        return self.attributes[0][0]

    @property
    def key(self) -> str:
        return self.attributes[0][1]

    def first(self, name: str) -> str | None:
        # each attribute's first value in a dict made at the first asked, not a scan per attribute
        # (kept in the instance's own dict: a frozen dataclass's fields stay what they compare)
        try:
            firsts = self.__dict__["_firsts"]
        except KeyError:
            firsts = self.__dict__["_firsts"] = dict(reversed(self.attributes))
        return firsts.get(name)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.attributes if k == name]


@dataclass(frozen=True)
class Broken:
    """An object that could not be read: where it starts and why (skipped and counted, never guessed)."""

    line: int
    reason: str
    kind: str | None = None  # its first attribute, when that much could be read
    key: str | None = None


def objects(lines: Iterable[str], first_line: int = 1) -> Iterator[RpslObject | Broken]:
    """The objects of a dump, in order. Blank lines separate objects; `#` and `%` lines are comments;
    a line starting with `+`, a space or a tab continues the attribute before it. When `lines` says
    it ended early (a `complete` attribute, False after a truncated download), its last object is
    reported cut off. `first_line`: the number of the first of `lines` in its file."""
    attributes: list[tuple[str, str]] = []
    start = 0
    broken: str | None = None
    line_no = 0
    for line_no, raw in enumerate(lines, first_line):
        line = raw.rstrip("\r\n")
        if not line.strip():
            if attributes or broken:
                yield _done(start, attributes, broken)
            attributes, broken = [], None
            continue
        if line[0] in "#%":
            continue  # a comment (the dumps' terms banner, LACNIC's `%` lines), inside an object or not
        if not attributes and not broken:
            start = line_no
        if line[0] in "+ \t":
            if attributes:
                key, value = attributes[-1]
                attributes[-1] = (key, f"{value}\n{line[1:].strip()}".strip())
            else:
                broken = broken or f"line {line_no}: a continuation line with no attribute before it"
            continue
        name, colon, value = line.partition(":")
        if not colon or not _NAME.fullmatch(name):
            broken = broken or f"line {line_no}: no `attribute: value` ({line[:60]!r})"
            continue
        attributes.append((name.lower(), _value(value)))
    if attributes or broken:
        cut = f"cut off: the file ends inside it (line {line_no})"
        yield _done(start, attributes, broken if getattr(lines, "complete", True) else cut)


def _done(start: int, attributes: list[tuple[str, str]], broken: str | None) -> RpslObject | Broken:
    if broken is None:
        return RpslObject(start, tuple(attributes))
    kind, key = attributes[0] if attributes else (None, None)
    return Broken(start, broken, kind, key)


def _value(text: str) -> str:
    """An attribute's value without its end-of-line comment (`source: RIPE # Filtered`)."""
    return text.split("#", 1)[0].strip() if "#" in text else text.strip()


# `a - b` written as registries mostly write it: four decimal octets each, no leading zeros.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PLAIN_RANGE = re.compile(rf"({_OCTET}(?:\.{_OCTET}){{3}}) - ({_OCTET}(?:\.{_OCTET}){{3}})")


def parse_range(text: str) -> tuple[int, int]:
    """An inetnum's span: `a - b`, a CIDR, or LACNIC's short CIDR (`5.183.80/22` = 5.183.80.0/22),
    read as the WHOIS parser reads them. ValueError naming the text when it is none of these."""
    plain = _PLAIN_RANGE.fullmatch(text.strip())
    if plain:  # the common form read without netaddr's objects (a dump has millions); the same span
        first, last = (int.from_bytes(socket.inet_aton(a)) for a in plain.groups())
        if first <= last:
            return first, last
    found = span_of(text.strip())
    if found is None:
        raise ValueError(f"{text.strip()!r} is not an address range or CIDR")
    return int(found.first), int(found.last)


# A line that ends an object: nothing on it but spaces and tabs (`objects` ends one on any white space).
# Found from the newline before it (`_AFTER`, the blank line itself left to the lookahead, so the next
# one can start there): a pattern that starts with a literal is searched for in C, where one starting
# with `^` (MULTILINE) is tried at every byte, half of a dump's split. `_FIRST`: one at a block's start.
_AFTER = re.compile(rb"\n[ \t\r\x0b\x0c]*(?=\n)")
_FIRST = re.compile(rb"[ \t\r\x0b\x0c]*\n")


def _blanks(buf: bytes, end: int) -> Iterator[tuple[int, int]]:
    """Where each blank line of `buf[:end]` starts and ends (its newline included); `buf` starts a line."""
    if first := _FIRST.match(buf, 0, end):
        yield 0, first.end()
    for blank in _AFTER.finditer(buf, 0, end):
        yield blank.start() + 1, blank.end() + 1


def texts(blocks: Iterable[bytes]) -> Iterator[tuple[int, bytes, bool]]:
    """The objects' texts of a dump read in blocks of bytes, unparsed: each run of lines between
    blank ones, the number of its first line, and whether it is the last (it may be cut off).
    Blank lines split as `objects` splits them, so a text is one object, or several where a line
    of other white space separates them; the same text reads the same, wherever the blocks end."""
    rest, line = b"", 1
    for block in blocks:
        buf = rest + block
        end = buf.rfind(b"\n") + 1  # complete lines only: a blank one may straddle two blocks
        start = 0
        for blank, after in _blanks(buf, end):
            if blank > start:
                yield line, buf[start:blank], False
                line += buf.count(b"\n", start, blank)
            line, start = line + 1, after
        rest = buf[start:]
    if rest.strip():
        yield line, rest, True


def parse_text(text: bytes, line: int, complete: bool = True) -> list[RpslObject | Broken]:
    """The objects of one text of `texts` starting on line `line` (each line read as UTF-8, else
    Latin-1, as a dump's lines are read); `complete` False when the file ended inside it."""
    text = text.removesuffix(b"\n")  # its last line's end, not a blank line after it
    try:  # a newline is never inside a UTF-8 character: the whole text at once where it is UTF-8
        read = text.decode("utf-8")
    except UnicodeDecodeError:
        read = "\n".join(decoded(raw) for raw in text.split(b"\n"))
    plain = _plain(read, line) if complete else None
    return [plain] if plain is not None else list(objects(_Lines(read.split("\n"), complete), line))


# An attribute's name at the start of a line, and its colon: `_plain` splits a text at them.
_NAME_AT_START = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_-]*):", re.MULTILINE)


def _plain(text: str, line: int) -> RpslObject | None:
    """A text whose every line is `name: value` read in bulk (split at its names by one regex,
    values stripped by `map`): what `objects` reads of it, without its Python steps per line. None
    for any other text (a comment, a continuation, a line that is no attribute): those are read by
    `objects`, line by line."""
    parts = _NAME_AT_START.split(text)  # ["", name, value, name, value, ...]
    names, values = parts[1::2], parts[2::2]
    if parts[0] or len(names) != text.count("\n") + 1:  # a line that starts with no name
        return None
    # as `objects` reads each line: its name lower-cased, its value `_value`'s (a value holds its
    # line's end: CR and LF are white space to `str.strip`)
    read = map(_value, values) if "#" in text else map(str.strip, values)
    named = names if "".join(names).islower() else map(str.lower, names)
    # pairs made one by one, not by `zip`: zip's fill CPython's free list of pairs (2,000 of them, a
    # constant ~400 kB more at the peak of a read, `test_reading_a_dump_holds_no_more_memory...`)
    return RpslObject(line, tuple([(name, value) for name, value in zip(named, read, strict=True)]))


def decoded(raw: bytes) -> str:
    """A dump's line as text: UTF-8, else Latin-1 (LACNIC's)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class _Lines(list[str]):
    """Lines that know whether their file ended early (`objects` reads `complete`)."""

    def __init__(self, lines: list[str], complete: bool) -> None:
        super().__init__(lines)
        self.complete = complete
