"""A big answer is spooled to a file the parse process reads, within a budget of bytes spooled at once."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from netaddr import IPAddress
from unitsupport_registry import Registry

from whoiscrawl.ratelimit import MemoryRateLimiter
from whoiscrawl.rates import Limit
from whoiscrawl.registry import RegistryClient, rdap, relations, spool
from whoiscrawl.space import Bootstrap

REAL = Path(__file__).parents[1] / "data" / "real-registry"
NETWORK = json.loads((REAL / "arin-rdap-192.198.0.0.json").read_text())
FIRST = int(IPAddress(NETWORK["startAddress"]))


@pytest.fixture
async def listings() -> AsyncIterator[tuple[str, bytes]]:
    """A registry answering every rdap-down with one listing of 2,000 networks (~10 MB), written a
    chunk at a time (so this process holds no copy of it while sending): its search base, the body."""
    body = json.dumps({"ipSearchResults": [NETWORK] * 2000}).encode()

    async def listing(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/rdap+json"})
        resp.content_length = len(body)
        await resp.prepare(request)
        for at in range(0, len(body), spool.CHUNK):
            await resp.write(body[at:at + spool.CHUNK])
        await resp.write_eof()
        return resp

    registry = await Registry({"/a/ips/rirSearch1/rdap-down/": listing}).start()
    yield f"{registry.base}ips/rirSearch1/", body
    assert registry.runner is not None
    await registry.runner.cleanup()


def client(spooled: int = spool.MAX_SPOOLED_BYTES) -> RegistryClient:
    limiter = MemoryRateLimiter({"arin": Limit(1000.0)})
    return RegistryClient(Bootstrap.from_document({"services": []}), limiter, max_spooled_bytes=spooled)


async def test_a_big_answer_is_spooled_and_read_by_the_parse_process_never_held_whole(
    listings: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """Held whole, copied and pickled to the parse process, a 48 MB listing cost the worker ~150 MB
    until parsed, for each one in flight. The parse process gets the file's path; the worker
    allocates less than the body meanwhile (Python's own allocations, counted by tracemalloc)."""
    base, body = listings
    given: list[tuple[type, int]] = []
    read_big = rdap.RdapParser.read_big

    async def noting(self: rdap.RdapParser, answer: Any, registry: str) -> Any:
        given.append((type(answer), Path(answer).stat().st_size if isinstance(answer, Path) else len(answer)))
        return await read_big(self, answer, registry)

    monkeypatch.setattr(rdap.RdapParser, "read_big", noting)
    # spooled in a folder of the test's own: the machine's /tmp may hold a file a killed worker
    # left (another test's SIGKILL), which is not this client's
    monkeypatch.setattr(spool.tempfile, "tempdir", str(tmp_path))
    asking = client()
    url = relations.key_url(base, "rdap-down", FIRST, FIRST + 255)
    await asking.children("arin", url)  # the parse process started, its imports done
    tracemalloc.start()
    try:
        answer = await asking.children("arin", url)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await asking.close()
    assert answer.complete and len(answer.children) == 2000
    assert given and all(kind is not bytes and size == len(body) for kind, size in given)
    # a copy of the body alone would be len(body) (the code before: 27.0 MB at the peak, 2.7 times
    # the body; now the parsed records, 3.2 MB, and their way back from the parse process)
    assert peak < len(body), f"{peak} bytes allocated at the peak for a {len(body)}-byte answer"
    assert list(tmp_path.glob("whoiscrawl-answer-*")) == []  # deleted once parsed


async def test_big_answers_in_flight_never_spool_more_than_the_budget(listings: tuple[str, bytes]):
    base, body = listings
    asking = client(spooled=len(body) * 3 // 2)  # room for one answer at a time
    urls = [relations.key_url(base, "rdap-down", FIRST + 256 * k, FIRST + 256 * k + 255) for k in range(4)]
    try:
        answers = await asyncio.gather(*(asking.children("arin", url) for url in urls))
    finally:
        await asking.close()
    assert all(a.complete and len(a.children) == 2000 for a in answers)
    assert asking._spooled.peak == len(body) and asking._spooled.held == 0


async def test_an_answer_bigger_than_the_budget_is_spooled_alone():
    budget = spool.SpoolBudget(10)
    order: list[str] = []

    async def take(name: str, size: int) -> None:
        async with budget.hold(size):
            order.append(f"{name} in")
            await asyncio.sleep(0.01)
            order.append(f"{name} out")

    await asyncio.gather(take("small", 4), take("big", 25), take("other", 4))
    assert budget.peak == 25 and budget.held == 0
    assert order == ["small in", "small out", "big in", "big out", "other in", "other out"]  # in turn


async def test_an_answer_that_stops_waiting_for_the_budget_lets_the_next_in_line_go():
    budget = spool.SpoolBudget(10)
    gone = asyncio.Event()

    async def hold_until_gone() -> None:
        async with budget.hold(10):
            await gone.wait()

    first = asyncio.create_task(hold_until_gone())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(budget.hold(5).__aenter__())
    await asyncio.sleep(0)
    waiting.cancel()  # its request timed out, say
    gone.set()
    await first
    async with budget.hold(5):
        assert budget.held == 5


def test_a_killed_process_s_spooled_answers_are_deleted_by_the_next_and_a_living_one_s_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """A worker SIGKILLed (or OOM-killed) mid-answer cannot delete its spooled answer: the next
    process to spool does, and leaves those of a process still running alone (before, each kill
    left up to `max_spooled_bytes` in /tmp for good: a worker container restarted in place keeps
    its scratch volume, so repeated kills would fill it)."""
    monkeypatch.setattr(spool.tempfile, "tempdir", str(tmp_path))
    spooling = "; ".join([
        "import os, sys, tempfile", f"tempfile.tempdir = {str(tmp_path)!r}",
        "from whoiscrawl.registry import spool",
        "folder = spool.spool_folder()", "(folder / 'whoiscrawl-answer-x.json').write_bytes(b'{}')",
        "print(folder, flush=True)", "sys.stdin.read()"])  # held until killed
    killed = subprocess.Popen([sys.executable, "-c", spooling], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    living = subprocess.Popen([sys.executable, "-c", spooling], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert killed.stdout and living.stdout
        dead_folder, living_folder = Path(killed.stdout.readline().decode().strip()), \
            Path(living.stdout.readline().decode().strip())
        killed.kill()
        killed.wait()
        assert (dead_folder / "whoiscrawl-answer-x.json").exists()  # nothing of it cleaned on a kill
        mine = spool.spool_folder()
        assert not dead_folder.exists()
        assert (living_folder / "whoiscrawl-answer-x.json").exists()
        assert mine.parent == tmp_path and mine not in (dead_folder, living_folder)
    finally:
        for process in (killed, living):
            process.kill()
            process.wait()
