"""What one request to a registry came to: a small outcome type, and the two errors of the client."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class MalformedAnswer(ValueError):
    """The registry answered, but not with a usable network object for the address."""


class AnswerTooLarge(MalformedAnswer):
    """An answer over the client's cap (bytes of a body, lines of WHOIS text, rows of a listing)."""


class LookupFailed(RuntimeError):
    """Every attempt (RDAP with retries, then WHOIS) failed; the text says why, and `registry` which
    registry failed last (a transferred block's holder, not the registry asked first; None: none
    was asked)."""

    def __init__(self, message: str, registry: str | None = None) -> None:
        super().__init__(message)
        self.registry = registry


class Kind(Enum):
    """How a request ended; the value is its metrics label."""

    ANSWER = "ok"
    NOT_FOUND = "not_found"
    REDIRECT = "redirect"
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "error"  # a 5xx, a reset, a timeout: worth another try
    MALFORMED = "malformed"  # an answer, but no usable one
    TOO_MANY_ROWS = "too_many_rows"  # a search refused for its size (RIPE NCC: HTTP 400 "Too Many Rows")


@dataclass(frozen=True)
class Outcome:
    """One attempt's result: `value` is the parsed answer (ANSWER), the target (REDIRECT) or why it
    failed (TRANSIENT, MALFORMED); `egress` is the address the attempt was charged to."""

    kind: Kind
    value: Any = None
    retry_after: float = 0.0
    egress: str = ""

    @property
    def unanswered(self) -> bool:
        """The registry gave no answer (errors, 429s) where another try later may get one."""
        return self.kind in (Kind.TRANSIENT, Kind.RATE_LIMITED)

    @property
    def settled(self) -> bool:
        """An answer, a not-found, a redirect or a refusal for size: nothing to retry."""
        return self.kind in (Kind.ANSWER, Kind.NOT_FOUND, Kind.REDIRECT, Kind.TOO_MANY_ROWS)
