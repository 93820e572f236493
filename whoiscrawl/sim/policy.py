"""Per-registry rate-limit policies, keyed by client source address, with a time-scale factor."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from whoiscrawl.rirs import REGISTRIES


@dataclass(frozen=True)
class Policy:
    """One registry's published (or chosen) limits per source address, at time scale 1.

    Every request counts, redirects and errors included. A token bucket of `burst` tokens
    refilled at `rate_per_s` answers 429 when empty. Optional extras:
    - block_s: an empty bucket starts a block of that length (LACNIC: ~10/minute, then 5 minutes).
    - max_connections: concurrent requests in flight per address (RIPE NCC: 3).
    - daily_cap: lookups per address per day; past it, blocked until the day ends.
    - personal_cap: personal-data sets (WHOIS contact objects; `-r` and RDAP serve none) per
      address per day; the query that crosses it is refused and the address blocked until the day
      ends, and after `permanent_after` such blocks for `permanent_s` (RIPE NCC 1,000, blocks made
      permanent when repeated; AFRINIC 5,000, more than 10 blocks: a year).
    - strikes/ban_s: that many 429s inside strike_window_s earn a ban, each longer than the last.
    - retry_after: 429s carry Retry-After (RIPE NCC's carry none, only a JSON error body).
    """

    registry: str
    rate_per_s: float
    burst: int
    max_connections: int | None = None
    block_s: float | None = None
    daily_cap: int | None = None
    strikes: int | None = None
    strike_window_s: float = 60.0
    ban_s: tuple[float, ...] = ()
    personal_cap: int | None = None
    permanent_after: int | None = None
    permanent_s: float = 0.0
    retry_after: bool = True
    rate_limit_notice: bool = False  # LACNIC puts a "Rate Limit Notice" in the JSON body
    latency_ms: float = 100.0  # median service time of a lookup (lognormal, sigma 0.4)


POLICIES: dict[str, Policy] = {
    "arin": Policy("arin", rate_per_s=15.0, burst=30, latency_ms=120.0),
    "ripencc": Policy("ripencc", rate_per_s=10.0, burst=20, max_connections=3, personal_cap=1000,
                      permanent_after=3, permanent_s=10 * 365 * 86_400.0, retry_after=False,
                      latency_ms=80.0),
    "apnic": Policy("apnic", rate_per_s=10.0, burst=20, latency_ms=150.0),
    "lacnic": Policy("lacnic", rate_per_s=10.0 / 60.0, burst=10, block_s=300.0,
                     rate_limit_notice=True, latency_ms=250.0),
    "afrinic": Policy("afrinic", rate_per_s=2.0, burst=10, personal_cap=5000, permanent_after=11,
                      permanent_s=365 * 86_400.0, strikes=20, strike_window_s=60.0,
                      ban_s=(60.0, 600.0, 3600.0, 86_400.0), latency_ms=300.0),
}
DAY_S = 86_400.0


def limits(time_scale: float = 1.0) -> dict[str, dict[str, Any]]:
    """What each registry allows per source address, after time-scaling (rates x, windows /)."""
    x = float(time_scale)
    out: dict[str, dict[str, Any]] = {}
    for r in REGISTRIES:
        p = POLICIES[r]
        out[r] = {
            "rate_per_s": p.rate_per_s * x,
            "burst": p.burst,
            "max_connections": p.max_connections,
            "block_s": p.block_s / x if p.block_s else None,
            "daily_cap": p.daily_cap,
            "personal_cap": p.personal_cap,
            "day_s": DAY_S / x if p.daily_cap or p.personal_cap else None,
            "ban_s": [b / x for b in p.ban_s] or None,
            "latency_ms": p.latency_ms / x,
        }
    return out


@dataclass
class Verdict:
    """A limiter's answer for one request."""

    allowed: bool
    retry_after: float = 0.0
    outcome: str = "ok"  # ok | rate_limited | blocked
    notice: bool = False


@dataclass
class _State:
    tokens: float
    last: float
    blocked_until: float = 0.0
    day_start: float = 0.0
    day_count: int = 0
    personal: int = 0  # personal-data sets served today
    personal_blocks: int = 0
    strikes: list[float] = field(default_factory=list)
    bans: int = 0
    inflight: int = 0


class Limiter:
    """Rate-limit state of every (registry, source address) pair."""

    def __init__(self, time_scale: float = 1.0, enabled: bool = True) -> None:
        self.x = float(time_scale)
        self.enabled = enabled
        self.states: dict[tuple[str, str], _State] = {}

    def _state(self, registry: str, source: str, now: float) -> _State:
        key = (registry, source)
        st = self.states.get(key)
        if st is None:
            st = self.states[key] = _State(tokens=float(POLICIES[registry].burst), last=now,
                                           day_start=now)
        return st

    def check(self, registry: str, source: str, now: float) -> Verdict:
        """Count one request; say whether it may be answered."""
        if not self.enabled:
            return Verdict(True)
        p = POLICIES[registry]
        x = self.x
        st = self._state(registry, source, now)
        self._new_day(p, st, now)
        if now < st.blocked_until:
            return Verdict(False, st.blocked_until - now, "blocked", p.rate_limit_notice)
        rate = p.rate_per_s * x
        # Requests are counted at their arrival, and one read a little after another may have
        # arrived a little before it: time never runs backwards in the bucket.
        st.tokens = min(float(p.burst), st.tokens + max(0.0, now - st.last) * rate)
        st.last = max(st.last, now)
        if p.daily_cap is not None and st.day_count >= p.daily_cap:
            st.blocked_until = st.day_start + DAY_S / x
            return Verdict(False, st.blocked_until - now, "blocked")
        if st.tokens < 1.0:
            if p.block_s is not None:
                st.blocked_until = now + p.block_s / x
                return Verdict(False, p.block_s / x, "blocked", p.rate_limit_notice)
            if p.strikes is not None:
                window = p.strike_window_s / x
                st.strikes = [t for t in st.strikes if now - t < window]
                st.strikes.append(now)
                if len(st.strikes) >= p.strikes and p.ban_s:
                    ban = p.ban_s[min(st.bans, len(p.ban_s) - 1)] / x
                    st.bans += 1
                    st.strikes.clear()
                    st.blocked_until = now + ban
                    return Verdict(False, ban, "blocked")
            return Verdict(False, (1.0 - st.tokens) / rate, "rate_limited", p.rate_limit_notice)
        st.tokens -= 1.0
        st.day_count += 1
        return Verdict(True)

    def _new_day(self, p: Policy, st: _State, now: float) -> None:
        day = DAY_S / self.x
        if (p.daily_cap is not None or p.personal_cap is not None) and now - st.day_start >= day:
            st.day_start += day * math.floor((now - st.day_start) / day)
            st.day_count = st.personal = 0

    def personal(self, registry: str, source: str, now: float, sets: int) -> Verdict:
        """Count the personal-data sets an admitted query is about to be served; refuse it (and
        block the address until the day ends, or for good once blocked often) past the cap."""
        p = POLICIES[registry]
        if not self.enabled or p.personal_cap is None or sets <= 0:
            return Verdict(True)
        st = self._state(registry, source, now)
        self._new_day(p, st, now)
        if st.personal + sets <= p.personal_cap:
            st.personal += sets
            return Verdict(True)
        st.personal_blocks += 1
        st.blocked_until = st.day_start + DAY_S / self.x
        if p.permanent_after is not None and st.personal_blocks >= p.permanent_after:
            st.blocked_until = now + p.permanent_s / self.x
        return Verdict(False, st.blocked_until - now, "blocked")

    def acquire(self, registry: str, source: str, now: float) -> bool:
        """Take a connection slot (RIPE NCC's 3 per address); False if none is free."""
        p = POLICIES[registry]
        st = self._state(registry, source, now)
        if self.enabled and p.max_connections is not None and st.inflight >= p.max_connections:
            return False
        st.inflight += 1
        return True

    def release(self, registry: str, source: str) -> None:
        st = self.states.get((registry, source))
        if st is not None and st.inflight > 0:
            st.inflight -= 1
