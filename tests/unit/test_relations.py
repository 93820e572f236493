"""RFC 9910 relation search, client side: what an `rdap-bottom` answer settles, else `rdap-down`."""

from __future__ import annotations

from typing import Any

import pytest

from whoiscrawl.records import NetworkRecord
from whoiscrawl.registry import rdap, relations
from whoiscrawl.registry.outcome import Kind, Outcome

TWO = [(NetworkRecord("arin", f"NET-{n}", f"12.0.{n}.0", f"12.0.{n}.255", [], parent_handle="NET-1"), None)
       for n in (0, 3)]  # what a parsed answer lists
BASE = "https://r.example/ips/rirSearch1/"
BOTH = ["rdap-bottom", "rdap-down"]


@pytest.mark.parametrize(("kind", "truncated", "settles"), [
    (Kind.ANSWER, False, "whole"),  # every most specific network below: nothing listed again
    (Kind.NOT_FOUND, False, "empty"),  # RFC 9910: an empty result is 404
    (Kind.ANSWER, True, "split"),  # cut short (RFC 9083 truncated notice): asked in two parts
    (Kind.TOO_MANY_ROWS, False, "split"),  # RIPE NCC's 400 over its row limit: the same
    (Kind.NOT_IMPLEMENTED, False, "unserved"),  # 501: not asked of that registry again
    (Kind.TRANSIENT, False, "unanswered"),  # asked again later, as any listing not answered
    (Kind.RATE_LIMITED, False, "unanswered"),
    (Kind.MALFORMED, False, "down"),  # an answer no parser reads: listed level by level
])
def test_what_an_rdap_bottom_answer_settles(kind: Kind, truncated: bool, settles: str):
    assert relations.bottom_settles(kind, truncated) == settles


@pytest.mark.parametrize(("bottom", "asked", "deep", "children", "unserved"), [
    (Outcome(Kind.ANSWER, rdap.ParsedListing(list(TWO))), ["rdap-bottom"], True, TWO, False),
    (Outcome(Kind.NOT_FOUND), ["rdap-bottom"], True, [], False),
    (Outcome(Kind.ANSWER, rdap.ParsedListing([], malformed="no ipSearchResults")), BOTH, False, [], False),
    (Outcome(Kind.NOT_IMPLEMENTED, "HTTP 501"), BOTH, False, [], True),
    (Outcome(Kind.TRANSIENT, "HTTP 503"), ["rdap-bottom"], False, [], False),  # incomplete: asked again
])
async def test_a_deep_search_asks_the_subtree_once_else_lists_by_rdap_down(
    bottom: Outcome, asked: list[str], deep: bool, children: list[Any], unserved: bool
):
    sent: list[str] = []
    unreadable: list[Outcome] = []

    async def fetch(url: str) -> Outcome:
        rel = url.split("/rirSearch1/", 1)[1].split("/", 1)[0]
        sent.append(rel)
        return bottom if rel == "rdap-bottom" else Outcome(Kind.NOT_FOUND)  # rdap-down: no children

    async def keep(outcome: Outcome) -> None:
        unreadable.append(outcome)

    search = relations.RelationSearch(fetch, rdap.RdapParser(), "arin", BASE, "NET-1", unreadable=keep)
    await search.run(0x0C000000, 0x0C0003FF, deep=True)
    assert (sent, search.deep, search.children, search.bottom_unserved) == (asked, deep, children, unserved)
    assert search.complete == (bottom.kind is not Kind.TRANSIENT)  # nothing lost: complete, or asked again
    assert search.unanswered == (bottom.kind is Kind.TRANSIENT)
    refused = isinstance(bottom.value, rdap.ParsedListing) and bottom.value.malformed is not None
    assert len(unreadable) == int(refused)  # an answer no parser read is kept as a dead letter


EDGE_THEN_PART = ["rdap-up", "rdap-bottom"]


@pytest.mark.parametrize(("bottom", "asked", "deep", "children", "unserved"), [
    (Outcome(Kind.ANSWER, rdap.ParsedListing(list(TWO))), EDGE_THEN_PART, True, TWO, False),
    (Outcome(Kind.NOT_FOUND), [*EDGE_THEN_PART, "rdap-up"], True, [], False),  # the part itself a network?
    (Outcome(Kind.ANSWER, rdap.ParsedListing([], malformed="no ipSearchResults")),
     [*EDGE_THEN_PART, "rdap-down"], False, [], False),
    (Outcome(Kind.NOT_IMPLEMENTED, "HTTP 501"), [*EDGE_THEN_PART, "rdap-down"], False, [], True),
    (Outcome(Kind.TRANSIENT, "HTTP 503"), EDGE_THEN_PART, True, [], False),  # incomplete: asked again
])
async def test_a_deep_search_past_the_scope_asks_for_the_scope_s_part_else_lists_by_rdap_down(
    bottom: Outcome, asked: list[str], deep: bool, children: list[Any], unserved: bool
):
    # The parent 12.0.0.0-12.0.3.255, the scope its first half: one `rdap-bottom` keyed by that half
    # once `rdap-up` found no network across the edge; where that is not served, `rdap-down` of the
    # parent, as for a parent inside the scope.
    first, last, edge = 0x0C000000, 0x0C0003FF, 0x0C0001FF
    sent: list[str] = []

    async def fetch(url: str) -> Outcome:
        rel, key = url.split("/rirSearch1/", 1)[1].split("/", 1)
        sent.append(rel)
        if rel == "rdap-bottom":
            assert key == relations.key_url("", "", first, edge).lstrip("/")
            return bottom
        return Outcome(Kind.NOT_FOUND)  # rdap-up: nothing across the edge; rdap-down: no children

    search = relations.RelationSearch(fetch, rdap.RdapParser(), "arin", BASE, "NET-1",
                                      within=lambda a, b: (a, min(b, edge)))
    await search.run(first, last, deep=True)
    assert (sent, search.deep, search.children, search.bottom_unserved) == (asked, deep, children, unserved)
    assert search.complete == (bottom.kind is not Kind.TRANSIENT)
    assert search.unanswered == (bottom.kind is Kind.TRANSIENT)


