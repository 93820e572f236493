"""Registry budgets per (registry, egress address): GCRA pacing, 429 pauses and connection caps."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as aioredis

from whoiscrawl import metrics
from whoiscrawl.keys import budget
from whoiscrawl.rates import Limit
from whoiscrawl.redis_client import TRANSIENT, until_answered

log = logging.getLogger(__name__)

# The slot a lane's current permit was granted, in ms on its limiter's clock (monotonic in memory,
# the Redis server's TIME in Redis): the limiter's own record of when a request may go, which
# metrics, logs and tests read rather than timing the sends themselves.
GRANTED_SLOT_MS: ContextVar[float] = ContextVar("granted_slot_ms")


def gcra_reserve(
    tat_ms: float, now_ms: float, interval_ms: float, pause_until_ms: float = 0.0
) -> tuple[float, float]:
    """Reserve the next slot: (milliseconds to wait before sending, the new theoretical arrival time).

    Each caller gets its own slot, so callers never contend; the slots are `interval_ms` apart."""
    start = max(tat_ms, now_ms, pause_until_ms)
    return start - now_ms, start + interval_ms


async def sleep_until_slot(registry: str, wait_ms: float, interval_ms: float) -> bool:
    """Sleep to a reserved slot; False if we woke too late to use it. After the process stalls,
    every lane whose slot passed meanwhile would otherwise send at once: a burst the registry
    may punish. A late lane takes a fresh slot instead."""
    if wait_ms <= 0:
        return True
    metrics.RATE_WAIT.labels(registry).inc(wait_ms / 1000)
    target = time.monotonic() + wait_ms / 1000
    await asyncio.sleep(wait_ms / 1000)
    return time.monotonic() - target <= max(interval_ms, 5.0) / 1000


class RateLimiter(Protocol):
    limits: dict[str, Limit]  # per registry, per egress address

    def permit(self, registry: str, egresses: Sequence[str]) -> AbstractAsyncContextManager[str]:
        """Wait for a slot on the egress that has the earliest one; yields that egress."""
        ...

    async def pause(self, registry: str, egress: str, seconds: float) -> None:
        """The registry said stop (429, Retry-After, Rate Limit Notice): everyone behind the
        egress address waits that long."""
        ...


@dataclass
class ConnectionSlot:
    """One of a registry's connections behind an egress address, held while a request runs."""

    egress: str
    held: Callable[[], Awaitable[bool]]  # still ours? (a lease lapsed during a stall is not)


async def _always() -> bool:
    return True


class _SlotLimiter:
    """What both limiters do alike: a connection first where the registry caps them, then a slot."""

    limits: dict[str, Limit]

    async def _reserve_slot(self, registry: str, egresses: Sequence[str]) -> tuple[str, float, float]:
        """Reserve the earliest slot on one of the egresses: (that egress, milliseconds to wait, the
        slot's time in ms on the limiter's clock)."""
        raise NotImplementedError

    def _connection(
        self, registry: str, egresses: Sequence[str], cap: int
    ) -> AbstractAsyncContextManager[ConnectionSlot]:
        """Hold one of the registry's `cap` connections on one of the egresses."""
        raise NotImplementedError

    async def _paced(self, registry: str, egresses: Sequence[str]) -> str:
        interval = self.limits[registry].interval_ms
        while True:
            egress, wait, slot = await self._reserve_slot(registry, egresses)
            if await sleep_until_slot(registry, wait, interval):
                GRANTED_SLOT_MS.set(slot)
                return egress

    async def _paced_on(self, registry: str, slot: ConnectionSlot) -> bool:
        """Wait for a pacing slot on a held connection's egress; False if the connection slot was
        lost meanwhile. Both are checked after any pause: a pacing slot is only good when it is
        used at once, and a connection slot lapsed while its holder was frozen may be another's."""
        interval = self.limits[registry].interval_ms
        while True:
            await self._paced(registry, [slot.egress])
            woke = time.monotonic()
            if not await slot.held():
                return False
            if time.monotonic() - woke <= max(interval, 5.0) / 1000:
                return True  # else a pause during the check: the pacing slot has passed, a new one

    @asynccontextmanager
    async def permit(self, registry: str, egresses: Sequence[str]) -> AsyncIterator[str]:
        cap = self.limits[registry].max_connections
        if cap is None:
            yield await self._paced(registry, egresses)
            return
        # A connection first, then the slot: lanes queued for connections must not hold slots,
        # or they would all send the moment connections free up (a burst).
        while True:
            async with self._connection(registry, egresses, cap) as slot:
                if await self._paced_on(registry, slot):
                    yield slot.egress
                    return
            metrics.CONN_SLOTS_LOST.labels(registry).inc()
            log.warning("the %s connection slot on %s lapsed before its request was sent (a stall?): "
                        "taking one anew", registry, slot.egress)


