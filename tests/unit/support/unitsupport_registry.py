"""A registry on 127.0.0.1 for the client's tests: each path prefix answers with its handler."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web


class Registry:
    """A registry on 127.0.0.1: each path answers with its handler; every request is noted."""

    def __init__(self, routes: dict[str, Callable[[web.Request], Any]]) -> None:
        self.routes, self.seen = routes, []  # type: list[str]
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request.path_qs)
        for prefix, handler in self.routes.items():
            if request.path.startswith(prefix):
                return await handler(request)
        return web.Response(status=404)

    async def start(self) -> Registry:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/a/"
