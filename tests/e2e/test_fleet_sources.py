"""The fleet from the published files: the simulator's statistics and dumps loaded once for the
whole fleet, then only what they lack crawled live; a loader killed mid-load loses nothing and
sends nothing twice (real workers, Kafka, Redis; docs/sources.md)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
from whoiscrawl.worker.fill import FleetFill

from whoiscrawl.bench.common import Simulator
from whoiscrawl.bench.fleet import SWEEP, Fleet, FleetRun, FleetShape, crawl_with_fleet
from whoiscrawl.keys import Keys

from .conftest import score

pytestmark = pytest.mark.slow

FROM_FILES = dataclasses.replace(SWEEP, sources=frozenset({"stats", "dumps", "live"}))


def blocks(results: Path) -> set[tuple[str, str]]:
    return {(r["start_address"], r["end_address"]) for r in map(json.loads, results.open())}


def from_files(results: Path) -> Counter[tuple[str, str, str]]:
    """How often each record read from a file (a dump's, the statistics') is on the results (not
    one with a field filled live after it, `filled`: LACNIC's abuse addresses from its contacts)."""
    rows = map(json.loads, results.open())
    return Counter((r["start_address"], r["end_address"], r["source"]) for r in rows
                   if r["source"] in ("dump", "stats") and "filled" not in r)


def filled(results: Path) -> set[tuple[str, str, str]]:
    """Each record with a field filled live (LACNIC's abuse addresses from their contacts)."""
    return {(r["start_address"], r["end_address"], ",".join(r["abuse_emails"]))
            for r in map(json.loads, results.open()) if "filled" in r}


class FillWatch:
    """A fleet crawl's fill, watched in Redis at each poll once the load is done: the fill's batches
    not answered yet, and the plan's shards started (owned, or done)."""

    def __init__(self, redis_url: str) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.seen: list[tuple[int, int]] = []  # (batches left, the plan's shards started)

    def __call__(self, fleet: Fleet, progress: object) -> None:
        keys = Keys(fleet.crawl)
        if not self.client.hexists(keys.sources, "done"):
            return
        batches = {k.decode() for k in self.client.hkeys(keys.fill)}
        done = {m.decode() for m in self.client.smembers(keys.done)}
        started = {k.decode() for k in self.client.hkeys(keys.owners)} | done
        self.seen.append((len(batches - done), len({s for s in started if not s.startswith("fill:")})))


def entities_asked(log: Path, since: int) -> Counter[str]:
    """The entities (contacts) the simulator was asked for after line `since` of its request log."""
    time.sleep(1.5)  # it writes its log out once a second
    lines = log.read_text().splitlines()[since:]
    return Counter(json.loads(line)["address"] for line in lines if json.loads(line)["protocol"] == "entity")


def log_lines(log: Path) -> int:
    time.sleep(1.5)
    return len(log.read_text().splitlines())


@pytest.fixture(scope="module")
def files_run(services, quick_sim, tmp_path_factory) -> tuple[FleetRun, FillWatch, Counter[str]]:
    """A calm fleet crawl of `quick` from the simulator's published files: the run, its fill as
    watched, and the entities it asked."""
    watch, since = FillWatch(services.redis_url), log_lines(Path(quick_sim.log))
    run = crawl_with_fleet(quick_sim, services.kafka_bootstrap, services.redis_url,
                           tmp_path_factory.mktemp("files"), FROM_FILES, timeout=600, during=watch)
    assert run.finished
    return run, watch, entities_asked(Path(quick_sim.log), since)


def test_the_fleet_from_the_files_finds_what_the_local_crawl_does_for_far_fewer_lookups(
    services, quick_sim, files_run, tmp_path
):
    """Same recall as the local crawl from the same files, per registry; far fewer lookups than the
    same fleet crawling live alone (both counted by the crawl's own counters, in this run)."""
    files_run, _, _ = files_run
    (tmp_path / "live").mkdir()
    live = crawl_with_fleet(quick_sim, services.kafka_bootstrap, services.redis_url, tmp_path / "live",
                            SWEEP, timeout=600)
    out = tmp_path / "local.jsonl"
    cmd = [sys.executable, "-m", "whoiscrawl", "crawl", *quick_sim.ranges, "--out", str(out),
           "--bootstrap-url", quick_sim.bootstrap_url, "--rate-limits", quick_sim.rate_limits_arg(),
           "--whois", quick_sim.whois, "--files-base", quick_sim.files_base, "--accept-dump-terms", "all",
           "--no-progress", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    fleet, local = score(files_run.results), score(out)
    print(json.dumps({"fleet_files": files_run.progress.lookups, "fleet_live": live.progress.lookups,
                      "local_files": json.loads(done.stdout.splitlines()[-1])["lookups"],
                      "recall_fleet": fleet["recall_resolution"],
                      "recall_local": local["recall_resolution"]}))
    assert live.finished and files_run.progress.errors == 0
    assert fleet["recall_resolution"] >= local["recall_resolution"]
    for registry, row in local["recall_by_registry"].items():
        assert fleet["recall_by_registry"][registry]["recall"] >= row["recall"], registry
    assert files_run.progress.lookups * 2 <= live.progress.lookups
    assert max(from_files(files_run.results).values()) == 1  # each file's record sent once


def _pid_of(holder: bytes) -> int:
    """The process id in a lease's holder, `<token>/<host>-<pid>-<hex>/<nonce>`."""
    owner = holder.decode().split("/")[1]
    return int(owner.rsplit("-", 2)[1])


def test_a_loader_killed_mid_batch_loses_nothing_and_sends_nothing_twice(
    services, quick_sim, files_run, tmp_path
):
    """SIGKILL the worker loading the files while a batch is on its way to the broker: another
    worker takes the load over once its lease lapses, and the crawl ends with the calm crawl's
    blocks, each file's record on the results exactly once."""
    files_run, _, _ = files_run
    client = redis.Redis.from_url(services.redis_url)
    killed: list[dict[str, str]] = []

    def kill_the_loader(fleet: Fleet, progress: object) -> None:
        if killed:
            return
        keys = Keys(fleet.crawl)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # closer than the fleet's poll: a batch takes ~0.1 s
            holder = client.get(keys.sources_lease)
            state = {k.decode(): v.decode() for k, v in client.hgetall(keys.sources).items()}
            if holder and "inflight" in state and "done" not in state:
                [i] = [i for i, p in enumerate(fleet.procs) if p.pid == _pid_of(holder)]
                fleet.kill(i)
                killed.append({k.decode(): v.decode() for k, v in client.hgetall(keys.sources).items()})
                return
            time.sleep(0.005)
        raise AssertionError("no load was seen under way")

    run = crawl_with_fleet(quick_sim, services.kafka_bootstrap, services.redis_url, tmp_path, FROM_FILES,
                           timeout=600, during=kill_the_loader)
    assert killed and "done" not in killed[0], killed
    assert run.finished
    assert blocks(run.results) == blocks(files_run.results)
    assert from_files(run.results) == from_files(files_run.results)  # nothing lost, nothing twice


def test_a_fleet_asks_the_delegation_the_statistics_list_in_special_purpose_space_and_nothing_else_there(
    services, quick_sim, tmp_path
):
    """Real workers from the statistics: ARIN's AS112 block 192.175.48.0/24 (special-purpose, an
    `assigned` row of ARIN's statistics) is planned by the load and walked (before, the operator's
    plan left it out and no fleet asked it); TEST-NET-1 beside it in the ranges is asked nothing."""
    scope = ["192.175.48.0/22", "192.0.2.0/24"]
    sim = Simulator(quick_sim.proc, {**quick_sim.info, "ranges": scope})
    stats_live = dataclasses.replace(SWEEP, sources=frozenset({"stats", "live"}))
    run = crawl_with_fleet(sim, services.kafka_bootstrap, services.redis_url, tmp_path, stats_live,
                           FleetShape(workers=1), timeout=300)
    assert run.finished and run.progress.shards_total == run.shards + 1  # the load's shard, walked
    records = {(r["start_address"], r["end_address"]): r for r in map(json.loads, run.results.open())}
    as112 = records["192.175.48.0", "192.175.48.255"]
    assert (as112["registry"], as112["source"]) == ("arin", "rdap")
    deadline = time.monotonic() + 10  # the simulator writes its request log out once a second
    while True:
        asked = [json.loads(line)["address"] for line in Path(quick_sim.log).read_text().splitlines()]
        if any(a.startswith("192.175.48.") for a in asked) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert any(a.startswith("192.175.48.") for a in asked)
    assert not [a for a in asked if a.startswith("192.0.2.")]


def test_the_fill_is_asked_by_every_worker_while_the_walk_goes_on(files_run):
    """The fill of LACNIC's abuse addresses and the freshness sample are work for every worker (the
    fill topic's batches), asked beside the walk: its first shards start while batches of the fill
    are still to answer, more than one worker answers batches, and each contact is asked once
    (before: the loader asked them all before `done`, while every other worker waited to walk)."""
    run, watch, entities = files_run
    assert any(left and started for left, started in watch.seen), watch.seen
    assert run.loaded is not None
    fill = {r: d["freshness"] for r, d in run.loaded["dumps"].items()}
    assert fill["lacnic"]["by_contact"] > 0 and fill["lacnic"]["lookups"] > 0
    assert all(f["answered"] == f["batches"] for f in fill.values()), fill
    workers = {w for f in fill.values() for w in f["by_worker"]}
    assert len(workers) >= 2, fill
    # Once, but for a request in flight when its batch moved (the loader, subscribed first, gives
    # most partitions up within a second): before the last caller's cancellation took the request
    # with it, a batch moved had its contacts asked all the same (43 of `standard`'s 389 twice)
    again = sum(n - 1 for n in entities.values())
    assert entities and again <= FleetFill.concurrency, entities.most_common(3)


def test_a_worker_killed_while_it_asks_a_batch_of_the_fill_loses_nothing_and_asks_nothing_twice(
    services, quick_sim, files_run, tmp_path
):
    """SIGKILL a worker while it asks a batch of the fill: the batch's next owner goes on from its
    checkpoint; the crawl ends with the calm crawl's records filled, every batch answered, and no
    contact answered asked again."""
    calm, _, _ = files_run
    client = redis.Redis.from_url(services.redis_url)
    killed: list[str] = []

    def kill_a_filler(fleet: Fleet, progress: object) -> None:
        if killed:
            return
        keys = Keys(fleet.crawl)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            asking = {k.decode(): v for k, v in client.hgetall(keys.owners).items() if k.startswith(b"fill:")}
            cursors = {k.decode() for k in client.hkeys(keys.cursors)}
            mid = [b for b in asking if b in cursors]  # a batch part answered
            if mid:
                [i] = [i for i, p in enumerate(fleet.procs) if p.pid == _pid_of(asking[mid[0]])]
                fleet.kill(i)
                killed.append(mid[0])
                return
            time.sleep(0.005)
        raise AssertionError("no batch of the fill was seen part answered")

    since = log_lines(Path(quick_sim.log))
    run = crawl_with_fleet(quick_sim, services.kafka_bootstrap, services.redis_url, tmp_path, FROM_FILES,
                           timeout=600, during=kill_a_filler)
    entities = entities_asked(Path(quick_sim.log), since)
    assert killed and run.finished
    assert run.loaded is not None
    assert all(d["freshness"]["answered"] == d["freshness"]["batches"] for d in run.loaded["dumps"].values())
    assert filled(run.results) == filled(calm.results)  # nothing lost
    # Nothing answered is asked again: at most what the killed worker had in flight (before, the
    # loader taking over asked the whole fill again)
    again = sum(n - 1 for n in entities.values())
    assert entities and again <= FleetFill.concurrency, entities.most_common(5)
