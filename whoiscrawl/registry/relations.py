"""RFC 9910 relation search, client side: a network's whole subtree by `rdap-bottom`, else its
children by `rdap-down`, split on Too Many Rows."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from netaddr import AddrFormatError, IPAddress, IPNetwork

from whoiscrawl.records import NetworkRecord
from whoiscrawl.registry import rdap
from whoiscrawl.registry.outcome import Kind, MalformedAnswer, Outcome

log = logging.getLogger(__name__)
Child = tuple[NetworkRecord, str | None]  # a listed network with its own listing URL, if any
# Where a deep search hands the networks of its subtree as each answer settles (`RelationSearch.kept`):
# the networks, and whether all that is inside each of them is known (its own subtree answered whole).
Kept = Callable[[list[Child], bool], Awaitable[None]]
MARK = "/ips/rirSearch1/"


def split_url(url: str) -> tuple[str, str, tuple[int, int]] | None:
    """(base ending in `rirSearch1/`, relation, key span) of a relation-search URL, or None."""
    if MARK not in url:
        return None
    base, _, rest = url.partition(MARK)
    rel, _, key = rest.partition("/")
    key = unquote(key.partition("?")[0]).strip()
    try:
        if "/" in key:
            net = IPNetwork(key)
            return f"{base}{MARK}", rel, (int(net.first), int(net.last))
        a, _, b = key.partition("-")
        return f"{base}{MARK}", rel, (int(IPAddress(a.strip())), int(IPAddress(b.strip())))
    except (AddrFormatError, ValueError):
        return None


def too_many_rows(doc: Any) -> bool:
    """A search refused for its size: RIPE NCC's HTTP 400 "Too Many Rows" / "The result size is too large"."""
    if not isinstance(doc, dict):
        return False
    description = doc.get("description")
    lines = description if isinstance(description, list) else [description or ""]
    words = " ".join([str(doc.get("title", "")), *map(str, lines)]).lower()
    return "too many rows" in words or "result size is too large" in words


def bottom_settles(kind: Kind, truncated: bool = False, unreadable: bool = False) -> str:
    """What an `rdap-bottom` answer for a range settles. `whole`: every most specific network
    inside it, all levels (RIPE NCC's server: the leaves, and each parent its children do not fill:
    everything some address answers with), so nothing inside is listed again; `empty`: 404,
    nothing inside; `split`: refused for its size (400 Too Many Rows) or cut short (a truncation
    notice): the range is split in two and each part asked the same way; `unanswered`: errors or
    429s every try, the listing is asked again later as any listing the registry did not answer;
    `unserved`: 501, the registry does not implement it (asked no more); `down`: an answer no
    parser reads: its direct children are listed by `rdap-down` instead, each of them the same way."""
    if kind is Kind.NOT_FOUND:
        return "empty"
    if kind is Kind.ANSWER and not unreadable:
        return "split" if truncated else "whole"
    if kind is Kind.TOO_MANY_ROWS:
        return "split"
    if kind in (Kind.TRANSIENT, Kind.RATE_LIMITED):
        return "unanswered"
    return "unserved" if kind is Kind.NOT_IMPLEMENTED else "down"


def key_url(base: str, rel: str, first: int, last: int) -> str:
    """A relation search keyed by a range, as RIPE NCC's links spell it (`a%20-%20b`)."""
    return f"{base}{rel}/{quote(f'{IPAddress(first)} - {IPAddress(last)}')}"


