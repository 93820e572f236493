"""A circuit breaker per registry: stop hammering a registry that keeps failing; probe for its return."""

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
    requests failed, hold off for a cooldown. Then one request goes as a probe (half-open) while
    the others wait for it: answered, the circuit closes and the outage's failures are forgotten (a
    registry that is back is used again at once); failed, it holds off again, twice as long."""

    window: int = 20
    min_failures: int = 8
    base_cooldown: float = 1.0
    max_cooldown: float = 60.0
    _outcomes: deque[bool] = field(default_factory=lambda: deque(maxlen=20))
    _opened: int = 0
    _open_until: float = 0.0
    _tripped: bool = False  # opened, and no probe has been answered since
    _probe: asyncio.Future[None] | None = None  # the probe out now; done when it ends

    async def wait(self) -> bool:
        """Wait until a request may go. True: it goes as the probe, and its sender reports how it
        ended (`probed`); the others wait for that."""
        while self._tripped:
            delay = self._open_until - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif self._probe is None:
                self._probe = asyncio.get_running_loop().create_future()
                return True
            else:
                await asyncio.shield(self._probe)
        return False

    def probed(self, answered: bool | None) -> None:
        """The probe ended: answered (close), failed (hold off again, longer), or neither (a 429, a
        cancelled request: the next request probes)."""
        probe, self._probe = self._probe, None
        if answered:
            if self._tripped:
                log.warning("the registry answers again: the circuit is closed")
            self._tripped, self._opened, self._open_until = False, 0, 0.0
            self._outcomes.clear()  # the outage's failures say nothing of the registry now
        elif answered is False and self._tripped:
            self._trip(self._outcomes.count(False))
        if probe is not None and not probe.done():
            probe.set_result(None)

    def failure(self) -> None:
        self._outcomes.append(False)
        failures = self._outcomes.count(False)
        if failures >= self.min_failures and failures * 2 >= len(self._outcomes) and not self._tripped:
            self._trip(failures)

    def _trip(self, failures: int) -> None:
        cooldown = min(self.max_cooldown, self.base_cooldown * 2**self._opened)
        self._tripped, self._open_until = True, time.monotonic() + cooldown
        self._opened += 1
        log.warning("%d of the last %d requests failed: holding off for %.0fs, then one probe",
                    failures, len(self._outcomes), cooldown)

    def success(self) -> None:
        self._outcomes.append(True)
        if self._outcomes.count(False) * 2 < len(self._outcomes):
            self._opened = 0

    @property
    def is_open(self) -> bool:
        """Requests are held off now: cooling down, or a probe is out."""
        return self._tripped and (self._open_until > time.monotonic() or self._probe is not None)
