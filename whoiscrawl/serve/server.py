"""`whoiscrawl serve`: the map as an RDAP server (aiohttp), with a batch endpoint, probes and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson
import uvloop
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from whoiscrawl import metrics, rirs
from whoiscrawl.history.store import LATEST, HistoryError, Store, date_text, map_at, moment, parse_date
from whoiscrawl.results.source import ColumnReader, ResultsError, results_file
from whoiscrawl.serve import rdap
from whoiscrawl.serve.index import READ, MapIndex, MapIndexError, build, load_or_build, released, stamp_of
from whoiscrawl.serve.lookup import BATCH, write

log = logging.getLogger(__name__)
RDAP_TYPE = "application/rdap+json"
CACHED_NETWORKS = 1 << 16  # rendered network objects kept (a few KB each)
Reloader = Callable[[], "MapIndex | None"]  # a new index, or None while the results are unchanged
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AsOf = Callable[[date], "tuple[MapIndex, str]"]  # the index current on a date, and its generation's date
GENERATIONS_KEPT = 4  # indexes of past generations kept in memory (a ?at= query loads its own)


_BASES = {f"/{r}/": r for r in rirs.REGISTRIES}


def _asked(path: str) -> str | None:
    """The registry whose base a path is under (`/ripencc/ip/...`), or None (the root)."""
    return _BASES.get(path[: path.find("/", 1) + 1])


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status,
                        content_type=RDAP_TYPE)


def _error(status: int, title: str, description: str) -> web.Response:
    return _json(rdap.error(status, title, description), status)


class MapServer:
    """The index behind RDAP routes at `/` and under each registry's base (`/<registry>/`, what the
    bootstrap document names). Every `reload_s` seconds `reload` (in a thread) may hand over a new
    index (`file_reloader`, `topic_reloader`), which is answered from then on."""

    def __init__(self, index: MapIndex, reload: Reloader | None = None, reload_s: float = 0.0,
                 as_of: AsOf | None = None) -> None:
        self.reload, self.reload_s, self.as_of = reload, reload_s, as_of
        self._reloader: asyncio.Task[None] | None = None
        self._meters: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._use(index)

    def _use(self, index: MapIndex) -> None:
        """Answer from `index` from now on. Rendered networks are kept (an object is the same bytes
        every time it is asked for, and rendering costs more than the rest of a request)."""
        self.index = index

        @functools.lru_cache(maxsize=CACHED_NETWORKS)
        def rendered(net: int, base: str) -> bytes:
            return orjson.dumps(rdap.network(index, net, base))

        self._rendered = rendered
        index.buckets()  # made now, not by the first query
        self._publish_gauges()

    def _publish_gauges(self) -> None:
        metrics.SERVE_NETWORKS.set(len(self.index))
        metrics.SERVE_INDEX_BYTES.set(self.index.nbytes)
        observed = self.index.observed
        try:
            metrics.SERVE_MAP_OBSERVED.set(datetime.fromisoformat(observed).timestamp() if observed else 0)
        except ValueError:
            metrics.SERVE_MAP_OBSERVED.set(0)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._measured])
        for prefix in ["/", *(f"/{r}/" for r in rirs.REGISTRIES)]:
            app.router.add_get(prefix + "ip/{key}", self.ip)
            app.router.add_get(prefix + "ip/{key}/{plen}", self.ip)
            app.router.add_get(prefix + "ips/rirSearch1/{rel}/{key:.+}", self.relation)
            app.router.add_get(prefix + "help", self.help)
        app.router.add_post("/batch", self.batch)
        app.router.add_get("/bootstrap/ipv4.json", self.bootstrap)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.healthz)
        app.on_startup.append(self._start_reloader)
        app.on_cleanup.append(self._stop_reloader)
        return app

    @web.middleware
    async def _measured(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every answer counted and timed; every failure an RDAP error object, the server serving on."""
        started = time.perf_counter()
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        try:
            response = await handler(request)
        except rdap.QueryError as exc:
            response = _error(exc.status, exc.title, exc.description)
        except web.HTTPException as exc:  # no such route, wrong method: still an RDAP error object
            response = _error(exc.status, exc.reason, f"{request.method} {request.path}: {exc.reason}")
        except Exception as exc:  # a bug must not take the server down: log it, answer 500
            log.exception("answering %s failed", request.path)
            response = _error(500, "Internal Server Error", f"{type(exc).__name__} while answering")
        meters = self._meters.get((route, response.status))
        if meters is None:  # a metric's labelled child looked up once per route and status, not per request
            meters = self._meters[route, response.status] = (
                metrics.SERVE_REQUESTS.labels(route, str(response.status)),
                metrics.SERVE_SECONDS.labels(route))
        meters[0].inc()
        meters[1].observe(time.perf_counter() - started)
        return response

    def _base(self, request: web.Request) -> str:
        """This answer's base URL: the registry base it was asked under, else the root."""
        registry = _asked(request.path)
        return f"{request.scheme}://{request.host}/" + (f"{registry}/" if registry else "")

    async def _index(self, request: web.Request) -> tuple[MapIndex, dict[str, Any] | None]:
        """The index a query is answered from: the current one, or with `?at=DATE` the generation
        current on that date (and a notice saying which)."""
        text = request.query.get("at") if request.query_string else None  # parse no query there is none of
        if text is None:
            return self.index, None
        if self.as_of is None:
            raise rdap.QueryError(400, "Bad Request", "this mirror keeps no history: ?at= needs a server "
                                  "started with --history DIR")
        try:
            day = parse_date(text, "at")
        except HistoryError:
            raise rdap.QueryError(400, "Bad Request", f"at={text!r} is not a date: give YYYY-MM-DD or "
                                  "YYYY-MM-DDTHH:MM:SSZ") from None
        index, generation = await asyncio.to_thread(self.as_of, day)
        return index, {"title": "As of", "description": [
            f"Answered from the map of {generation}, the generation current on {text}."]}

    async def ip(self, request: web.Request) -> web.Response:
        """RFC 9082 `ip/<address>` and `ip/<prefix>/<len>`: the most specific network holding it. Asked
        under another registry's base, a network redirects to its own registry's, as registries do."""
        key = request.match_info["key"]
        plen = request.match_info.get("plen")
        first, last = rdap.parse_key(f"{key}/{plen}" if plen is not None else key)
        index, as_of = await self._index(request)
        net = index.containing(first, last)
        if net < 0:
            return _error(404, "Not Found", f"no network in the map holds {key}"
                          + (f"/{plen}" if plen is not None else ""))
        asked = _asked(request.path)
        holder = index.value(net, "registry")
        if asked and holder != asked and holder in rirs.REGISTRIES:
            moved = request.path.replace(f"/{asked}/", f"/{holder}/", 1)
            query = f"?{request.query_string}" if request.query_string else ""
            return web.Response(status=301, headers={
                "Location": f"{request.scheme}://{request.host}{moved}{query}"})
        if as_of is None:
            return web.Response(body=self._rendered(net, self._base(request)), content_type=RDAP_TYPE)
        doc = rdap.network(index, net, self._base(request))
        doc["notices"].append(as_of)
        return _json(doc)

    async def relation(self, request: web.Request) -> web.Response:
        """RFC 9910 relation search; 404 when nothing is related."""
        rel = request.match_info["rel"]
        first, last = rdap.parse_key(request.match_info["key"])
        index, as_of = await self._index(request)
        nets = rdap.relation(index, rel, first, last)
        if not len(nets):
            return _error(404, "Not Found", f"no network is {rel} of {request.match_info['key']}")
        base = self._base(request)
        if rel in ("rdap-up", "rdap-top"):
            doc = rdap.network(index, int(nets[0]), base)
        else:
            doc = rdap.search_results(index, nets, base)
        if as_of is not None:
            doc["notices"].append(as_of)
        return _json(doc)

    async def help(self, request: web.Request) -> web.Response:
        return _json(rdap.help_document(self.index))

    async def bootstrap(self, request: web.Request) -> web.Response:
        return web.json_response(rdap.bootstrap(f"{request.scheme}://{request.host}/"))

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def batch(self, request: web.Request) -> web.StreamResponse:
        """Addresses one a line in, an answer a line out (JSON), in order, BATCH at a time: a body of
        any size is read and answered in pieces, so memory stays flat."""
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        lines: list[str] = []
        async for raw in request.content:
            lines.append(raw.decode("utf-8", "replace"))
            if len(lines) == BATCH:
                await response.write(_answer_lines(self.index, lines))
                lines = []
        await response.write(_answer_lines(self.index, lines))
        await response.write_eof()
        return response

    async def _start_reloader(self, app: web.Application) -> None:
        if self.reload is not None and self.reload_s > 0:
            self._reloader = asyncio.create_task(self._reload_loop())

    async def _stop_reloader(self, app: web.Application) -> None:
        if self._reloader is not None:
            self._reloader.cancel()

    async def _reload_loop(self) -> None:
        """Follow results a crawl is still writing: a new index when they changed, the old one
        answering meanwhile (and on, if the new one cannot be had)."""
        assert self.reload is not None
        while True:
            await asyncio.sleep(self.reload_s)
            try:
                index = await asyncio.to_thread(self.reload)
            except (MapIndexError, ResultsError, OSError, ValueError) as exc:
                log.warning("keeping the current index: %s", exc)
                continue
            if index is not None:
                log.info("now answering from %d networks", len(index))
                self._use(index)


