"""The crawl's one failure policy over minutes: pauses, help queries, giving up (beside the client's
attempt loop, which retries one request over seconds).

A lookup or a listing that failed every way (the client's retries, WHOIS) is asked again after
each pause: registries have bad minutes, and what is given up on is blocks possibly lost. When the
pauses run out it is given up on if its registry was known to answer meanwhile (it answered another
request, or a help query, before this one was asked again); while that registry answers nothing
the last pause repeats. `next_move` is the rule (pure, table-tested); `Patience` applies it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from whoiscrawl import metrics
from whoiscrawl.registry.outcome import LookupFailed

log = logging.getLogger("whoiscrawl.crawl")  # the crawl loop's log, as before the policy had a home

Asked = TypeVar("Asked")
GIVE_UP = "give up"
ASK_HELP = "ask help"
# Before what failed every way is asked again; the last repeats while its registry answers nothing.
PAUSES = (2.0, 10.0, 30.0)


def next_move(attempt: int, pauses: tuple[float, ...], failing: str | None, helped: bool,
              answered_since: bool) -> float | str:
    """What follows the `attempt`-th failure (0-based): a pause before asking again, or once the
    pauses ran out, GIVE_UP (no registry serves it, `failing` None; its registry answered help
    already, `helped`; or it answered others since this was first asked, `answered_since`: then it
    is this one), else ASK_HELP (up: ask once more; down: pause the last pause, again and again)."""
    if attempt < len(pauses):
        return pauses[attempt]
    if failing is None or helped or answered_since:
        return GIVE_UP
    return ASK_HELP


@dataclass
class Patience:
    """The failure policy of one crawling process: which registries answered lately, the help
    queries shared by its lanes, and what it gave up on."""

    answering: Callable[[str], Awaitable[bool]]  # one RDAP help query (RegistryClient.answering)
    stopping: asyncio.Event
    pauses: tuple[float, ...] = PAUSES
    failures: list[str] = field(default_factory=list)  # the latest 100 given up on, named
    answered_at: dict[str, float] = field(default_factory=dict)  # per registry, monotonic
    _help: dict[str, tuple[float, asyncio.Future[bool]]] = field(default_factory=dict)  # the last asked

    def answered(self, *registries: str) -> None:
        """These registries answered just now."""
        now = time.monotonic()
        for registry in registries:
            self.answered_at[registry] = now

    async def ask(self, what: str, ask: Callable[[], Awaitable[Asked]]) -> Asked | None:
        """Ask (a lookup, a listing) again after each pause while it fails every way (LookupFailed),
        until `next_move` gives it up (LookupFailed raised).
        None: the crawl stops during a pause (a drain must not sit it out)."""
        started = time.monotonic()
        helped = False  # asked again at once because its registry answered help
        for attempt in itertools.count():
            answered_before = dict(self.answered_at)
            try:
                return await ask()
            except LookupFailed as exc:
                failing = exc.registry
                since = answered_before.get(failing, -math.inf) > started if failing else False
                move = next_move(attempt, self.pauses, failing, helped, since)
                if move == GIVE_UP:
                    raise
                if move == ASK_HELP and failing is not None and await self.answers_help(failing):
                    helped = True
                    continue  # up: ask once more, and give it up if that fails
                pause = self.pauses[min(attempt, len(self.pauses) - 1)]
                if attempt == len(self.pauses):
                    log.warning("%s: %s; %s answers nothing: asking again every %.0fs until it does",
                                what, exc, failing, pause)
                else:
                    log.info("%s: %s; trying again in %.0fs", what, exc, pause)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), pause)
                if self.stopping.is_set():
                    return None
        raise AssertionError("unreachable")

    async def answers_help(self, registry: str) -> bool:
        """Ask a registry that answered none of our lookups lately whether it is up (RDAP help): a
        lone lane's only traffic may be its broken address, which would otherwise wait forever.
        One query a registry per last pause, whatever the number of lanes waiting: in an outage
        every lane asks, and LACNIC allows ten requests a minute."""
        if self.stopping.is_set():
            return False
        asked = self._help.get(registry)
        if asked is None or time.monotonic() - asked[0] >= self.pauses[-1]:
            asked = (time.monotonic(), asyncio.ensure_future(self.answering(registry)))
            self._help[registry] = asked
        at, answering = asked
        try:
            if not await asyncio.shield(answering):
                return False
        except Exception as exc:  # the shared query failed outright: as if unanswered
            log.info("asking %s for help: %r", registry, exc)
            return False
        self.answered_at[registry] = max(self.answered_at.get(registry, -math.inf), at)
        return True

    def give_up(self, registry: str, what: str, reason: str) -> None:
        """Count and name something given up on (an address, a listing), for the crawl's report."""
        metrics.ERRORS.labels(registry).inc()
        log.warning("giving up on %s for now: %s", what, reason)
        self.failures[:] = [*self.failures[-99:], f"{what}: {reason}"]  # the latest 100
