"""The crawl's failure policy (registry/patience.py): the rule as a table, and the policy applied to
a scripted registry (which answers, fails, or answers help)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from whoiscrawl.registry import LookupFailed
from whoiscrawl.registry.patience import ASK_AGAIN, ASK_HELP, GIVE_UP, Patience, next_move

PAUSES = (2.0, 10.0, 30.0)


@pytest.mark.parametrize(("attempt", "failing", "once_more", "answered_since", "move"), [
    (0, "arin", False, False, 2.0),  # the pauses first, whatever happened
    (1, "arin", False, True, 10.0),
    (2, None, False, False, 30.0),
    (3, None, False, False, GIVE_UP),  # no registry serves it
    (3, "arin", False, True, ASK_AGAIN),  # its registry answered others since this ask began: once more
    (4, "arin", True, True, GIVE_UP),  # asked once more, and it failed again: it is this one
    (3, "arin", True, False, GIVE_UP),  # its registry answered help, and it failed once more
    (3, "arin", False, False, ASK_HELP),  # its registry answered nothing: is it up?
    (7, "lacnic", False, False, ASK_HELP),  # an outage: asked again every last pause
])
def test_next_move(attempt: int, failing: str | None, once_more: bool, answered_since: bool,
                   move: float | str) -> None:
    assert next_move(attempt, PAUSES, failing, once_more, answered_since) == move


def scripted(outcomes: list[str], registry: str = "arin") -> tuple[Callable[[], Awaitable[str]], list[int]]:
    """An ask that fails ("fail") or answers ("ok") in turn, and the count of times it was asked."""
    asked = [0]

    async def ask() -> str:
        outcome = outcomes[min(asked[0], len(outcomes) - 1)]
        asked[0] += 1
        if outcome == "fail":
            raise LookupFailed("no answer", registry)
        return outcome

    return ask, asked


def patience(help_answers: bool, stopping: asyncio.Event | None = None,
             pauses: tuple[float, ...] = (0.0, 0.0)) -> tuple[Patience, list[str]]:
    """The policy with no time to wait, and the help queries it sends."""
    helped: list[str] = []

    async def answering(registry: str) -> bool:
        helped.append(registry)
        return help_answers

    return Patience(answering, stopping or asyncio.Event(), pauses=pauses), helped


@pytest.mark.parametrize(("outcomes", "help_answers", "asks", "helps", "given_up"), [
    (["ok"], True, 1, 0, False),
    (["fail", "fail", "ok"], True, 3, 0, False),  # answered within the pauses
    (["fail"], True, 4, 1, True),  # the pauses, help says up, once more, given up
    (["fail", "fail", "fail", "fail", "ok"], False, 5, 2, False),  # down: the last pause repeats
])
async def test_a_registry_failing_is_asked_again_then_helped_then_given_up(
        outcomes: list[str], help_answers: bool, asks: int, helps: int, given_up: bool) -> None:
    policy, helped = patience(help_answers)
    ask, asked = scripted(outcomes)
    if given_up:
        with pytest.raises(LookupFailed):
            await policy.ask("1.2.3.4", ask)
    else:
        assert await policy.ask("1.2.3.4", ask) == "ok"
    assert (asked[0], len(helped)) == (asks, helps)


async def test_a_registry_answering_others_meanwhile_is_asked_once_more_then_given_up_unhelped() -> None:
    policy, helped = patience(help_answers=True)

    async def ask() -> str:
        policy.answered("arin")  # another lane's lookup was answered meanwhile
        raise LookupFailed("no answer", "arin")

    with pytest.raises(LookupFailed):
        await policy.ask("1.2.3.4", ask)
    assert helped == []


async def test_stopping_during_a_pause_returns_none() -> None:
    stopping = asyncio.Event()
    policy, _ = patience(help_answers=False, stopping=stopping)
    ask, asked = scripted(["fail"])
    stopping.set()
    assert await policy.ask("1.2.3.4", ask) is None
    assert asked[0] == 1


async def test_lanes_waiting_on_one_registry_share_one_help_query() -> None:
    policy, helped = patience(help_answers=True, pauses=(0.0, 60.0))  # one query per last pause
    assert all(await asyncio.gather(*(policy.answers_help("lacnic", 0.0) for _ in range(16))))
    assert helped == ["lacnic"]


def test_what_is_given_up_on_is_named_the_latest_hundred() -> None:
    policy, _ = patience(help_answers=True)
    for n in range(150):
        policy.give_up("arin", f"10.0.0.{n}", "no answer")
    assert len(policy.failures) == 100 and policy.failures[-1] == "10.0.0.149: no answer"