def file_reloader(results: Path) -> Reloader:
    """A results file's index again whenever the file's size or modification time changed."""
    seen = [stamp_of(results)]

    def reload() -> MapIndex | None:
        now = stamp_of(results)
        if (now == seen[0]).all():
            return None
        index, _ = load_or_build(results)
        seen[0] = now
        return index

    return reload


def history_as_of(store_dir: Path) -> AsOf:
    """The index of the generation current on a date, from a history store (read again at each
    query, so generations added or pruned meanwhile count); the last few kept in memory."""

    @functools.lru_cache(maxsize=GENERATIONS_KEPT)
    def of_generation(generation: str, rebuilt: Path) -> MapIndex:
        return load_or_build(rebuilt)[0]

    def as_of(day: date) -> tuple[MapIndex, str]:
        try:
            store = Store.open(store_dir)
            if store.generations and moment(day, end=True) < store.generations[0].day:
                raise rdap.QueryError(404, "Not Found", f"no map as of {date_text(day)}: it is before "
                                      f"the first kept generation, {store.generations[0].date}")
            generation = store.at(day).date
            return of_generation(generation, map_at(store, day)), generation
        except HistoryError as exc:
            log.warning("cannot answer as of %s: %s", date_text(day), exc)
            raise rdap.QueryError(503, "Service Unavailable",
                                  f"the history cannot be read ({date_text(day)})") from exc

    return as_of


