"""The one home of IPv4 address arithmetic, held to the standard library's `ipaddress`."""

from __future__ import annotations

import ipaddress
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netaddr import IPRange, IPSet

from whoiscrawl import rirs
from whoiscrawl.ipv4 import Spans, cidr_blocks, cidrs, enclosing, ip_int, ip_str, less

ADDRESSES = st.integers(0, 2**32 - 1)


@settings(max_examples=300, deadline=None)
@given(ADDRESSES, ADDRESSES)
def test_the_cidrs_of_a_range_are_those_ipaddress_summarizes(a: int, b: int):
    first, last = min(a, b), max(a, b)
    want = list(ipaddress.summarize_address_range(ipaddress.IPv4Address(first), ipaddress.IPv4Address(last)))
    assert cidr_blocks(first, last) == [(int(n.network_address), n.prefixlen) for n in want]
    assert cidrs(first, last) == [str(n) for n in want]


@given(ADDRESSES)
def test_addresses_go_to_text_and_back_as_ipaddress_writes_them(address: int):
    assert ip_str(address) == str(ipaddress.IPv4Address(address))
    assert ip_int(ip_str(address)) == address


def test_the_whole_space_and_a_three_cell_range():
    assert cidrs(0, 2**32 - 1) == ["0.0.0.0/0"]
    assert cidrs(ip_int("10.0.2.0"), ip_int("10.0.4.255")) == ["10.0.2.0/23", "10.0.4.0/24"]


@pytest.mark.parametrize("text", ["10.1", "010.1.2.3", "0x0a.1.2.3", "1.2.3.256", " 1.2.3.4", "1.2.3.4 ",
                                  "::1"])
def test_only_a_dotted_quad_is_an_address(text: str):
    with pytest.raises(ValueError, match="not an IPv4 address"):
        ip_int(text)


# CIDR blocks of a small corner of the space, repeats allowed: any two are disjoint or nested, as a
# registry's networks are.
BLOCKS = st.lists(st.tuples(st.integers(0, 255), st.integers(24, 32)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(BLOCKS)
def test_a_spans_parent_is_the_smallest_other_span_holding_it(blocks: list[tuple[int, int]]):
    spans = [(a & -(1 << (32 - n)), (a & -(1 << (32 - n))) + (1 << (32 - n)) - 1) for a, n in blocks]
    got = enclosing(np.array([s[0] for s in spans], np.uint32), np.array([s[1] for s in spans], np.uint32))
    for i, (first, last) in enumerate(spans):
        holding = [s for s in spans if s[0] <= first and last <= s[1] and s != (first, last)]
        want = min(holding, key=lambda s: s[1] - s[0], default=None)
        assert (spans[got[i]] if got[i] >= 0 else None) == want



@settings(max_examples=300, deadline=None)
@given(ADDRESSES, ADDRESSES)
def test_a_span_less_the_special_purpose_ranges_is_what_netaddr_leaves(a: int, b: int):
    first, last = min(a, b), max(a, b)
    want = IPSet(IPRange(first, last)) - IPSet(rirs.SPECIAL_PURPOSE)
    pieces = less(first, last, rirs.SPECIAL_SPANS)
    assert all(p[1] + 1 < q[0] for p, q in itertools.pairwise(pieces))  # apart, in order
    assert [(int(r.first), int(r.last)) for r in want.iter_ipranges()] == pieces


_SPAN = st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))


@given(st.lists(_SPAN), st.lists(_SPAN), st.lists(_SPAN))
def test_spans_answer_as_a_set_of_tuples(first: list[tuple[int, int]], later: list[tuple[int, int]],
                                         asked: list[tuple[int, int]]):
    spans, want = Spans(first), set(first)
    for span in later[: len(later) // 2]:
        spans.add(*span)
        want.add(span)
    assert len(spans) == len(want) and all((span in spans) == (span in want) for span in asked + first)
    for span in later[len(later) // 2:]:  # added after a question: asked again
        spans.add(*span)
        want.add(span)
    assert len(spans) == len(want) and all((span in spans) == (span in want) for span in asked + later)
