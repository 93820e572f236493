"""`whoiscrawl status` of a local crawl: progress, registries, rate and ETA from its checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from whoiscrawl.cli import app

from .test_results_summary import record, write

COUNTERS = {"shards_total": 4, "shards_done": 2, "lookups": 40, "blocks": 3, "addresses_total": 4 * 65536,
            "addresses_done": 2 * 65536 + 4096, "rate_limited": 1, "errors": 0, "wasted": 0}


WALKED = (12 << 24) + (1 << 16) + 4096  # the next address the walk of 12.1.0.0/16 probes


def crawl_files(tmp_path: Path, done: int = 2) -> Path:
    out = write(tmp_path / "crawl.jsonl", [
        record("193.0.0.0/16", fetched_at="2026-12-01T10:00:00+00:00"),
        record("12.0.0.0/16", registry="arin", fetched_at="2026-12-01T10:00:01+00:00"),
        record("12.1.0.0/20", registry="arin", fetched_at="2026-12-01T10:00:02+00:00", source="whois"),
    ])
    state = {"counters": {**COUNTERS, "shards_done": done},
             # a walk's checkpoint: cursor/resolved-up-to/backward probes owed (strategy.SweepWalk)
             "cursors": {} if done == 4 else {"12.1.0.0-12.1.255.255": f"{WALKED}/-1/"},
             "done": ["193.0.0.0-193.0.255.255", "12.0.0.0-12.0.255.255"]}
    checkpoint = tmp_path / "crawl.jsonl.checkpoint.json"
    checkpoint.write_text(json.dumps(state))
    started = 1796119200.0  # 2026-12-01T10:00:00Z
    os.utime(checkpoint, (started + 100, started + 100))
    return out


def test_status_of_a_crawl_in_progress(tmp_path: Path):
    out = crawl_files(tmp_path)
    result = CliRunner().invoke(app, ["status", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert not doc["complete"] and doc["shards"] == {"done": 2, "total": 4}
    assert doc["progress"] == round((2 * 65536 + 4096) / (4 * 65536), 6)
    arin = {"shards_done": 1, "shards_active": 1, "addresses_done": 65536 + 4096, "blocks": 2}
    assert doc["by_registry"]["arin"] == arin
    assert doc["by_registry"]["ripencc"]["shards_done"] == 1
    assert doc["by_source"] == {"rdap": 2, "whois": 1}
    # 135,168 addresses in the 100 s since the first result: 1,351.7/s, 126,976 to go
    assert doc["addresses_per_s"] == 1351.7 and abs(doc["eta_s"] - 126976 / 1351.68) < 0.2
    table = CliRunner().invoke(app, ["status", str(tmp_path / "crawl.jsonl.checkpoint.json")])
    assert "ETA" in table.output and "1.6 min" in table.output and "arin" in table.output
    assert "source: whois" in table.output


def test_watch_follows_until_complete(tmp_path: Path):
    out = crawl_files(tmp_path)
    cmd = [sys.executable, "-m", "whoiscrawl", "status", str(out), "--watch", "--interval", "0.2", "--json"]
    watch = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert watch.stdout is not None
    first = watch.stdout.readline()  # the crawl finishes once the watch has had its first look
    crawl_files(tmp_path, done=4)
    rest, err = watch.communicate(timeout=60)
    assert watch.returncode == 0, err
    looks = [json.loads(line) for line in (first + rest).strip().splitlines()]
    assert len(looks) >= 2 and not looks[0]["complete"]
    assert looks[-1]["complete"] and looks[-1]["eta_s"] == 0.0
    table = CliRunner().invoke(app, ["status", str(out), "--watch", "--interval", "0.1"])
    assert table.exit_code == 0 and "complete" in table.output


def test_status_without_a_checkpoint(tmp_path: Path):
    result = CliRunner().invoke(app, ["status", str(tmp_path / "none.jsonl")],
                                env={"KUBECONFIG": str(tmp_path / "no-kubeconfig")})
    assert result.exit_code == 2 and "no local crawl" in result.output
