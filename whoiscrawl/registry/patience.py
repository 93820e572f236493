"""The crawl's one failure policy over minutes: pauses, help queries, giving up (beside the client's
attempt loop, which retries one request over seconds).

A lookup or a listing that failed every way (the client's retries, WHOIS) is asked again after
each pause: registries have bad minutes, and what is given up on is blocks possibly lost. When the
pauses run out it is asked once more at once if its registry is known to answer (it answered
another request since this one's last ask began, or a help query asked since then), and given up
on if that fails too; an answer from before that ask is no evidence (the registry may have gone
down since: an answer given just before a RIPE NCC outage once gave up the lanes asking during it).
While that registry answers nothing the last pause repeats. `next_move` is the rule (pure,
table-tested); `Patience` applies it.
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
ASK_AGAIN = "ask again"
ASK_HELP = "ask help"
# Before what failed every way is asked again; the last repeats while its registry answers nothing.
PAUSES = (2.0, 10.0, 30.0)


def next_move(attempt: int, pauses: tuple[float, ...], failing: str | None, asked_once_more: bool,
              answered_since: bool) -> float | str:
    """What follows the `attempt`-th failure (0-based): a pause before asking again, or once the
    pauses ran out, GIVE_UP (no registry serves it, `failing` None; or it was asked once more
    already because its registry answered, `asked_once_more`: then it is this one), ASK_AGAIN at
    once (its registry answered others since this ask began, `answered_since`), else ASK_HELP
    (up: ask once more; down: pause the last pause, again and again)."""
    if attempt < len(pauses):
        return pauses[attempt]
    if failing is None or asked_once_more:
        return GIVE_UP
    return ASK_AGAIN if answered_since else ASK_HELP


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
        once_more = False  # asked again at once because its registry was known to answer
        for attempt in itertools.count():
            asked_at = time.monotonic()
            try:
                return await ask()
            except LookupFailed as exc:
                failing = exc.registry
                since = self.answered_at.get(failing, -math.inf) > asked_at if failing else False
                move = next_move(attempt, self.pauses, failing, once_more, since)
                if move == GIVE_UP:
                    raise
                if move == ASK_AGAIN or (move == ASK_HELP and failing is not None
                                         and await self.answers_help(failing, asked_at)):
                    once_more = True
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

    async def answers_help(self, registry: str, since: float) -> bool:
        """Ask a registry that answered none of our lookups lately whether it is up (RDAP help): a
        lone lane's only traffic may be its broken address, which would otherwise wait forever.
        Only a query asked `since` (the failed ask began) tells; one asked before is shared, but
        answers False. One query a registry per last pause, whatever the number of lanes waiting:
        in an outage every lane asks, and LACNIC allows ten requests a minute."""
        if self.stopping.is_set():
            return False
        asked = self._help.get(registry)
        if asked is not None and asked[0] < since and time.monotonic() - asked[0] < self.pauses[-1]:
            return False  # asked lately, but before this failed: the next pause asks again
        if asked is None or asked[0] < since:
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
