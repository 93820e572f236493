"""What one request to a registry came to: a small outcome type, and the two errors of the client."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class MalformedAnswer(ValueError):
    """The registry answered, but not with a usable network object for the address."""


class AnswerTooLarge(MalformedAnswer):
    """An answer over the client's cap (bytes of a body, lines of WHOIS text, rows of a listing);
    `partial`: what was read of it (the cap's worth, for its dead letter)."""

    def __init__(self, message: str, partial: bytes = b"") -> None:
        super().__init__(message)
        self.partial = partial


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
    # HTTP 501: the server does not implement that query (RFC 9083 error codes; RIPE NCC answers it for
    # `status` on down or bottom): asking again gets the same, so it is settled, never retried.
    NOT_IMPLEMENTED = "not_implemented"


SETTLED = frozenset({Kind.ANSWER, Kind.NOT_FOUND, Kind.REDIRECT, Kind.TOO_MANY_ROWS, Kind.NOT_IMPLEMENTED})


@dataclass(frozen=True)
class Received:
    """An answer as it came: what was asked (an RDAP URL, `whois://server/query`) and its bytes, as
    far as they were read (`whole` False: cut at the client's cap); of a spooled one (`spool.py`),
    its first bytes, `size` saying how many it had."""

    asked: str
    body: bytes
    whole: bool = True
    size: int | None = None  # None: len(body)


@dataclass(frozen=True)
class Outcome:
    """One attempt's result: `value` is the parsed answer (ANSWER), the target (REDIRECT) or why it
    failed (TRANSIENT, MALFORMED); `egress` is the address the attempt was charged to; `received`
    the answer's bytes, where the registry answered with a body the parsers read or refused."""

    kind: Kind
    value: Any = None
    retry_after: float = 0.0
    egress: str = ""
    received: Received | None = None

    @property
    def unreadable(self) -> bool:
        """An answer came, and no parser could read it (a dead letter): not JSON, malformed, too big."""
        return self.received is not None and self.kind in (Kind.TRANSIENT, Kind.MALFORMED)

    @property
    def unanswered(self) -> bool:
        """The registry gave no answer (errors, 429s) where another try later may get one."""
        return self.kind in (Kind.TRANSIENT, Kind.RATE_LIMITED)

    @property
    def settled(self) -> bool:
        """An answer, a not-found, a redirect, a refusal for size or a query not implemented: nothing
        to retry."""
        return self.kind in SETTLED
