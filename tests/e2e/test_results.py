"""The result commands on a real crawl of `quick`: summary against the score, export, map, diff."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from whoiscrawl.cli import app
from whoiscrawl.sim import scenarios

from .conftest import score
from .test_local_crawl import crawl_cmd


@pytest.fixture(scope="module")
def quick_results(quick_sim, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The results of one local crawl of `quick`."""
    out = tmp_path_factory.mktemp("results") / "quick.jsonl"
    done = subprocess.run(crawl_cmd(quick_sim, out), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["complete"]
    yield out


def summary_json(path: Path, *extra: str) -> dict:
    result = CliRunner().invoke(app, ["summary", str(path), "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_summary_coverage_agrees_with_the_score(quick_results: Path, tmp_path: Path):
    scope = [f"--scope={r}" for r in scenarios.get("quick").ranges]
    # Where the crawl found every child (every registry that lists them), summary's addresses covered
    # (the union of the blocks found) is the score's address coverage (the truth's most specific
    # answers found). LACNIC lists no children, so some of its small networks go unfound and its
    # allocations answer for them: leave LACNIC out of both, and the two figures are one.
    without = tmp_path / "without-lacnic.jsonl"
    lines = [line for line in quick_results.open() if json.loads(line)["registry"] != "lacnic"]
    without.write_text("".join(lines))
    got, want = summary_json(without, *scope)["coverage"], score(without)["address_coverage"]
    assert 0.9 < want < 1.0
    assert round(got, 4) == round(want, 4)
    # With LACNIC, summary counts the allocations' unfound children as covered: an upper bound.
    whole = summary_json(quick_results, *scope)
    assert whole["coverage"] >= score(quick_results)["address_coverage"] >= 0.99
    assert whole["duplicates"] == whole["records"] - whole["blocks"] >= 0
    assert set(whole["by_registry"]) == {"arin", "ripencc", "apnic", "lacnic", "afrinic"}


def test_demo_ends_with_tables_and_its_json_is_behind_a_flag(tmp_path: Path):
    out = tmp_path / "demo.jsonl"
    cmd = [sys.executable, "-m", "whoiscrawl", "demo", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    text = done.stdout
    assert "blocks found" in text and "address coverage" in text and "recall" in text
    assert "{" not in text  # no JSON for people
    assert len(text.splitlines()) < 30