def history_reloader(store_dir: Path) -> Reloader:
    """The newest generation's index whenever a newer generation was added."""
    seen = [Store.open(store_dir).at(LATEST).date]

    def reload() -> MapIndex | None:
        store = Store.open(store_dir)
        newest = store.at(LATEST)
        if newest.date == seen[0]:
            return None
        index, _ = load_or_build(map_at(store, newest.day))
        seen[0] = newest.date
        return index

    return reload


def following(reload: Reloader, follow: Callable[[], object] | None) -> Reloader:
    """`reload`, each time after `follow` (the history's topic read into its store: new generations
    appear in `?at=` and, without RESULTS, as the newest map, with no restart); None: `reload`."""
    if follow is None:
        return reload

    def reload_after() -> MapIndex | None:
        follow()
        return reload()

    return reload_after


def topic_reloader(spec: str, kafka_bootstrap: str | None, topic_prefix: str) -> Reloader:
    """A crawl's results topic read again whole, and indexed if it holds more records than before
    (a compacted topic only grows in records a crawl adds or changes)."""
    seen = [-1]

    def reload() -> MapIndex | None:
        with results_file(spec, kafka_bootstrap, topic_prefix) as path:
            reader = ColumnReader(path, READ)
            index = released(build(reader))  # the parse is most of the cost: building as it reads
        if reader.records == seen[0]:
            return None
        seen[0] = reader.records
        return index

    return reload


def _answer_lines(index: MapIndex, lines: list[str]) -> bytes:
    buf = io.StringIO()
    write(index, lines, "json", buf)
    return buf.getvalue().encode()


def run(server: MapServer, host: str, port: int, ready: Callable[[int], None] | None = None,
        workers: int = 1) -> None:
    """Serve until interrupted; `ready(port)` once listening (port 0 picks a free one). With
    workers > 1 the process forks after the index is loaded (the children share its pages), each
    process with a listening socket of its own on the one port (SO_REUSEPORT: the kernel spreads new
    connections over them evenly, where processes accepting from one socket take them as they wake,
    so a burst of connections could land on one): aiohttp answers on one core per process."""
    socks = [socket.create_server((host, port), backlog=4096, reuse_port=workers > 1)]
    socks += [socket.create_server((host, socks[0].getsockname()[1]), backlog=4096, reuse_port=True)
              for _ in range(workers - 1)]
    children: list[int] = []
    signal.signal(signal.SIGTERM, _interrupted)  # stop as on ^C: the workers are stopped too
    try:
        for sock in socks[1:]:
            pid = os.fork()
            if pid == 0:  # a worker: serve until the parent is gone or it is told to stop
                _work(server, sock, [other for other in socks if other is not sock])
            children.append(pid)
            sock.close()  # the worker's: a socket no process accepts on would hold its share
        uvloop.run(_serve_on(server, socks[0], ready))
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
        socks[0].close()


def _work(server: MapServer, sock: socket.socket, others: list[socket.socket]) -> None:
    """A forked worker: answer on its own socket until the parent is gone or it is told to stop."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a terminal's ^C goes to the parent's care
    for other in others:
        other.close()
    try:
        uvloop.run(_serve_on(server, sock, None, parent=os.getppid()))
    finally:
        os._exit(0)


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


async def _serve_on(server: MapServer, sock: socket.socket, ready: Callable[[int], None] | None,
                    parent: int | None = None) -> None:
    stop = asyncio.Event()
    if parent is None:  # SIGTERM and ^C stop the first process (and it its workers) through the loop:
        # uvloop runs a Python signal handler only when Python code next runs, which may be never
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    if ready:
        ready(sock.getsockname()[1])
    try:
        while not stop.is_set() and (parent is None or os.getppid() == parent):  # no orphaned worker
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        await runner.cleanup()