@dataclass
class MemoryRateLimiter(_SlotLimiter):
    """The limiter of a single process (local mode)."""

    limits: dict[str, Limit]
    _tat: dict[tuple[str, str], float] = field(default_factory=dict)
    _paused: dict[tuple[str, str], float] = field(default_factory=dict)
    _conns: dict[tuple[str, str], asyncio.Semaphore] = field(default_factory=dict)

    async def _reserve_slot(self, registry: str, egresses: Sequence[str]) -> tuple[str, float, float]:
        now = time.monotonic() * 1000
        interval = self.limits[registry].interval_ms
        options = [
            (
                gcra_reserve(
                    self._tat.get((registry, e), 0.0), now, interval, self._paused.get((registry, e), 0.0)
                ),
                e,
            )
            for e in egresses
        ]
        (wait, tat), egress = min(options, key=lambda o: o[0][0])
        self._tat[(registry, egress)] = tat
        return egress, wait, tat - interval

    @asynccontextmanager
    async def _connection(
        self, registry: str, egresses: Sequence[str], cap: int
    ) -> AsyncIterator[ConnectionSlot]:
        sems = {e: self._conns.setdefault((registry, e), asyncio.Semaphore(cap)) for e in egresses}
        egress = next((e for e, sem in sems.items() if not sem.locked()), egresses[0])
        async with sems[egress]:
            yield ConnectionSlot(egress, _always)  # one process: nothing lapses

    async def pause(self, registry: str, egress: str, seconds: float) -> None:
        until = time.monotonic() * 1000 + seconds * 1000
        key = (registry, egress)
        self._paused[key] = max(self._paused.get(key, 0.0), until)


# The same reservation as gcra_reserve, atomically in Redis, on the server's clock (so hosts with
# skewed clocks share one timeline). KEYS: tat1, pause1, tat2, pause2, ...; ARGV[1]: interval ms.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local best, best_wait, best_start = 0, nil, nil
for i = 1, #KEYS, 2 do
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  local paused = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
  local start = math.max(tat, now, paused)
  if best_wait == nil or start - now < best_wait then
    best, best_wait, best_start = i, start - now, start
  end
end
local ttl = math.ceil(best_start + interval - now) + 60000
redis.call('SET', KEYS[best], tostring(best_start + interval), 'PX', ttl)
return {(best + 1) / 2, tostring(best_wait), tostring(best_start)}
"""
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local untilms = now + tonumber(ARGV[1])
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
if untilms > old then redis.call('SET', KEYS[1], tostring(untilms), 'PX', math.ceil(untilms - now) + 1000) end
return 1
"""
# A connection slot: a sorted set of holders scored by expiry, so a dead holder's slot comes back;
# a live holder renews its expiry while its request runs. Each holder is a fencing token (a counter
# that only grows, KEYS[2]) and its owner: `<token>/<owner>`. Returns the holder, or nil.
_ACQUIRE_CONN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  local holder = redis.call('INCR', KEYS[2]) .. '/' .. ARGV[3]
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), holder)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return holder
end
return false
"""
# Renewed only while still held: a slot that lapsed was dropped by the next holder's acquire
# (it counts live holders only), and may be that holder's now. 0: gone.
_RENEW_CONN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
  return 1
end
return 0
"""


