"""What the benchmarks share: the simulator in a process of its own, a fresh work folder, a rate."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from whoiscrawl.rates import Limit, format_limits


@dataclass
class Simulator:
    """A running `whoiscrawl sim serve` process and what it announced on its first line."""

    proc: subprocess.Popen[str]
    info: dict[str, Any]

    @property
    def bootstrap_url(self) -> str:
        return str(self.info["bootstrap_url"])

    @property
    def whois(self) -> str:
        return str(self.info["whois"])

    @property
    def ranges(self) -> list[str]:
        return list(self.info["ranges"])

    @property
    def log(self) -> str:
        return str(self.info["log"])

    @property
    def files_base(self) -> str:
        """Where the simulated registries' published files are (`rirs.published_at(url, files_base)`)."""
        return str(self.info["published"])

    def limits(self) -> dict[str, Limit]:
        return {
            r: Limit(float(v["rate_per_s"]), v.get("max_connections")) for r, v in self.info["limits"].items()
        }

    def rate_limits_arg(self) -> str:
        return format_limits(self.limits())


def simulator_options(row_limit: int | None = None, arin_relation_search: bool = True,
                      arin_listing_limit: int | None = None) -> tuple[str, ...]:
    """`sim serve` options for the benchmark's simulator (none: the registries as they answer today)."""
    return (*(("--row-limit", str(row_limit)) if row_limit is not None else ()),
            *(() if arin_relation_search else ("--no-arin-relation-search",)),
            *(("--arin-listing-limit", str(arin_listing_limit)) if arin_listing_limit is not None else ()))


def serve_options(reads_files: bool, options: tuple[str, ...] = ()) -> list[str]:
    """`sim serve`'s options for a bench's crawl: with every published file made before it serves
    when the crawl reads them, as the registries' files exist before anyone asks (else the first
    download waits while they are made: minutes at `full`, past the download's read timeout)."""
    return [*options, *(["--prepare-files"] if reads_files else [])]


@contextlib.contextmanager
def simulator(
    scenario: str, time_scale: float, log: Path, faults: Path | None = None, extra: list[str] | None = None
) -> Iterator[Simulator]:
    """Start the registry simulator in its own process (it must not share a GIL with the crawler)."""
    cmd = [
        sys.executable,
        "-m",
        "whoiscrawl",
        "sim",
        "serve",
        "--scenario",
        scenario,
        "--time-scale",
        str(time_scale),
        "--log",
        str(log),
        *(extra or []),
    ]
    if faults:
        cmd += ["--faults", str(faults)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the simulator exited ({proc.wait()}) before announcing itself")
        yield Simulator(proc, json.loads(line))
    finally:
        stop(proc, 15)


def stop(proc: subprocess.Popen[Any], grace: float) -> int:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGCONT)  # one the chaos bench paused handles no SIGTERM
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return int(proc.returncode)


def work_folder(kind: str = "") -> Path:
    """A new folder under the system's temporary one for a run's results and logs (kept: read it after)."""
    return Path(tempfile.mkdtemp(prefix=f"whoiscrawl-bench-{kind + '-' if kind else ''}"))


def rate(count: int, run: Callable[[], Any]) -> float:
    """`count` things done by `run`, per second of its wall time."""
    started = time.perf_counter()
    run()
    return round(count / (time.perf_counter() - started), 1)


def peak_rss_mb(pid: int) -> float:
    """A live process's peak resident memory so far (Linux's VmHWM), in MB; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def descendants(pid: int) -> list[int]:
    """A live process's children, grandchildren and so on (the dumps' staging processes)."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        with contextlib.suppress(OSError):
            for child in map(int, (task / "children").read_text().split()):
                found += [child, *descendants(child)]
    return found


@dataclass
class Peaks:
    """The highest memory seen while a fleet ran, sampled as it runs: each worker process's peak
    RSS, its child processes' (staging) highest, and Redis's used memory."""

    workers: dict[int, float]
    children: float = 0.0
    redis_bytes: int = 0

    @classmethod
    def empty(cls) -> Peaks:
        return cls({})

    def sample(self, worker_pids: list[int], redis_used_bytes: int) -> None:
        for pid in worker_pids:
            self.workers[pid] = max(self.workers.get(pid, 0.0), peak_rss_mb(pid))
            for child in descendants(pid):
                self.children = max(self.children, peak_rss_mb(child))
        self.redis_bytes = max(self.redis_bytes, redis_used_bytes)

    def figures(self) -> dict[str, Any]:
        return {
            "worker_peak_rss_mb": round(max(self.workers.values(), default=0.0), 1),
            "workers_peak_rss_mb": [round(v, 1) for v in self.workers.values()],
            "staging_peak_rss_mb": round(self.children, 1),
            "redis_peak_mb": round(self.redis_bytes / 2**20, 1),
        }


def unwind_on_sigterm() -> None:
    """A SIGTERM (a CI job's timeout, `kill`) unwinds a bench as Ctrl-C does, so the `finally`s
    stop the broker, Redis, simulator and workers it started: Python's default ends the process at
    once and left them all running."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
