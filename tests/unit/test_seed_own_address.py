"""Where a dumped network is asked again live: an address it answers for itself, not a child's."""

from __future__ import annotations

import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from whoiscrawl.ipv4 import ip_int
from whoiscrawl.records import NetworkRecord
from whoiscrawl.sources.seed import SpanLog, aimed, own_addresses


def span(a: str, b: str) -> tuple[int, int]:
    return ip_int(a), ip_int(b)


def test_a_parent_whose_first_child_starts_where_it_does_is_asked_past_its_children():
    parent, first_child = span("160.20.68.0", "160.20.71.255"), span("160.20.68.0", "160.20.69.255")
    second_child = span("160.20.70.0", "160.20.70.127")
    grandchild = span("160.20.68.0", "160.20.68.255")
    own = own_addresses([second_child, grandchild, parent, first_child])
    assert own[parent] == ip_int("160.20.70.128")  # not 160.20.68.0: a lookup there answers the grandchild
    assert own[first_child] == ip_int("160.20.69.0") and own[grandchild] == grandchild[0]
    assert own[second_child] == second_child[0]


def test_a_network_its_children_cover_whole_is_not_asked():
    covered, low, high = span("77.0.65.0", "77.0.65.255"), span("77.0.65.0", "77.0.65.127"), span(
        "77.0.65.128", "77.0.65.255")
    own = own_addresses([covered, low, high])
    assert own[covered] is None
    records = [NetworkRecord(registry="lacnic", handle=h, start_address=a, end_address=b, cidrs=[])
               for h, a, b in (("c", "77.0.65.0", "77.0.65.255"), ("l", "77.0.65.0", "77.0.65.127"))]
    assert [(r.handle, r.query_address) for r in aimed(records, own)] == [("l", "77.0.65.0")]


def _nested(draws: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """CIDR-shaped networks (any two nest or are apart, as a registry's do) from (prefix, index)."""
    return sorted({(i << (32 - p), ((i + 1) << (32 - p)) - 1) for p, i in draws})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(8, 30).flatmap(lambda p: st.tuples(st.just(p), st.integers(
    (10 << 24) >> (32 - p), ((11 << 24) - 1) >> (32 - p)))), min_size=1, max_size=60), st.data())
def test_the_spans_kept_about_the_networks_asked_place_them_as_all_the_spans_do(draws, data):
    """A seeding keeps every network's span compact and hands `own_addresses` only those reaching
    into a network asked again: each asked one is placed exactly as with the whole registry."""
    networks = _nested(draws)
    asked = data.draw(st.lists(st.sampled_from(networks), max_size=10, unique=True))
    kept, wanted = SpanLog(), SpanLog()
    for first, last in networks:
        kept.add(first, last)
    for first, last in asked:
        wanted.add(first, last)
    whole, placed = own_addresses(networks), own_addresses(kept.about(wanted))
    assert {n: placed[n] for n in asked} == {n: whole[n] for n in asked}


def test_the_spans_of_a_seeded_registry_cost_8_bytes_a_network():
    """RIPE NCC's 6M inetnums in `full` were kept as a list of tuples, ~130 bytes each (760 MB)."""
    tracemalloc.start()
    try:
        log = SpanLog()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(200_000):
            log.add(i << 8, (i << 8) + 255)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown / len(log) < 10