@pytest.mark.parametrize("refused", [Outcome(Kind.TOO_MANY_ROWS),
                                     Outcome(Kind.ANSWER, rdap.ParsedListing(list(TWO), truncated=True))])
async def test_a_subtree_too_long_for_one_answer_is_asked_in_halves(refused: Outcome):
    first, last = 0x0C000000, 0x0C0003FF
    middle = first + (last - first) // 2
    halves = {relations.key_url(BASE, "rdap-bottom", first, middle): [TWO[0]],
              relations.key_url(BASE, "rdap-bottom", middle + 1, last): [TWO[1]]}
    sent: list[str] = []

    async def fetch(url: str) -> Outcome:
        sent.append(url.split("/rirSearch1/", 1)[1].split("/", 1)[0])
        if url in halves:
            return Outcome(Kind.ANSWER, rdap.ParsedListing(halves[url]))
        return refused if sent[-1] == "rdap-bottom" else Outcome(Kind.NOT_FOUND)  # rdap-up: no child across

    search = relations.RelationSearch(fetch, rdap.RdapParser(), "arin", BASE, "NET-1")
    await search.run(first, last, deep=True)
    assert search.deep and search.complete and search.children == TWO
    assert sent == ["rdap-bottom", "rdap-up", "rdap-bottom", "rdap-bottom"]  # the whole, the cut, two halves


async def test_without_deep_only_rdap_down_is_asked():
    sent: list[str] = []

    async def fetch(url: str) -> Outcome:
        sent.append(url.split("/rirSearch1/", 1)[1].split("/", 1)[0])
        return Outcome(Kind.NOT_FOUND)

    search = relations.RelationSearch(fetch, rdap.RdapParser(), "ripencc", BASE, None)
    await search.run(0, 255)
    assert sent == ["rdap-down"] and not search.deep


async def test_a_subtree_in_parts_is_handed_over_as_each_settles_a_network_after_what_is_inside_it():
    # 12.0.0.0/22 refused whole; the child across its middle (12.0.1.0-12.0.2.255) and its own
    # subtree asked as a network's, the parts either side as ranges. With `kept`, nothing is held
    # for the end: each answer handed on as it settles, the child after its subtree (a keeper
    # stores the innermost first), each with whether all inside it is known.
    first, last = 0x0C000000, 0x0C0003FF
    child = {"objectClassName": "ip network", "handle": "NET-C", "startAddress": "12.0.1.0",
             "endAddress": "12.0.2.255", "parentHandle": "NET-1", "ipVersion": "v4"}
    inner = (NetworkRecord("arin", "NET-G", "12.0.1.0", "12.0.1.255", [], parent_handle="NET-C"), None)
    answers = {(first, 0x0C0000FF): [TWO[0]], (0x0C000100, 0x0C0002FF): [inner],
               (0x0C000300, last): [(NetworkRecord("arin", "NET-R", "12.0.3.0", "12.0.3.255", [],
                                                   parent_handle="NET-1"), None)]}

    async def fetch(url: str) -> Outcome:
        where = relations.split_url(url)
        assert where is not None
        _, rel, span = where
        if rel == "rdap-up":  # the child holds the middle; nothing holds it but the parent
            return Outcome(Kind.ANSWER, child) if span[1] < 0x0C000300 and span[0] > 0x0C0000FF \
                and span != (0x0C000100, 0x0C0002FF) else Outcome(Kind.NOT_FOUND)
        if span in answers:
            return Outcome(Kind.ANSWER, rdap.ParsedListing(answers[span]))
        return Outcome(Kind.TOO_MANY_ROWS)

    handed: list[tuple[list[str], bool]] = []

    async def kept(children: list[Any], whole: bool) -> None:
        handed.append(([c.handle for c, _ in children], whole))

    search = relations.RelationSearch(fetch, rdap.RdapParser(), "arin", BASE, "NET-1", kept=kept)
    await search.run(first, last, deep=True)
    assert search.deep and search.complete and search.children == []
    assert handed == [(["NET-G"], True), (["NET-C"], True), (["NET-0"], True), (["NET-R"], True)]
