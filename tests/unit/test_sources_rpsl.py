"""The RPSL reader's fast paths read exactly what the line-by-line reader reads, whatever the text."""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from whoiscrawl.registry.whois import span_of
from whoiscrawl.sources import rpsl

# Pieces that reach every branch of the line-by-line reader: attribute names good and bad, the
# continuation and comment marks, end-of-line comments, CR, white space `str.strip` drops but a
# blank-line split does not (NBSP, NEL, FS), Latin-1 and UTF-8 letters.
_STARTS = ["inetnum", "descr", "Org-Name", "a_1", "9x", "-bad", "", "+", " ", "\t", "#", "%", "\xa0", "\x1c",
           "status", "remarks"]
_VALUE = st.one_of(st.sampled_from(["", " ", "\xa0", "\r", " x # y", "  a b\r", "\t#c", "x\u2028y "]),
                   st.text(alphabet=list(" \t\r#:+-abcXYZ019.é\xa0\x85ü"), max_size=12))


@st.composite
def _line(draw: st.DrawFn) -> bytes:
    start = draw(st.sampled_from(_STARTS))
    text = f"{start}{draw(st.sampled_from([':', ': ', '', '  :']))}{draw(_VALUE)}"
    return text.encode(draw(st.sampled_from(["utf-8", "latin-1"])), errors="replace")


def _line_by_line(text: bytes, line: int, complete: bool) -> list[rpsl.RpslObject | rpsl.Broken]:
    """The reader before its fast path: each line decoded (UTF-8, else Latin-1), read by `objects`."""
    class Lines(list[str]):
        pass

    raw = text.removesuffix(b"\n").split(b"\n")
    lines = Lines(rpsl.decoded(r) for r in raw)
    lines.complete = complete  # type: ignore[attr-defined]
    return list(rpsl.objects(lines, line))


@settings(max_examples=600, deadline=None)
@given(st.lists(_line(), min_size=1, max_size=8), st.integers(1, 10_000), st.booleans(), st.booleans())
@example([b"descr: a", b"+ b", b"\t\xa0", b"status: c"], 7, True, True)  # a continuation blank to strip
@example([b"descr: a", b"+ b", b"\tc # d\r", b"status: c"], 7, True, False)
def test_a_text_reads_as_the_line_by_line_reader_reads_it(lines: list[bytes], line: int, complete: bool,
                                                        newline: bool):
    text = b"\n".join(lines) + (b"\n" if newline else b"")
    assert rpsl.parse_text(text, line, complete) == _line_by_line(text, line, complete)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"inetnum: 1.0.0.0 - 1.0.0.255", b"descr: x # y", b"+ more", b" \t",
                                 b"status: ASSIGNED", b"", b"\xa0", b"% note", b"remarks:\xe9t\xe9"]),
                min_size=1, max_size=30), st.integers(1, 64))
def test_a_dump_reads_the_same_wherever_its_blocks_end(lines: list[bytes], size: int):
    data = b"\n".join(lines) + b"\n"
    blocks = [data[i:i + size] for i in range(0, len(data), size)]
    got = [obj for at, text, last in rpsl.texts(blocks) for obj in rpsl.parse_text(text, at, True)]
    want = [obj for at, text, last in rpsl.texts([data]) for obj in _line_by_line(text, at, True)]
    assert got == want


def _texts_by_line_start(blocks: list[bytes]) -> list[tuple[int, bytes, bool]]:
    """The split before its fast search: a blank line found by `^` (MULTILINE) at every line start."""
    blank_line = re.compile(rb"^[ \t\r\x0b\x0c]*\n", re.MULTILINE)
    out, rest, line = [], b"", 1
    for block in blocks:
        buf = rest + block
        end, start = buf.rfind(b"\n") + 1, 0
        for blank in blank_line.finditer(buf, 0, end):
            if blank.start() > start:
                out.append((line, buf[start:blank.start()], False))
                line += buf.count(b"\n", start, blank.start())
            line, start = line + 1, blank.end()
        rest = buf[start:]
    return out + ([(line, rest, True)] if rest.strip() else [])


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b"inetnum: 1.0.0.0 - 1.0.0.255", b"descr: x", b"+ more", b" \t", b"\r",
                                 b"", b"\x0b\x0c", b"\xa0", b"% note", b" x"]), max_size=30),
       st.integers(1, 64), st.booleans())
@example([b"", b"", b" ", b"descr: x", b"", b"\r", b""], 1, True)  # blank lines at a block's start, in a row
def test_texts_are_split_where_the_line_start_search_split_them(lines: list[bytes], size: int, newline: bool):
    data = b"\n".join(lines) + (b"\n" if newline else b"")
    blocks = [data[i:i + size] for i in range(0, len(data), size)]
    assert list(rpsl.texts(blocks)) == _texts_by_line_start(blocks)


_OCTETS = st.one_of(st.integers(0, 255).map(str), st.sampled_from(["01", "256", "00", "1e1", ""]))


@settings(max_examples=500, deadline=None)
@given(st.lists(_OCTETS, min_size=8, max_size=8), st.sampled_from([" - ", "-", "  -  ", " - "]))
def test_a_range_reads_as_the_whois_parser_reads_it(octets: list[str], dash: str):
    text = f"{'.'.join(octets[:4])}{dash}{'.'.join(octets[4:])}"
    span = span_of(text.strip())
    try:
        got: tuple[int, int] | None = rpsl.parse_range(text)
    except ValueError:
        got = None
    assert got == (None if span is None else (span.first, span.last))


def test_first_is_the_first_value_given():
    (obj,) = rpsl.parse_text(b"inetnum: 1.0.0.0 - 1.0.0.255\nmnt-irt: A\nmnt-irt: B\n", 1)
    assert isinstance(obj, rpsl.RpslObject)
    assert obj.first("mnt-irt") == "A" and obj.all("mnt-irt") == ["A", "B"] and obj.first("org") is None

