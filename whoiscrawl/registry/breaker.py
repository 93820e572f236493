"""A circuit breaker per registry: stop hammering a registry that keeps failing."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class CircuitBreaker:
    """Stop hammering a registry that keeps failing: when at least half of the last `window`
    requests failed, hold off for a cooldown that doubles each time it re-opens."""

    window: int = 20
    min_failures: int = 8
    base_cooldown: float = 1.0
    max_cooldown: float = 60.0
    _outcomes: deque[bool] = field(default_factory=lambda: deque(maxlen=20))
    _opened: int = 0
    _open_until: float = 0.0

    async def wait(self) -> None:
        delay = self._open_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def failure(self) -> None:
        self._outcomes.append(False)
        failures = self._outcomes.count(False)
        if failures >= self.min_failures and failures * 2 >= len(self._outcomes) and not self.is_open:
            cooldown = min(self.max_cooldown, self.base_cooldown * 2**self._opened)
            self._open_until = time.monotonic() + cooldown
            self._opened += 1
            log.warning(
                "%d of the last %d requests failed: holding off for %.0fs",
                failures,
                len(self._outcomes),
                cooldown,
            )

    def success(self) -> None:
        self._outcomes.append(True)
        if self._outcomes.count(False) * 2 < len(self._outcomes):
            self._opened = 0

    @property
    def is_open(self) -> bool:
        return self._open_until > time.monotonic()
