"""RPSL objects read one at a time from a dump's lines: continuation lines, comments, broken objects named.

Pure and streaming: lines in, objects out, nothing held but the object being read."""

from __future__ import annotations

import re
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
        return next((v for k, v in self.attributes if k == name), None)

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


def parse_range(text: str) -> tuple[int, int]:
    """An inetnum's span: `a - b`, a CIDR, or LACNIC's short CIDR (`5.183.80/22` = 5.183.80.0/22),
    read as the WHOIS parser reads them. ValueError naming the text when it is none of these."""
    found = span_of(text.strip())
    if found is None:
        raise ValueError(f"{text.strip()!r} is not an address range or CIDR")
    return int(found.first), int(found.last)


# A line that ends an object: nothing on it but spaces and tabs (`objects` ends one on any white space).
_BLANK = re.compile(rb"^[ \t\r\x0b\x0c]*\n", re.MULTILINE)


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
        for blank in _BLANK.finditer(buf, 0, end):
            if blank.start() > start:
                yield line, buf[start:blank.start()], False
                line += buf.count(b"\n", start, blank.start())
            line, start = line + 1, blank.end()
        rest = buf[start:]
    if rest.strip():
        yield line, rest, True


def parse_text(text: bytes, line: int, complete: bool = True) -> list[RpslObject | Broken]:
    """The objects of one text of `texts` starting on line `line` (each line read as UTF-8, else
    Latin-1, as a dump's lines are read); `complete` False when the file ended inside it."""
    text = text.removesuffix(b"\n")  # its last line's end, not a blank line after it
    try:  # a newline is never inside a UTF-8 character: the whole text at once where it is UTF-8
        lines = text.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        lines = [_decoded(raw) for raw in text.split(b"\n")]
    return list(objects(_Lines(lines, complete), line))


def _decoded(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class _Lines(list[str]):
    """Lines that know whether their file ended early (`objects` reads `complete`)."""

    def __init__(self, lines: list[str], complete: bool) -> None:
        super().__init__(lines)
        self.complete = complete
