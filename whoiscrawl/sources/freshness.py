"""The freshness check: which networks of a dump to ask again live, and what disagrees (pure)."""

from __future__ import annotations

from whoiscrawl.records import NetworkRecord

FIELDS = ("range", "registrant", "country", "abuse_emails")


def every(fraction: float) -> int:
    """Ask one network in this many (0: none). 1.0 asks every one."""
    if fraction <= 0:
        return 0
    return max(1, round(1 / min(fraction, 1.0)))


def sampled(n: int, step: int) -> bool:
    """Is the n-th network (from 0) of the freshness sample, one in `step` (`every`; 0: none)?"""
    return bool(step) and n % step == 0


def redacted(dumped: NetworkRecord) -> bool:
    """A dumped network lacking a field a person reads (holder, country, abuse e-mail): LACNIC's dump
    names an abuse contact but carries no address for it, so only a live answer gives it."""
    return not (dumped.registrant and dumped.country and dumped.abuse_emails)


def disagreements(dumped: NetworkRecord, live: NetworkRecord | None) -> list[str]:
    """The fields the live answer for a dumped network's first address contradicts. An answer for
    another (more specific) network says nothing about this one's fields; a field the dump left out
    and the live answer gives is `filled`, not a disagreement."""
    if live is None:
        return ["range"]  # the registry no longer holds anything there
    if (live.first, live.last) != (dumped.first, dumped.last):
        return [] if live.first >= dumped.first and live.last <= dumped.last else ["range"]
    found = []
    if dumped.registrant and live.registrant and dumped.registrant != live.registrant:
        found.append("registrant")
    if dumped.country and live.country and dumped.country.upper() != live.country.upper():
        found.append("country")
    mine, theirs = ({e.lower() for e in r.abuse_emails} for r in (dumped, live))
    if mine and mine != theirs:
        found.append("abuse_emails")
    return found


def filled(dumped: NetworkRecord, live: NetworkRecord | None) -> list[str]:
    """Fields the dump lacks (redacted or absent) that the live answer for the same network gives."""
    if live is None or (live.first, live.last) != (dumped.first, dumped.last):
        return []
    pairs = (("registrant", dumped.registrant, live.registrant), ("country", dumped.country, live.country),
             ("abuse_emails", dumped.abuse_emails, live.abuse_emails))
    return [name for name, mine, theirs in pairs if not mine and theirs]


def verdict(dumped: NetworkRecord, live: NetworkRecord | None) -> tuple[str, list[str]]:
    """(disagreed | filled | child_answered | agreed, the fields that differ or were filled). An
    answer about a child starting where the network does says nothing of the network itself."""
    differs = disagreements(dumped, live)
    if differs:
        return "disagreed", differs
    more = filled(dumped, live)
    if more:
        return "filled", more
    assert live is not None  # no answer at all is a disagreement
    same = (live.first, live.last) == (dumped.first, dumped.last)
    return ("agreed" if same else "child_answered"), []
