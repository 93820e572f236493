"""The space model: registries from IANA's table, bootstrap routing, planning shards."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from netaddr import IPAddress

from whoiscrawl.space import (
    Bootstrap,
    Scope,
    SpaceError,
    auto_shard_prefix,
    crawlable,
    iana_registry_by_slash8,
    plan_crawl,
    registry_for,
    special_shards,
)


def ip(text: str) -> int:
    return int(IPAddress(text))


def test_iana_table_counts():
    counts: dict[str | None, int] = {}
    for registry in iana_registry_by_slash8().values():
        counts[registry] = counts.get(registry, 0) + 1
    # IANA's IPv4 address space registry as netaddr ships it, legacy "Administered by X" /8s counted
    # as X's, counted by hand from the registry (iana.org/assignments/ipv4-address-space): the
    # parser must place every one of the 256 /8s, and the None are IANA's own (0, 10, 127, 224-255).
    assert sum(counts.values()) == 256
    kept = {octet for octet, registry in iana_registry_by_slash8().items() if registry is None}
    assert kept == {0, 10, 127, *range(224, 256)}
    assert counts == {"arin": 111, "apnic": 51, "ripencc": 43, "lacnic": 10, "afrinic": 6, None: 35}


@pytest.mark.parametrize(
    ("address", "registry"),
    [
        ("8.8.8.8", "arin"),
        ("2.2.2.2", "ripencc"),
        ("1.1.1.1", "apnic"),
        ("200.1.1.1", "lacnic"),
        ("41.1.1.1", "afrinic"),
        ("3.0.0.1", "arin"),
        ("224.0.0.1", None),
    ],
)
def test_registry_for(address, registry):
    assert registry_for(ip(address)) == registry


def test_bundled_bootstrap_routes_every_registry():
    boot = Bootstrap.bundled()
    assert boot.base_url(ip("8.8.8.8")) == "https://rdap.arin.net/registry/"
    assert boot.base_url(ip("41.1.1.1")) == "https://rdap.afrinic.net/rdap/"
    assert boot.base_url(ip("224.0.0.1")) is None
    assert boot.registry_of_url("https://rdap.db.ripe.net/ip/2.2.2.2") == "ripencc"


REGISTRY_IDS = st.sampled_from(["arin", "ripencc", "apnic", "lacnic", "afrinic", "iana"])


@given(st.dictionaries(st.sampled_from([f"https://rdap{n}.example/" for n in range(8)]), REGISTRY_IDS),
       REGISTRY_IDS)
def test_a_registrys_base_is_the_first_base_naming_it(registry_of_base: dict[str, str], registry: str):
    # the walk `base_of` was before its table: the first base, in the document's order, of the registry
    boot = Bootstrap((), (), registry_of_base)
    assert boot.base_of(registry) == next((b for b, r in registry_of_base.items() if r == registry), None)


def test_bundled_bootstrap_names_each_registrys_base():
    boot = Bootstrap.bundled()
    assert {r: boot.base_of(r) for r in ("arin", "ripencc", "apnic", "lacnic", "afrinic")} == {
        "arin": "https://rdap.arin.net/registry/", "ripencc": "https://rdap.db.ripe.net/",
        "apnic": "https://rdap.apnic.net/", "lacnic": "https://rdap.lacnic.net/rdap/",
        "afrinic": "https://rdap.afrinic.net/rdap/"}
    assert boot.base_of("nobody") is None


def test_bootstrap_rejects_garbage():
    with pytest.raises(SpaceError, match="RFC 9224"):
        Bootstrap.from_document({"services": "nope"})


def test_special_purpose_space_is_never_crawled():
    space = crawlable(["10.0.0.0/7"])  # 10/8 is private, 11/8 is ARIN's
    assert space.size == 1 << 24
    assert crawlable(["127.0.0.0/8", "192.168.0.0/16", "224.0.0.0/3"]).size == 0


def test_special_purpose_space_a_registry_delegated_is_crawled_and_no_more():
    # ARIN's AS112 block (NET-192-175-48-0-1), an `assigned` row of its statistics: a network the
    # registry answers, so a crawl that read the statistics asks it; TEST-NET-2 stays out.
    ranges, as112 = ["192.175.0.0/16", "198.51.100.0/24"], "192.175.48.0-192.175.48.255"
    assert IPAddress("192.175.48.1") not in crawlable(ranges)
    space = crawlable(ranges, delegated=[as112])
    assert IPAddress("192.175.48.1") in space and space.size == 1 << 16
    assert IPAddress("192.175.48.1") not in crawlable(ranges, excludes=["192.175.48.0/24"], delegated=[as112])
    shards = plan_crawl(crawl="c", ranges=ranges, delegated=[as112]).shards
    assert sum(s.last - s.first + 1 for s in shards) == 1 << 16


def test_a_plan_withholds_special_purpose_space_and_a_loader_plans_only_what_the_statistics_list_there():
    # A fleet's operator plans without the statistics: the plan keeps the special-purpose space of
    # its ranges apart (`Plan.special`), and the loader, which reads them, plans ARIN's AS112 block
    # alone, with the plan's strategy and grid; TEST-NET-1 beside it is no one's delegation.
    ranges, as112 = ["192.175.48.0/22", "192.0.2.0/24"], "192.175.48.0-192.175.48.255"
    plan = plan_crawl(crawl="c", ranges=ranges, strategy="sample", resolution=26, samples=3)
    assert sorted(s.shard_id for s in plan.special) == ["192.0.2.0-192.0.2.255", as112]
    assert not plan.scope.overlaps(ip("192.175.48.1"), ip("192.175.48.1"))
    [shard] = special_shards(plan.special, [as112, "192.175.49.0-192.175.49.255"])
    assert (shard.crawl, shard.shard_id, shard.strategy, shard.resolution, shard.samples) == (
        "c", as112, "sample", 26, 3)
    assert special_shards(plan.special, []) == ()
    excluded = plan_crawl(crawl="c", ranges=ranges, excludes=["192.175.48.0/24"])
    assert special_shards(excluded.special, [as112]) == ()


@pytest.mark.parametrize(
    ("ranges", "excludes", "prefix", "count", "first", "last"),
    [
        (["8.0.0.0/8"], [], 16, 256, "8.0.0.0", "8.255.255.255"),
        (["8.0.0.0/8"], ["8.128.0.0/9"], 16, 128, "8.0.0.0", "8.127.255.255"),
        (["8.0.1.0-8.2.0.255"], [], 16, 3, "8.0.1.0", "8.2.0.255"),
        (["8.8.8.0/24"], [], 16, 1, "8.8.8.0", "8.8.8.255"),
    ],
)
def test_plan_crawl(ranges, excludes, prefix, count, first, last):
    shards = plan_crawl(crawl="c", ranges=ranges, excludes=excludes, shard_prefix=prefix).shards
    assert len(shards) == count
    assert shards[0].first == ip(first) and shards[-1].last == ip(last)
    assert all(a.last + 1 <= b.first for a, b in itertools.pairwise(shards))


@pytest.mark.parametrize(
    ("addresses", "prefix"),
    [(1 << 32, 16), (30 << 20, 16), (1_392_640, 20), (256 * 1024, 22), (4096, 24), (0, 16)],
)
def test_auto_shard_prefix(addresses, prefix):
    assert auto_shard_prefix(addresses) == prefix


def test_small_ranges_are_cut_for_several_lanes():
    shards = plan_crawl(crawl="c", ranges=["8.0.0.0/12", "186.0.0.0/18"]).shards  # ~1M addresses: /20 overall
    assert sum(1 for s in shards if s.first >> 24 == 8) == 256
    assert sum(1 for s in shards if s.first >> 24 == 186) == 16  # /22s, not four /20s


@pytest.mark.parametrize("bad", ["8.8.8.8/33", "nonsense", "::1/128", "9.9.9.9-1.1.1"])
def test_bad_ranges_say_what_is_wrong(bad):
    with pytest.raises(SpaceError, match=r"only IPv4|not a CIDR"):
        plan_crawl(crawl="c", ranges=[bad])



@pytest.mark.parametrize(
    ("spans", "network", "inside"),
    [
        ([(100, 199)], (150, 160), True),
        ([(100, 199)], (50, 100), True),  # touches the first address
        ([(100, 199)], (199, 300), True),  # touches the last
        ([(100, 199)], (200, 300), False),
        ([(100, 199)], (0, 99), False),
        ([(100, 199), (300, 399)], (200, 299), False),  # the gap between two ranges
        ([(100, 199), (300, 399)], (0, 1000), True),  # a parent around them
        ([(300, 399), (100, 199), (200, 250)], (251, 299), False),  # merged in any order
        ([], (0, 1 << 32), False),
    ],
)
def test_scope_says_whether_a_network_reaches_into_the_crawl(spans, network, inside):
    scope = Scope.of(spans)
    assert scope.overlaps(*network) is inside
    assert Scope.decode(scope.encode()) == scope


@pytest.mark.parametrize(
    ("spans", "network", "last"),
    [
        ([(100, 199)], (0, 1000), 199),  # a parent around the crawl: list up to its end
        ([(100, 199)], (150, 160), 160),  # inside: the network's own end
        ([(100, 199), (300, 399)], (0, 350), 350),
        ([(100, 199), (300, 399)], (0, 250), 199),  # ends in the gap: the earlier range's end
        ([(100, 199)], (200, 300), None),
    ],
)
def test_scope_says_where_listing_a_network_can_stop(spans, network, last):
    assert Scope.of(spans).last_within(*network) == last


@pytest.mark.parametrize(
    ("spans", "network", "hull"),
    [
        ([(100, 199)], (0, 1000), (100, 199)),  # a parent around the crawl: the crawl's part
        ([(100, 199)], (150, 160), (150, 160)),  # inside: all of it
        ([(100, 199)], (150, 300), (150, 199)),
        ([(100, 199), (300, 399)], (0, 350), (100, 350)),  # the gap between two ranges included
        ([(100, 199), (300, 399)], (250, 1000), (300, 399)),  # starts in the gap
        ([(100, 199)], (200, 300), None),
    ],
)
def test_scope_says_which_part_of_a_network_to_list(spans, network, hull):
    assert Scope.of(spans).hull(*network) == hull


def test_scope_of_shards_is_the_planned_space():
    plan = plan_crawl(crawl="c", ranges=["193.0.0.0/16", "41.0.0.0/16"], shard_prefix=20)
    scope = plan.scope
    assert scope == Scope.of_shards(plan.shards) and plan.addresses == 2 * 65536
    assert len(scope.firsts) == 2  # 32 shards merge back into the two ranges
    assert scope.overlaps(int(IPAddress("193.0.255.255")), int(IPAddress("193.1.0.0")))
    assert not scope.overlaps(int(IPAddress("193.1.0.0")), int(IPAddress("193.1.0.255")))


def test_ranges_take_turns_so_lanes_start_apart():
    ranges = ["8.0.0.0/16", "41.0.0.0/16", "193.0.0.0/17"]
    shards = plan_crawl(crawl="c", ranges=ranges, shard_prefix=20).shards
    assert [s.first >> 24 for s in shards[:6]] == [8, 41, 193, 8, 41, 193]
    for octet in (8, 41, 193):
        firsts = [s.first for s in shards if s.first >> 24 == octet]
        assert firsts == sorted(firsts)  # each range still in address order
    assert [s.first >> 24 for s in shards[-16:]] == [8, 41] * 8  # the shorter range ran out first


@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 40)), max_size=6),
       st.lists(st.tuples(st.integers(0, 340), st.integers(0, 40)), max_size=30))
def test_overlapping_is_overlaps_of_each_span(scope_spans, spans):
    scope = Scope.of((a, a + n) for a, n in scope_spans)
    firsts = np.array([a for a, _ in spans], dtype=np.uint32)
    lasts = np.array([a + n for a, n in spans], dtype=np.uint32)
    assert scope.overlapping(firsts, lasts).tolist() == [scope.overlaps(a, a + n) for a, n in spans]
