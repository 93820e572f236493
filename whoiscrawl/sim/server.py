"""The simulator: one scenario's registries on 127.0.0.1, its layers put together.

Each layer is a module of its own: RDAP over HTTP and the published files (`rdap_service.py`),
port-43 WHOIS (`whois_service.py`), the policy every request meets first, arrival order, limits
and connection slots (`admission.py`), the answers of a misbehaving registry (`fault_answers.py`)
and the request log (`requestlog.py`). This module owns the world they serve (it moves on by
day), the addresses, the simulator's own endpoints and the life cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from whoiscrawl.rirs import BY_ID, REGISTRIES
from whoiscrawl.sim import policy, published, relations, render
from whoiscrawl.sim.admission import Admission
from whoiscrawl.sim.arrival import BACKLOG
from whoiscrawl.sim.data import load_iana
from whoiscrawl.sim.faults import Faults
from whoiscrawl.sim.model import World
from whoiscrawl.sim.rdap_service import RdapService
from whoiscrawl.sim.requestlog import RequestLog
from whoiscrawl.sim.scenarios import Scenario
from whoiscrawl.sim.whois_service import WhoisService

_RENDER_CACHE_MAX = 60_000
ARIN_LISTING_LIMIT = BY_ID["arin"].whois_listing_limit or 0


@dataclass(frozen=True)
class SimConfig:
    """How a simulator serves its scenario: where (ports 0: any free one), how fast its policies
    run (`time_scale`), its faults, its request log (None: a temporary file), whether its limits
    and service latency apply, its relation search (row limit, ARIN's or not), and the most networks
    an ARIN WHOIS listing answers (ARIN's 256; 0: no cap)."""

    host: str = "127.0.0.1"
    port: int = 0
    whois_port: int = 0
    time_scale: float = 1.0
    faults: Faults | None = None
    log_path: str | Path | None = None
    limits_enabled: bool = True
    latency: bool = True
    row_limit: int = relations.ROW_LIMIT
    arin_relation_search: bool = True
    arin_listing_limit: int = ARIN_LISTING_LIMIT


class Simulator:
    """RDAP + WHOIS for one scenario on 127.0.0.1, with limits, faults and a request log."""

    def __init__(self, scenario: Scenario, config: SimConfig = SimConfig()) -> None:
        self.scenario = scenario
        self.world: World = scenario.world()
        self.host, self.port, self.whois_port = config.host, config.port, config.whois_port
        self.time_scale = float(config.time_scale)
        self.t0 = time.time()
        faults = config.faults or Faults(time_scale=self.time_scale, t0=self.t0)
        faults.t0 = self.t0
        self.gate = Admission(faults, self.time_scale, config.limits_enabled, config.latency)
        self.row_limit = config.row_limit
        self.relation_registries = relations.registries(config.arin_relation_search)
        self.arin_listing_limit = config.arin_listing_limit
        log_path = config.log_path
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix=f"whoiscrawl-sim-{scenario.name}-", suffix=".jsonl")
            os.close(fd)
        self.log = RequestLog(Path(log_path))
        self._cache: dict[int, bytes] = {}
        self._runner: web.AppRunner | None = None
        self._whois: asyncio.Server | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._bootstrap = b""
        self._iana = load_iana()
        self.files = published.Files(scenario, self.world)
        self.rdap = RdapService(self)
        self.whois = WhoisService(self, self._iana)

    @property
    def faults(self) -> Faults:
        """The faults served now (`admission.py` decides by them); set anew, they apply at once."""
        return self.gate.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self.gate.faults = faults

    @property
    def limiter(self) -> policy.Limiter:
        """Every (registry, source address)'s limits state (`policy.py`)."""
        return self.gate.limiter

    @property
    def day(self) -> int:
        return self.scenario.day

    def advance(self, days: int = 1) -> list[dict[str, Any]]:
        """Move the registries `days` days on (`churn.py`): every later answer and published file is
        of the new day's world; returns the changes made, a dict each."""
        if days < 0:
            raise ValueError(f"advance by {days} days: the simulated world only moves forward")
        made: list[dict[str, Any]] = []
        for _ in range(days):
            self.scenario = self.scenario.on_day(self.scenario.day + 1)
            made += [c.to_dict() for c in self.scenario.changes()]
        self.world = self.scenario.world()
        self.files = published.Files(self.scenario, self.world)
        self._cache.clear()
        return made

    # addresses --------------------------------------------------------------------------
    @property
    def root(self) -> str:
        return f"http://{self.host}:{self.port}"

    def base_url(self, registry: str) -> str:
        return f"{self.root}{render.BASE_PATHS[registry]}"

    @property
    def files_base(self) -> str:
        """Where the registries' published files are: `rirs.published_at(url, files_base)`."""
        return f"{self.root}/published"

    @property
    def bootstrap_url(self) -> str:
        return f"{self.root}/bootstrap/ipv4.json"

    def info(self) -> dict[str, Any]:
        return {
            "bootstrap_url": self.bootstrap_url,
            "whois": f"{self.host}:{self.whois_port}",
            "scenario": self.scenario.name,
            "seed": self.scenario.seed,
            "day": self.scenario.day,
            "ranges": list(self.scenario.ranges),
            "limits": policy.limits(self.time_scale),
            "log": str(self.log.path),
            "time_scale": self.time_scale,
            "relation_search": {"registries": sorted(self.relation_registries),
                                "row_limit": self.row_limit},
            "whois_listing_limit": {"arin": self.arin_listing_limit},
            "rdap": {r: self.base_url(r) for r in REGISTRIES},
            "published": self.files_base,
            "file_faults": {r: sorted(k) for r, k in self.faults.files.items()},
        }

    def bootstrap_doc(self) -> dict[str, Any]:
        services = []
        for r in REGISTRIES:
            prefixes = [f"{row.octet}.0.0.0/8" for row in self._iana if row.registry == r]
            services.append([prefixes, [self.base_url(r)]])
        return {"version": "1.0", "publication": "2018-10-13T00:00:00Z",
                "description": f"whoiscrawl simulator ({self.scenario.name}): RDAP bootstrap "
                               "file for IPv4 address allocations",
                "services": services}

    # lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application()
        self.rdap.routes(app)
        app.router.add_get("/bootstrap/ipv4.json", self._bootstrap_handler)
        app.router.add_get("/sim/info", self._info_handler)
        app.router.add_post("/sim/advance", self._advance_handler)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        rdap_sock = self.gate.arrivals.listen(self.host, self.port)
        await web.SockSite(self._runner, rdap_sock, backlog=BACKLOG).start()
        self.port = rdap_sock.getsockname()[1]
        self._bootstrap = json.dumps(self.bootstrap_doc(), indent=1).encode()
        self._whois = await asyncio.start_server(self.whois.connection, sock=self.gate.arrivals.listen(
            self.host, self.whois_port), backlog=BACKLOG)
        self.whois_port = self._whois.sockets[0].getsockname()[1]
        self._flusher = asyncio.create_task(self._flush_loop())
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        if self._whois is not None:
            self._whois.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._whois.wait_closed(), 2)
        if self._runner is not None:
            await self._runner.cleanup()
        self.rdap.searches.shutdown(wait=False, cancel_futures=True)
        self.log.close()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.log.flush()

    # the simulator's own endpoints ---------------------------------------------------------
    async def _bootstrap_handler(self, request: web.Request) -> web.Response:
        return web.Response(body=self._bootstrap, content_type="application/json")

    async def _info_handler(self, request: web.Request) -> web.Response:
        return web.json_response(self.info())

    async def _advance_handler(self, request: web.Request) -> web.Response:
        """`POST /sim/advance?days=N` (default 1): the world N days on; the day and its changes."""
        days = request.query.get("days", "1")
        if not days.isdigit():
            return web.json_response({"error": f"days={days!r}: give a whole number of days"}, status=400)
        made = await asyncio.to_thread(self.advance, int(days))
        return web.json_response({"day": self.scenario.day, "changes": made})

    def render(self, obj: int) -> bytes:
        body = self._cache.get(obj)
        if body is None:
            if len(self._cache) >= _RENDER_CACHE_MAX:
                self._cache.clear()
            reg, base = self.world.registry(obj), self.base_url(self.world.registry(obj))
            links = relations.links(self.world, obj, base) if reg in self.relation_registries else None
            body = render.rdap_bytes(self.world, obj, base, links)
            self._cache[obj] = body
        return body


def describe(sim: Simulator) -> str:
    """The first stdout line of `sim serve`."""
    return json.dumps(sim.info(), separators=(",", ":"))


__all__ = ["SimConfig", "Simulator", "describe"]
