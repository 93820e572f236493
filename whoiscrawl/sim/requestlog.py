"""The simulator's request log: every request a registry was sent, one JSON line each."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Asked:
    """One request as the log names it: to which registry, from which address, for what, by which
    protocol (`rdap`, `help`, a relation, `whois`, `whois-m`, ...)."""

    registry: str
    source: str
    address: str
    protocol: str


class RequestLog:
    """Buffered JSONL log of every lookup; flushed every second and at stop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._buf: list[str] = []
        self.count = 0

    def write(self, t: float, source: str, registry: str | None, address: str, protocol: str,
              status: int, handle: str | None, outcome: str) -> None:
        reg = f'"{registry}"' if registry else "null"
        h = json.dumps(handle) if handle is not None else "null"
        self._buf.append(
            f'{{"t":{t:.6f},"source":"{source}","registry":{reg},"address":{json.dumps(address)},'
            f'"protocol":"{protocol}","status":{status},"handle":{h},"outcome":"{outcome}"}}\n')
        self.count += 1
        if len(self._buf) >= 5000:
            self.flush()

    def note(self, t: float, asked: Asked, status: int, handle: str | None, outcome: str) -> None:
        """`write` of one request named by `asked`."""
        self.write(t, asked.source, asked.registry, asked.address, asked.protocol, status, handle, outcome)

    def flush(self) -> None:
        if self._buf:
            self._fh.write("".join(self._buf))
            self._buf.clear()
        self._fh.flush()

    def close(self) -> None:
        self.flush()
        self._fh.close()
