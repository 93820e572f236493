"""Imports point down the floors of docs/architecture.md and CONTRIBUTING.md, lazy ones included."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).parents[2]
# Where each source tree installs (pyproject's package-dir).
PACKAGES = {"whoiscrawl": "whoiscrawl", "operator": "whoiscrawl.operator", "worker": "whoiscrawl.worker"}

TOP, BENCH, WIRING, MIDDLE, IO, GROUND, CATALOGUE = 7, 6, 5, 4, 3, 2, 1
# Module (or package prefix) -> floor; the longest prefix wins. A tenth orders a chain the docs
# state within one floor ("bench/chaos.py -> bench/fleet.py": chaos imports the fleet, never the reverse).
FLOORS: dict[str, float] = {
    # entry points: the CLIs (each command's CLI included) and the kopf handlers
    "whoiscrawl.cli": TOP, "whoiscrawl.__main__": TOP, "whoiscrawl.operator.cli": TOP,
    "whoiscrawl.operator.handlers": TOP, "whoiscrawl.operator.on_": TOP, "whoiscrawl.operator.glue": TOP,
    "whoiscrawl.results.cli": TOP, "whoiscrawl.serve.cli": TOP, "whoiscrawl.history.cli": TOP,
    "whoiscrawl.dev.cli": TOP,
    "whoiscrawl.sim.cli": TOP,
    # benchmarks, and the development services beside them
    "whoiscrawl.bench": BENCH, "whoiscrawl.bench.fleet": BENCH + 0.05, "whoiscrawl.bench.serve": BENCH + 0.05,
    "whoiscrawl.bench.chaos": BENCH + 0.1, "whoiscrawl.bench.local": BENCH + 0.1,
    "whoiscrawl.bench.refresh": BENCH + 0.1,
    "whoiscrawl.dev": BENCH,
    # wiring
    "whoiscrawl.local": WIRING, "whoiscrawl.refresh": WIRING + 0.1, "whoiscrawl.worker": WIRING,
    "whoiscrawl.operator.control": WIRING + 0.1, "whoiscrawl.operator.backend": WIRING,
    # the middle: the loop, publishing, recovery, sources, serving, results
    "whoiscrawl.crawl": MIDDLE, "whoiscrawl.listing": MIDDLE, "whoiscrawl.publish": MIDDLE,
    "whoiscrawl.recover": MIDDLE,
    "whoiscrawl.sources": MIDDLE, "whoiscrawl.serve": MIDDLE + 0.1, "whoiscrawl.results": MIDDLE,
    "whoiscrawl.history": MIDDLE + 0.05,  # above results (it reads and diffs maps), below serve
    "whoiscrawl.dashboards": MIDDLE,
    # I/O: registries (client -> relations, whois -> rdap -> contacts, outcome), Redis, Kafka, budgets
    "whoiscrawl.registry": IO + 0.4, "whoiscrawl.registry.client": IO + 0.4,
    "whoiscrawl.registry.relations": IO + 0.3, "whoiscrawl.registry.whois": IO + 0.3,
    "whoiscrawl.registry.rdap": IO + 0.2, "whoiscrawl.registry.contacts": IO + 0.1,
    "whoiscrawl.registry.outcome": IO + 0.1, "whoiscrawl.registry.breaker": IO + 0.1,
    "whoiscrawl.store": IO, "whoiscrawl.queue": IO, "whoiscrawl.ratelimit": IO,
    "whoiscrawl.redis_client": IO, "whoiscrawl.operator.kube": IO, "whoiscrawl.operator.leader": IO,
    # the ground: pure models (blocks -> strategy), the operator's pure parts
    "whoiscrawl.blocks": GROUND + 0.1, "whoiscrawl.strategy": GROUND, "whoiscrawl.space": GROUND,
    "whoiscrawl.keys": GROUND, "whoiscrawl.rates": GROUND, "whoiscrawl.records": GROUND,
    "whoiscrawl.delegated": GROUND, "whoiscrawl.sources.stats": GROUND,  # the one statistics parser: pure
    "whoiscrawl.metrics": GROUND, "whoiscrawl.schemas": GROUND, "whoiscrawl.secrets": GROUND,
    "whoiscrawl.settings": GROUND,  # the settings contract: imports nothing of ours
    "whoiscrawl.operator": GROUND,  # spec, knobs, builders, scaling, status, crd, health, metrics, ...
    "whoiscrawl.rirs": CATALOGUE, "whoiscrawl.ipv4": CATALOGUE,  # both import nothing of ours
    # the simulator: its own tower beside the core (SIM_READS below)
    "whoiscrawl.sim": BENCH,
}
# The simulator reads only the catalogue, the address arithmetic (and the record schema) of the
# core; the core never imports the simulator, the benchmarks, the development tools and the entry
# points do.
SIM_READS = (
    "whoiscrawl.rirs", "whoiscrawl.ipv4", "whoiscrawl.records", "whoiscrawl.schemas", "whoiscrawl.sim",
)
SIM_READERS = (
    "whoiscrawl.bench", "whoiscrawl.dev", "whoiscrawl.sim",
)
# dev/ imports nothing of the core but the simulator's data.
DEV_READS = ("whoiscrawl.dev", "whoiscrawl.sim.data")

# Known exceptions, each (importer, imported): why it stands. Kept to this one list; empty is the goal.
EXCEPTIONS: dict[tuple[str, str], str] = {}


def _floor(module: str) -> float:
    if module == "whoiscrawl":  # the package's __init__: empty
        return CATALOGUE
    best = max((p for p in FLOORS if module == p or module.startswith(p + ".") or
                (p.endswith("_") and module.startswith(p))), key=len, default=None)
    assert best is not None, f"{module} sits on no floor: add it to FLOORS (and to docs/architecture.md)"
    return FLOORS[best]


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


@cache
def modules() -> dict[str, Path]:
    found = {}
    for tree, package in PACKAGES.items():
        for path in (ROOT / tree).rglob("*.py"):
            parts = list(path.relative_to(ROOT / tree).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def imports(module: str) -> list[tuple[int, str]]:
    """(line, our module) of every import in the module, at the top or inside a function."""
    path, known = modules()[module], modules()
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package
                base = module.split(".")[: len(module.split(".")) - node.level + (path.name == "__init__.py")]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:  # `from pkg import module` imports that module
                full = f"{source}.{alias.name}"
                out.append((node.lineno, full if full in known else source))
    return [(line, name) for line, name in out if _within(name, ("whoiscrawl",))]


def _why(module: str, name: str) -> str | None:
    """What is wrong with `module` importing `name`; None: nothing. Entry points may import the
    simulator and dev/ (they are its commands), not anything above themselves."""
    entry = _floor(module) >= TOP
    if _within(name, ("whoiscrawl.sim",)) and not entry and not _within(module, SIM_READERS):
        return "the core never imports the simulator"
    if _within(module, ("whoiscrawl.sim",)) and not entry and not _within(name, SIM_READS):
        return "the simulator reads only rirs, ipv4, records and schemas of the core"
    if _within(module, ("whoiscrawl.dev",)) and not entry and not _within(name, DEV_READS):
        return "dev/ imports nothing of the core but the simulator's data"
    if _within(module, ("whoiscrawl.results",)) and not entry and _within(name, ("whoiscrawl.operator",)):
        return "results import nothing of the operator: the CLI picks a backend and passes it down"
    if not _within(name, ("whoiscrawl.sim",)) and _floor(name) > _floor(module):
        return f"floor {_floor(module):g} imports floor {_floor(name):g}"
    return None


def violations() -> list[str]:
    found = []
    for module in sorted(modules()):
        for line, name in imports(module):
            why = _why(module, name)
            if why and (module, name) not in EXCEPTIONS:
                found.append(f"{modules()[module].name}:{line}: {module} imports {name}: {why}")
    return found


def test_every_import_points_down_the_floors():
    assert violations() == []


def test_the_exceptions_are_still_needed():
    """A known exception that no longer occurs is taken off the list."""
    seen = {(m, name) for m in modules() for _, name in imports(m)}
    assert [pair for pair in EXCEPTIONS if pair not in seen] == []


def test_the_check_sees_an_upward_import_even_a_lazy_one(tmp_path, monkeypatch):
    """The check itself can fail: a ground-floor module importing the loop inside a function."""
    fake = tmp_path / "blocks.py"
    fake.write_text("def f():\n    from whoiscrawl import crawl\n    return crawl\n")
    monkeypatch.setitem(modules(), "whoiscrawl.blocks", fake)
    assert [v for v in violations() if "whoiscrawl.blocks imports whoiscrawl.crawl" in v]
