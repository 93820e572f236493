"""bench-scale's slices of `full` and its profile summary (the crawls themselves are the benchmark)."""

from __future__ import annotations

import asyncio
import cProfile

from whoiscrawl.bench.local import _ThreadProfiles, profile_summary, slice_ranges
from whoiscrawl.sim import scenarios
from whoiscrawl.space import registry_for


def test_slices_take_a_share_of_every_registrys_slash_8s():
    whole = scenarios.get("full").ranges
    assert sorted(slice_ranges(1.0)) == sorted(whole)
    sizes = [len(slice_ranges(f)) for f in (1 / 64, 1 / 16, 1 / 4, 1.0)]
    assert sizes == sorted(sizes) and sizes[0] >= 5 and abs(sizes[2] - len(whole) / 4) <= 5
    for fraction in (1 / 64, 1 / 16):
        taken = slice_ranges(fraction)
        assert set(taken) <= set(whole)
        assert {registry_for(int(r.split(".")[0]) << 24) for r in taken} >= {
            "afrinic", "apnic", "arin", "lacnic", "ripencc"}


def spin(n: int) -> int:
    return sum(i * i for i in range(n))


def test_the_profile_summary_names_the_work_of_every_thread_not_the_loops_plumbing():
    threads, main = _ThreadProfiles(), cProfile.Profile()

    async def crawl() -> None:
        spin(20_000)
        await asyncio.to_thread(spin, 400_000)  # in a pool thread: cProfile alone would miss it

    with threads.watching():
        main.enable()
        asyncio.run(crawl())
        main.disable()
    top = profile_summary(threads.merged(main))
    times = [r["cumulative_s"] for r in top]
    assert len(top) == 5 and times == sorted(times, reverse=True)
    assert "spin" in top[0]["function"] and top[0]["calls"] == 2
    assert not any("asyncio/" in r["function"] or "threading.py" in r["function"] for r in top)


def test_sources_other_than_the_three_are_refused_before_any_simulator_starts(tmp_path):
    from typer.testing import CliRunner

    from whoiscrawl.cli import app

    result = CliRunner().invoke(app, ["bench-scale", "--sources", "stats,ftp", "--workdir", str(tmp_path)])
    assert result.exit_code == 2 and "use one or more of stats, dumps, live" in result.output
    assert not list(tmp_path.iterdir())


def test_no_slices_crawls_the_baseline_alone(tmp_path, monkeypatch):
    """The peak memory of `quick` and `standard` without building `full`'s world for its slices."""
    from typer.testing import CliRunner

    from whoiscrawl.bench import common, local
    from whoiscrawl.cli import app

    asked: list[list[float]] = []
    monkeypatch.setattr(common, "unwind_on_sigterm", lambda: None)  # (this process's SIGTERM left alone)
    monkeypatch.setattr(local, "scale_benchmark", lambda fractions, *_: asked.append(fractions) or iter([]))
    result = CliRunner().invoke(app, ["bench-scale", "--baseline", "quick", "--no-slices", "--workdir",
                                      str(tmp_path)])
    assert result.exit_code == 0 and asked == [[]]
