"""The fleet's asyncio Redis client: redis-py's, with task cancellation kept and a pool that waits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.client import Pipeline

log = logging.getLogger(__name__)

T = TypeVar("T")

# Redis away (restarting, unreachable, loading its data) or every pooled connection busy: weather,
# waited out. Any other Redis error (a script's, a wrong type) is a bug, and raised.
TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
# A worker's connections to Redis. Each command holds one for its round trip only (none blocks at
# the server), so this many serve its lanes (one per partition it holds: up to the plan's 32), their
# lease and connection-slot keepers, and the store's watch. A command past them waits for one
# (a blocking pool): redis-py's default pool fails it instead (MaxConnectionsError), which killed a
# worker waking from a pause with 32 lanes' cancelled probes giving back their leases at once.
POOL_CONNECTIONS = 64


def _raise_if_cancelled() -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class _Pipeline(Pipeline):
    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        answers = await super().execute(raise_on_error)
        _raise_if_cancelled()
        return answers


class Redis(aioredis.Redis):
    """redis-py (8.1) finishes a command whose task is cancelled meanwhile and returns its answer,
    the cancellation dropped: 60 of 60 script calls tried, so a lease keeper or a lane cancelled
    while it waited on Redis ran on (keepers renewing released leases, revoked walks walking).
    This one raises the cancellation once the answer is in, the connection still in step."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        answer = await super().execute_command(*args, **options)
        _raise_if_cancelled()
        return answer

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> _Pipeline:
        return _Pipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


def pooled(url: str, **options: Any) -> Redis:
    """A client whose commands wait for a free connection (at most POOL_CONNECTIONS) rather than
    fail when all are busy; `options` are the connections' (retry, timeouts)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=POOL_CONNECTIONS, timeout=None, **options)
    client = Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # its own pool: closed with it
    return client


async def until_answered(what: str, call: Callable[[], Awaitable[T]], give_up_s: float | None = None) -> T:
    """`call()` asked again with a growing pause (0.05 s to 2 s) while Redis fails transiently: the
    caller waits instead of failing. After `give_up_s` of failures the last error is raised."""
    loop = asyncio.get_running_loop()
    started, pause = loop.time(), 0.05
    while True:
        try:
            return await call()
        except TRANSIENT as exc:
            if give_up_s is not None and loop.time() - started + pause > give_up_s:
                raise
            (log.warning if pause == 0.05 else log.debug)("%s: Redis failed (%r), asking again", what, exc)
            await asyncio.sleep(pause)
            pause = min(2.0, pause * 2)
