"""Answers asked once per key by a client: concurrent callers share the one request, later ones the
value it gave."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Once(Generic[K, V]):
    """A task only while its request is in flight, then the value alone: a finished asyncio.Task
    holds ~1 kB, so the 256k LACNIC contacts of `full` kept as tasks held ~300 MB of the crawler.
    A request that raised (or was cancelled) keeps nothing: the next caller asks again. One whose
    callers are all gone (cancelled) is cancelled too: a request nobody waits for is not sent (a
    fleet worker whose batch of the fill moved to another worker asked its contacts all the same,
    each then asked again by the batch's new owner: 43 of `standard`'s 389 LACNIC contacts)."""

    def __init__(self) -> None:
        self._kept: dict[K, V] = {}
        self._running: dict[K, asyncio.Task[V]] = {}
        self._waiting: dict[K, int] = {}  # callers awaiting each request in flight

    def __len__(self) -> int:
        return len(self._kept) + len(self._running)

    def asked(self, key: K) -> bool:
        """Has a caller asked for `key` (answered, or in flight)?"""
        return key in self._kept or key in self._running

    def know(self, key: K, value: V) -> None:
        """`value` for `key`, learnt without asking (another answer gave it): a later caller gets it
        unasked. One asked or in flight already is left as its own answer gives it."""
        if key not in self._kept and key not in self._running:
            self._kept[key] = value

    async def get(self, key: K, ask: Callable[[], Awaitable[V]]) -> V:
        """The value for `key`: kept, awaited from the request in flight, or `ask()`ed now."""
        if key in self._kept:
            return self._kept[key]
        task = self._running.get(key)
        if task is None:
            task = self._running[key] = asyncio.create_task(self._keep(key, ask))
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            return await asyncio.shield(task)  # one caller cancelled: the others still get the value
        except asyncio.CancelledError:
            if self._waiting[key] == 1:  # the last caller gone: nobody wants the answer
                task.cancel()
            raise
        finally:
            if (left := self._waiting.pop(key) - 1) > 0:
                self._waiting[key] = left

    async def _keep(self, key: K, ask: Callable[[], Awaitable[V]]) -> V:
        try:
            value = await ask()
        finally:
            del self._running[key]
        self._kept[key] = value
        return value

    def cancel(self) -> None:
        """Stop the requests in flight (a client closing: nobody waits for them any more)."""
        for task in self._running.values():
            task.cancel()
