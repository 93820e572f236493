"""The fleet's asyncio Redis client: redis-py's, with task cancellation kept."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline


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