@dataclass
class RelationSearch:
    """The children of one network by `rdap-down` (with `deep`, first its whole subtree by one
    `rdap-bottom`: `bottom_settles`). A registry that refuses a key as too many rows
    (RIPE NCC: HTTP 400, no partial list, no paging), or cuts an answer short, has the key split in
    two and each part listed, recursively. A split point inside a child is moved to that child's
    edges (found with `rdap-up`), so no child straddles a part; a part that is itself a child
    shows up as such (its `rdap-down` lists grandchildren, or 404s for a leaf) and is kept as the
    child. 404 is "nothing there". `wanted`: parts outside it are not listed (the crawl's scope);
    `within`: the part of a key worth listing (the scope's hull inside it), the subtree of a key
    reaching past it asked for that part only (`_bottom_within`). `kept`: where a deep search hands
    each answer's networks as it settles (a network across a cut after its own subtree), so a
    subtree asked in parts (full's ARIN /8s: 75,000 networks) is never held whole; None: they are
    gathered in `children`, as a level of `rdap-down` always is."""

    fetch: Callable[[str], Awaitable[Outcome]]  # one request through the attempt loop
    parser: rdap.RdapParser
    registry: str
    base: str
    parent: str | None  # the listed network's handle (children name it as parentHandle)
    wanted: Callable[[int, int], bool] | None = None
    # An answer no parser could read, with why (the client's dead letters); None: dropped.
    unreadable: Callable[[Outcome], Awaitable[None]] | None = None
    within: Callable[[int, int], tuple[int, int] | None] | None = None
    kept: Kept | None = None
    children: list[Child] = field(default_factory=list)
    complete: bool = True
    unanswered: bool = False  # a request failed every try (errors, 429s): worth asking again later
    deep: bool = False  # the children are the whole subtree (rdap-bottom), not one level
    bottom_unserved: bool = False  # rdap-bottom answered 501: the registry does not implement it

    async def run(self, first: int, last: int, deep: bool = False) -> None:
        """List the key's children; `deep`: first ask its whole subtree at once (`rdap-bottom`), or
        the part of it `within` says is worth it."""
        part = self.within(first, last) if deep and self.within is not None else None
        if part is not None and part != (first, last):
            self.deep = True
            await self._bottom_within(first, last, *part)
            return
        if deep and await self._bottom(first, last):
            return
        await self._part(first, last, maybe_child=False)

    async def _bottom_within(self, first: int, last: int, a: int, b: int) -> None:
        """The subtree of first..last where only a..b is worth listing (a slice of a delegation
        larger than the crawl: quick's 63.0.0.0/16 of 63.0.0.0/11, 244 of 8,968 networks, or of
        12/8, refused whole): a child across either edge of a..b (found by `rdap-up`, as
        `_bottom_split` finds one across its cut) with its own subtree, then the rest of a..b as one
        part. Where that part is answered by no `rdap-bottom` (501, or an answer no parser reads),
        the parent is listed by `rdap-down` instead, as `run` lists it then."""
        if a > first and (child := await self._child_across(first, last, a - 1)) is not None:
            await self._subtree(child)
            a = child[0].last + 1
        if b < last and a <= b and (child := await self._child_across(first, last, b)) is not None:
            await self._subtree(child)
            b = child[0].first - 1
        verdict = await self._bottom_part(a, b) if a <= b else "whole"
        if verdict in ("down", "unserved"):
            self.bottom_unserved, self.deep = verdict == "unserved", False
            self.complete, self.children = True, []  # what the edges gave comes again, one level a request
            await self._part(first, last, maybe_child=False)

    async def _bottom(self, first: int, last: int) -> bool:
        """The subtree of first..last by `rdap-bottom`; True where that settled the listing
        (`bottom_settles`: anything but `down` and `unserved`), False where `rdap-down` lists it."""
        verdict, found = await self._bottom_answer(first, last)
        self.bottom_unserved = verdict == "unserved"
        self.deep = verdict in ("whole", "empty", "split")
        if verdict == "split":
            await self._bottom_split(first, last)
        await self._found(found, True)
        return verdict not in ("down", "unserved")

    async def _bottom_answer(self, first: int, last: int) -> tuple[str, list[Child]]:
        """One `rdap-bottom` of a range: what it settles, and the networks it answered (`whole`)."""
        outcome = await self.fetch(key_url(self.base, "rdap-bottom", first, last))
        doc = outcome.value
        if outcome.kind is Kind.ANSWER and not isinstance(doc, rdap.ParsedListing):
            doc = await self.parser.off_loop(rdap.parsed_listing, self.parser, doc, self.registry)
        parsed = doc if isinstance(doc, rdap.ParsedListing) else None
        if parsed is not None and parsed.malformed is not None:  # kept; listed by rdap-down
            await self._keep_unreadable(outcome, f"MalformedAnswer: {parsed.malformed}")
        verdict = bottom_settles(outcome.kind, bool(parsed and parsed.truncated),
                                 bool(parsed and parsed.malformed is not None))
        if verdict == "unanswered":
            self._failed(outcome)
        return verdict, parsed.children if verdict == "whole" and parsed else []

    async def _bottom_split(self, first: int, last: int) -> None:
        """A subtree too long for one answer, in parts: split in the middle, or at the edges of the
        child holding the middle (`_child_across`: nothing inside the parent straddles a cut then),
        that child's own subtree asked as a network's, each part as a range."""
        if first >= last:
            self.complete = False
            return
        middle = first + (last - first) // 2
        child = await self._child_across(first, last, middle)
        parts = [(first, middle), (middle + 1, last)]
        if child is not None:
            await self._subtree(child)
            parts = [(first, child[0].first - 1), (child[0].last + 1, last)]
        for a, b in parts:
            if a <= b and (self.wanted is None or self.wanted(a, b)):
                await self._bottom_part(a, b)

    async def _bottom_part(self, first: int, last: int) -> str:
        """One part of a subtree by `rdap-bottom`, split further where refused; its verdict."""
        verdict, found = await self._bottom_answer(first, last)
        if verdict == "split":
            await self._bottom_split(first, last)
        elif verdict in ("down", "unserved"):
            self.complete = False  # a part no rdap-bottom settles: the walk's grid probes it
        await self._found(found, True)
        # A part a network spans exactly is not inside itself: that network's children name it.
        named = {c.parent_handle for c, _ in found} - {c.handle for c, _ in found} - {self.parent}
        if verdict == "empty" or named:  # all inside it answered: after them, known whole
            exact = await self._exact(first, last)
            await self._found([exact] if exact else [], True)
        return verdict

    async def _found(self, found: list[Child], whole: bool) -> None:
        """Networks of the subtree, `whole` where all inside each of them is known: handed to `kept`
        at once, else gathered in `children`."""
        if found and self.kept is not None:
            await self.kept(found, whole)
        elif found:
            self.children += found

    async def _subtree(self, child: Child) -> None:
        """A child across a cut, after its own subtree, asked as its registry's listing of it is
        (`run`, deep): what that listed one level a request (`rdap-down`) is not known whole."""
        sub = RelationSearch(self.fetch, self.parser, self.registry, self.base, child[0].handle, self.wanted,
                             self.unreadable, within=self.within, kept=self.kept)
        if child[0].last > child[0].first:
            await sub.run(child[0].first, child[0].last, deep=True)
        else:
            sub.deep = True  # one address: nothing inside it
        await self._found(sub.children, False)
        await self._found([child], sub.complete and sub.deep)
        self.complete = self.complete and sub.complete and sub.deep
        self.unanswered = self.unanswered or sub.unanswered

    async def _part(self, first: int, last: int, maybe_child: bool) -> None:
        if self.wanted is not None and not self.wanted(first, last):
            return
        outcome = await self.fetch(key_url(self.base, "rdap-down", first, last))
        if outcome.kind is Kind.TOO_MANY_ROWS:
            await self._split(first, last)
        elif outcome.kind is Kind.NOT_FOUND:
            # empty, or a leaf child exactly this part
            if maybe_child and (exact := await self._exact(first, last)):
                self.children.append(exact)
        elif outcome.kind is not Kind.ANSWER:
            self._failed(outcome)
        else:
            await self._answered(first, last, outcome, maybe_child)

    def _failed(self, outcome: Outcome) -> None:
        self.complete = False
        self.unanswered = self.unanswered or outcome.unanswered

    async def _refused(self, outcome: Outcome, why: str) -> None:
        """An answer the parsers refused: the search is incomplete, and the answer kept."""
        self.complete = False
        await self._keep_unreadable(outcome, why)

    async def _keep_unreadable(self, outcome: Outcome, why: str) -> None:
        if self.unreadable is not None:
            refused = Outcome(Kind.MALFORMED, why, egress=outcome.egress, received=outcome.received)
            await self.unreadable(refused)

    async def _answered(self, first: int, last: int, outcome: Outcome, maybe_child: bool) -> None:
        doc = outcome.value
        if not isinstance(doc, rdap.ParsedListing):  # a big one came parsed already
            doc = await self.parser.off_loop(rdap.parsed_listing, self.parser, doc, self.registry)
        if doc.malformed is not None:
            log.warning("a listing of %s at %s was unusable: %s", self.registry, self.base, doc.malformed)
            await self._refused(outcome, f"MalformedAnswer: {doc.malformed}")
            return
        found = doc.children
        if maybe_child and self.parent and found and any(c.parent_handle != self.parent for c, _ in found):
            if exact := await self._exact(first, last):  # the part is a child: these are its children
                self.children.append(exact)
        elif doc.truncated:
            await self._split(first, last)  # a cut list is split like a refused one, never paged
        else:
            self.children += found

    async def _split(self, first: int, last: int) -> None:
        if first >= last:
            self.complete = False
            return
        middle = first + (last - first) // 2
        child = await self._child_across(first, last, middle)
        if child is not None:
            self.children.append(child)
            parts = [(first, child[0].first - 1), (child[0].last + 1, last)]
        else:
            parts = [(first, middle), (middle + 1, last)]
        for a, b in parts:
            if a <= b:
                await self._part(a, b, maybe_child=True)

    async def _child_across(self, first: int, last: int, middle: int) -> Child | None:
        """The child (inside first..last) holding both `middle` and `middle + 1`, if one does."""
        found = await self._up(middle, middle + 1)
        while found is not None and first <= found[0].first and found[0].last <= last:
            if self.parent is None or found[0].parent_handle == self.parent:
                return found
            found = await self._up(found[0].first, found[0].last)
        return None

    async def _exact(self, first: int, last: int) -> Child | None:
        """The network spanning exactly first..last, if one does."""
        found = await self._up(first, first)  # the most specific object holding `first`, and up
        while found is not None and first <= found[0].first and found[0].last <= last:
            if (found[0].first, found[0].last) == (first, last):
                return found
            found = await self._up(found[0].first, found[0].last)
        return None

    async def _up(self, first: int, last: int) -> Child | None:
        """`rdap-up` of a key: the smallest network strictly holding it (None: none, or failed)."""
        outcome = await self.fetch(key_url(self.base, "rdap-up", first, last))
        if outcome.kind is Kind.NOT_FOUND:
            return None
        if outcome.kind is not Kind.ANSWER:
            self._failed(outcome)
            return None
        try:
            start = int(IPAddress(str(outcome.value["startAddress"])))
            record = await self.parser.off_loop(self.parser.parse, outcome.value, start, self.registry)
        except (MalformedAnswer, KeyError, TypeError, AddrFormatError, ValueError) as exc:
            await self._refused(outcome, f"MalformedAnswer: an rdap-up answer: {exc!r}")
            return None
        return record, rdap.down_link(outcome.value)
