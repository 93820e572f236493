"""The simulator's policy layer: what every request meets before its answer, whatever its protocol.

Requests are let on in the order they arrived (`arrival.py`), a fault is decided for each
(`faults.py`), the registry's limits and connection cap are counted (`policy.py`), and an admitted
request waits the registry's service time; the protocol layers (`rdap_service.py`,
`whois_service.py`) say a refusal in their own words.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from whoiscrawl.sim import policy
from whoiscrawl.sim.arrival import Arrivals, InOrder
from whoiscrawl.sim.faults import Decision, Faults


@dataclass(frozen=True)
class Refusal:
    """A request refused with a 429 before its answer: why (`fault`: a storm or ban; `limit`: the
    registry's limits, with its notice or not; `connections`: its connection cap), the outcome
    logged and when to ask again."""

    why: str
    outcome: str
    retry_after: float
    notice: bool = False


class Admission:
    """Arrival order, faults, limits, connection slots and service time of one simulator."""

    def __init__(self, faults: Faults, time_scale: float, limits: bool = True, latency: bool = True) -> None:
        self.faults = faults
        self.time_scale = time_scale
        self.limiter = policy.Limiter(time_scale, enabled=limits)
        self.latency = latency
        self.arrivals = Arrivals()  # when each request's bytes came: what the limits count
        self.in_order = InOrder()  # ... and in that order, however the loop read them

    def arrived(self, peer: object) -> float:
        """When the request from `peer` came (`arrival`): a registry counts it then, not when it
        gets to it."""
        return self.arrivals.of(peer)

    async def fault(self, registry: str, src: str, now: float, protocol: str,
                    address: int | None) -> Decision:
        """The request's turn (in arrival order), then the fault configured for it, if any."""
        await self.in_order.turn(now)
        return self.faults.decide(registry, src, now, protocol, address)

    def refuse(self, registry: str, src: str, now: float, fault: Decision) -> Refusal | None:
        """A refusal for a fault storm or ban, the registry's limits or its connection cap; None
        admits the request, which then holds a connection slot until `release`."""
        if fault.kind in ("storm", "ban"):
            return Refusal("fault", "fault", fault.retry_after)
        verdict = self.limiter.check(registry, src, now)
        if not verdict.allowed:
            return Refusal("limit", verdict.outcome, verdict.retry_after, verdict.notice)
        if not self.limiter.acquire(registry, src, now):
            return Refusal("connections", "rate_limited", 1.0 / self.time_scale)
        return None

    def latency_s(self, registry: str) -> float:
        if not self.latency:
            return 0.0
        return self.faults.latency_s(registry, policy.POLICIES[registry].latency_ms)

    async def service_time(self, registry: str) -> None:
        """The registry's latency for one answer (none to speak of: no sleep at all)."""
        delay = self.latency_s(registry)
        if delay > 0.0005:
            await asyncio.sleep(delay)

    def release(self, registry: str, src: str) -> None:
        """Give back an admitted request's connection slot."""
        self.limiter.release(registry, src)
