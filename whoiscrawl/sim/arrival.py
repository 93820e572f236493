"""When a request reached the simulator: the kernel's receive time of its bytes, not its loop's.

A registry counts a request against its limits when the request arrives. The simulator is one
event loop: while it is busy (a listing of a whole /8 rendered, the machine shared) requests queue
in the kernel, and counted when the loop gets to them they look like a burst that never was (the
demo's ARIN 429s). So its listening sockets ask the kernel to stamp what they receive
(`SO_TIMESTAMPNS`, inherited by every accepted connection) and read with `recvmsg`; a handler asks
`Arrivals.of(peer)` when its request's bytes came. Where the kernel gives no stamp (not Linux),
a request arrives when it is read.

The loop reads what queued while it was busy in one turn, in whatever order its sockets come;
`InOrder` lets those requests be counted in the order they arrived, as the registry would have.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import socket
import struct
import sys
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value; the module does not name it
_STAMP = socket.CMSG_SPACE(16)  # a struct timespec
BACKLOG = 1024  # connections the kernel holds for a loop that is busy (they arrive all the same)

Peer = tuple[str, int]


def _stamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("@qq", data[:16])
            return float(seconds) + nanoseconds / 1e9
    return None


class Arrivals:
    """The receive time of each open connection's latest bytes, by its peer address."""

    def __init__(self) -> None:
        self.latest: dict[Peer, float] = {}

    def of(self, peer: object) -> float:
        """When the latest bytes from `peer` (a transport's `peername`) arrived: now if unknown."""
        return self.latest.get(peer, time.time()) if isinstance(peer, tuple) else time.time()

    def listen(self, host: str, port: int) -> socket.socket:
        """A bound, listening TCP socket whose connections note when their bytes arrive."""
        sock = _Listener(self, socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if sys.platform == "linux":
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
        return sock


class _Listener(socket.socket):
    """A listening socket whose accepted connections are `_Stamped`."""

    def __init__(self, arrivals: Arrivals, *args: int) -> None:
        super().__init__(*args)
        self.arrivals = arrivals

    def accept(self) -> tuple[socket.socket, Peer]:
        fd, peer = self._accept()  # type: ignore[attr-defined]
        conn = _Stamped(self.arrivals, peer, self.family, self.type, self.proto, fd)
        if socket.getdefaulttimeout() is None and self.gettimeout():
            conn.setblocking(True)
        return conn, peer


class _Stamped(socket.socket):
    """An accepted connection that reads with `recvmsg`, noting the kernel's receive time."""

    def __init__(self, arrivals: Arrivals, peer: Peer, family: int, kind: int, proto: int,
                 fileno: int) -> None:
        super().__init__(family, kind, proto, fileno)
        self.arrivals, self.peer = arrivals, peer

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data, ancillary, _flags, _addr = self.recvmsg(bufsize, _STAMP, flags)
        self._note(ancillary)
        return data

    def recv_into(self, buffer: memoryview | bytearray, nbytes: int = 0, flags: int = 0) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        n, ancillary, _flags, _addr = self.recvmsg_into([view[:nbytes] if nbytes else view], _STAMP, flags)
        self._note(ancillary)
        return n

    def _note(self, ancillary: list[tuple[int, int, bytes]]) -> None:
        # A read without a stamp arrived now, as far as anyone knows: never an earlier request's stamp
        stamp = _stamp(ancillary)
        self.arrivals.latest[self.peer] = time.time() if stamp is None else stamp

    def close(self) -> None:
        self.arrivals.latest.pop(self.peer, None)
        super().close()


class InOrder:
    """Requests read in a few turns of the loop let on in the order they arrived: each waits for its
    turn, and turns are given out earliest arrival first, so the limits, counting each request as it
    is let on, see them as they came. The wait is `TURNS` turns of the loop: a connection accepted
    in a turn is read some turns later than those already open, and what it carried may have
    arrived first."""

    TURNS = 4  # accepted, its transport made, its reader added, read: then its handler asks

    def __init__(self) -> None:
        self._waiting: list[tuple[float, int, asyncio.Future[None]]] = []
        self._numbers = itertools.count()  # ties: first read, first let on

    async def turn(self, arrived: float) -> None:
        loop = asyncio.get_running_loop()
        if not self._waiting:  # the first to wait starts the count of turns
            loop.call_soon(self._let_on, self.TURNS)
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._waiting, (arrived, next(self._numbers), future))
        await future

    def _let_on(self, turns: int) -> None:
        if turns > 1:
            asyncio.get_running_loop().call_soon(self._let_on, turns - 1)
            return
        while self._waiting:
            future = heapq.heappop(self._waiting)[2]
            if not future.done():  # a request whose client went away meanwhile is cancelled
                future.set_result(None)
