"""Where a dumped network is asked again live: an address it answers for itself, not a child's."""

from __future__ import annotations

from whoiscrawl.ipv4 import ip_int
from whoiscrawl.records import NetworkRecord
from whoiscrawl.sources.seed import aimed, own_addresses


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
