"""Fixtures for the simulator tests: a quick-scenario world and simulators started per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from whoiscrawl.sim import scenarios
from whoiscrawl.sim.faults import Faults
from whoiscrawl.sim.model import World
from whoiscrawl.sim.scenarios import Scenario
from whoiscrawl.sim.server import SimConfig, Simulator

StartSim = Callable[..., Awaitable[Simulator]]


@pytest.fixture(scope="session")
def quick() -> Scenario:
    return scenarios.get("quick")


@pytest.fixture(scope="session")
def world(quick: Scenario) -> World:
    return quick.world()


@pytest.fixture
async def start_sim(tmp_path: Path) -> AsyncIterator[StartSim]:
    """start_sim(time_scale=..., faults={...}, latency=False, ...) -> a running Simulator."""
    started: list[Simulator] = []

    async def start(time_scale: float = 1.0, faults: dict[str, Any] | None = None,
                    latency: bool = False, limits: bool = True, scenario: Scenario | None = None,
                    **options: Any) -> Simulator:
        """`scenario`: another than `quick`; `options`: further SimConfig fields (row_limit=,
        arin_relation_search=)."""
        scen = scenario or scenarios.get("quick")
        f = Faults.from_doc(faults or {}, time_scale=time_scale)
        sim = Simulator(scen, SimConfig(time_scale=time_scale, faults=f, latency=latency,
                                        limits_enabled=limits, log_path=tmp_path / f"log{len(started)}.jsonl",
                                        **options))
        await sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.stop()


FindAddress = Callable[..., tuple[str, int]]


@pytest.fixture(scope="session")
def find_address(world: World, quick: Scenario) -> FindAddress:
    """find_address(registry, noncidr=, with_parent=) -> (address, object) in the quick ranges."""
    return lambda registry, **kw: _find(world, quick, registry, **kw)


def _find(world: World, scen: Scenario, registry: str, *, noncidr: bool = False,
          with_parent: bool = False) -> tuple[str, int]:
    from whoiscrawl.ipv4 import cidr_blocks, ip_str

    for first, last in scen.intervals:
        for a, _b, obj in world.segments(first, last):
            if obj < 0 or world.registry(obj) != registry or world.is_placeholder(obj):
                continue
            if noncidr and len(cidr_blocks(world.start[obj], world.end[obj])) < 2:
                continue
            if with_parent and world.parent[obj] < 0:
                continue
            return ip_str(a), obj
    raise LookupError(f"no suitable object for {registry}")
