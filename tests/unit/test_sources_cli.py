"""`whoiscrawl crawl --sources`: the options, the dumps' opt-in, and a crawl from files alone."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from whoiscrawl.cli import app

PUBLISHED = Path(__file__).parent.parent / "data" / "published"


def _crawl(tmp_path: Path, *extra: str) -> tuple[int, str]:
    tmp_path.mkdir(exist_ok=True)
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(app, ["crawl", "193.0.0.0/20", "--out", str(out), "--json", "-q",
                                      "--files-base", str(PUBLISHED), *extra])
    return result.exit_code, result.output


def test_unknown_sources_and_registries_are_refused_by_name(tmp_path: Path):
    code, output = _crawl(tmp_path, "--sources", "stats,ftp")
    assert code == 2 and "use one or more of stats, dumps, live" in output
    code, output = _crawl(tmp_path, "--sources", "dumps", "--accept-dump-terms", "ripe")
    assert code == 2 and "unknown registries ['ripe']" in output


def test_a_dump_with_terms_is_read_only_once_they_are_accepted(tmp_path: Path):
    code, output = _crawl(tmp_path, "--sources", "stats,dumps")
    doc = json.loads(output)
    # no dump read: the one block is the statistics' free space (193.0.11.0/24 reserved, 12.0/22 available)
    assert code == 0 and doc["blocks"] == 1 and "ripencc" not in doc["dumps"]
    assert any("needs --accept-dump-terms ripencc" in n for n in doc["notes"])
    code, output = _crawl(tmp_path / "accepted", "--sources", "stats,dumps", "--accept-dump-terms", "ripencc",
                          "--verify", "0")
    doc = json.loads(output)
    assert code == 0 and doc["dumps"]["ripencc"]["serial"] == "41234567"
    assert doc["dumps"]["ripencc"]["in_scope"] == 3 and doc["dumps"]["apnic"]["in_scope"] == 0
    records = [json.loads(line) for line in (tmp_path / "accepted" / "r.jsonl").read_text().splitlines()]
    assert {r["handle"] for r in records if r["source"] == "dump"} == {
        "193.0.0.0 - 193.0.7.255", "193.0.8.0 - 193.0.10.255", "193.0.9.0 - 193.0.9.255"}
    free = [(r["start_address"], r["end_address"]) for r in records if r["source"] == "stats"]
    assert free == [("193.0.11.0", "193.0.15.255")]
    assert {r["source"] for r in records} == {"dump", "stats"} and doc["lookups"] == 0
    # without live nothing is asked, though one network lacks a holder (--fill-redacted is on)
    assert doc["dumps"]["ripencc"]["freshness"] == {"asked": 0, "fields": {}}


def test_a_resume_refuses_statistics_older_than_the_crawl_used(tmp_path: Path):
    """The plan and the free space came from the statistics a crawl read first: on --resume, an
    older file (a mirror behind) is refused by name, and nothing of the crawl is written."""
    import hashlib
    import shutil

    files = tmp_path / "published"
    shutil.copytree(PUBLISHED, files)
    out = tmp_path / "r.jsonl"
    args = ["crawl", "193.0.0.0/20", "--out", str(out), "--json", "-q", "--files-base", str(files),
            "--sources", "stats"]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert CliRunner().invoke(app, [*args, "--resume"]).exit_code == 0  # the same files: fine
    stats = files / "ftp.ripe.net/pub/stats/ripencc/delegated-ripencc-extended-latest"
    text = stats.read_text().replace("2|ripencc|1790287199|", "2|ripencc|1790287100|", 1)
    stats.write_text(text)
    Path(f"{stats}.md5").write_text(f"MD5 ({stats.name}) = {hashlib.md5(text.encode()).hexdigest()}\n")
    before = (out.read_bytes(), Path(f"{out}.checkpoint.json").read_bytes())
    result = CliRunner().invoke(app, [*args, "--resume"])
    assert result.exit_code == 2
    assert "ripencc statistics: serial 1790287100 is older than 1790287199, which this crawl already used" \
        in " ".join(result.output.split())
    assert (out.read_bytes(), Path(f"{out}.checkpoint.json").read_bytes()) == before  # nothing overwritten