class RedisRateLimiter(_SlotLimiter):
    """The fleet's limiter: every process behind an egress address shares its budget through Redis.
    Redis failing (away, restarting, the pool's connections all busy) makes a lane wait for its
    permit, asked again with backoff (`until_answered`), never fail nor send without one."""

    CONN_TTL_MS = 12_000  # renewed every third of it while held: a dead holder's slot is back soon

    def __init__(self, client: aioredis.Redis, limits: dict[str, Limit], owner: str = "") -> None:
        """`owner`: this process, named in the connection slots it holds (`<token>/<owner>/<nonce>`)."""
        self.client = client
        self.limits = limits
        self.owner = owner
        self._reserve = client.register_script(_RESERVE)
        self._pause = client.register_script(_PAUSE)
        self._acquire = client.register_script(_ACQUIRE_CONN)
        self._renew_conn = client.register_script(_RENEW_CONN)

    async def _reserve_slot(self, registry: str, egresses: Sequence[str]) -> tuple[str, float, float]:
        keys = []
        for egress in egresses:
            base = budget(registry, egress)
            keys += [base, base + ":pause"]
        interval = self.limits[registry].interval_ms
        index, wait, start = await until_answered(
            f"a {registry} pacing slot", lambda: self._reserve(keys=keys, args=[interval]))
        return egresses[int(index) - 1], float(wait), float(start)

    @asynccontextmanager
    async def _connection(
        self, registry: str, egresses: Sequence[str], cap: int
    ) -> AsyncIterator[ConnectionSlot]:
        egress, slot_key, holder = await self._acquire_connection(registry, egresses, cap)
        lost = asyncio.Event()

        async def held() -> bool:
            return not lost.is_set() and bool(await until_answered(
                f"the {registry} connection slot", lambda: self._renew_conn(
                    keys=[slot_key], args=[self.CONN_TTL_MS, holder])))

        keeper = asyncio.create_task(self._keep_conn(slot_key, holder, lost))
        try:
            yield ConnectionSlot(egress, held)
        finally:
            keeper.cancel()
            await self._give_back(slot_key, holder)

    async def _give_back(self, slot_key: str, holder: str) -> None:
        """End our connection slot (ours only: another holder is another member). Asked again while
        Redis fails, but no longer than the slot's lease: by then it has lapsed by itself."""
        try:
            await until_answered("giving a connection slot back", lambda: self.client.zrem(slot_key, holder),
                                 give_up_s=self.CONN_TTL_MS / 1000)
        except TRANSIENT as exc:
            log.warning("a connection slot was not given back (%r): it lapses within %d s",
                        exc, self.CONN_TTL_MS // 1000)

    async def _acquire_connection(
        self, registry: str, egresses: Sequence[str], cap: int
    ) -> tuple[str, str, str]:
        """A connection slot on the first egress address that has one free: (egress, its key, the
        holder we are in it)."""
        name = f"{self.owner}/{uuid.uuid4().hex[:8]}"  # the token is prefixed in Redis
        while True:
            for egress in egresses:
                slot_key = budget(registry, egress) + ":conns"
                keys = [slot_key, budget(registry, egress) + ":fence"]
                try:
                    acquire = functools.partial(self._acquire, keys=keys, args=[cap, self.CONN_TTL_MS, name])
                    holder = await until_answered(f"a {registry} connection slot", acquire)
                except asyncio.CancelledError:  # taken as we were cancelled, perhaps: given back
                    with contextlib.suppress(*TRANSIENT):  # else it lapses within its lease
                        held: Any = await self.client.zrange(slot_key, 0, -1)
                        mine = [h for h in held if h.decode().endswith("/" + name)]
                        if mine:
                            await self.client.zrem(slot_key, *mine)
                    raise
                if holder:
                    return egress, slot_key, holder.decode() if isinstance(holder, bytes) else str(holder)
            await asyncio.sleep(0.005)

    async def _keep_conn(self, slot_key: str, holder: str, lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self.CONN_TTL_MS / 3000)
            try:
                renewed = await self._renew_conn(keys=[slot_key], args=[self.CONN_TTL_MS, holder])
            except Exception:  # a Redis hiccup: the next renewal may get through
                continue
            if not renewed:  # lapsed (a stall): a request not sent yet must not go on it
                lost.set()
                return

    async def pause(self, registry: str, egress: str, seconds: float) -> None:
        key = budget(registry, egress) + ":pause"
        await until_answered(f"a {registry} pause", lambda: self._pause(keys=[key], args=[seconds * 1000]))
