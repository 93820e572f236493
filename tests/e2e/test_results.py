"""The result commands on a real crawl of `quick`: summary against the score, export, map, diff."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from whoiscrawl.cli import app
from whoiscrawl.sim import scenarios
from whoiscrawl.store.memory import read_checkpoint

from .conftest import score
from .test_local_crawl import crawl_cmd

pytestmark = pytest.mark.slow  # crawls of `quick` (the calm one shared, the demo's, a watched one)

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
    out, temp = tmp_path / "demo.jsonl", tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}  # what the demo leaves in the temporary folder, seen
    cmd = [sys.executable, "-m", "whoiscrawl", "demo", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    # the simulator's request log is deleted once scored (before 2026-12-07 every demo left its
    # whoiscrawl-demo-* folder in /tmp); nothing else is left there either
    assert sorted(p.name for p in temp.iterdir()) == []
    text = done.stdout
    assert "blocks found" in text and "address coverage" in text and "recall" in text
    assert "{" not in text  # no JSON for people
    # two short tables: the crawl's (with a row for the sources and one per registry dump read,
    # wrapped over two lines) and the score's; a page, not a log
    assert len(text.splitlines()) < 40
    log = tmp_path / "kept" / "requests.jsonl"  # ... unless asked to keep it
    quiet = subprocess.run([*cmd, "--json", "--quiet", "--log", str(log)], capture_output=True, text=True,
                           timeout=600, env=env)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr[-2000:]
    assert sorted(p.name for p in temp.iterdir()) == []
    doc = json.loads(quiet.stdout)
    kept = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(kept) >= doc["crawl"]["lookups"] > 0  # every lookup, and the published files fetched
    assert doc["crawl"]["complete"] and doc["score"]["recall_resolution"] == 1.0
    # Polite: not one 429 in the simulator's log (before 2026-12-06 its stalled loop counted ARIN
    # requests when it read them, not when they arrived, and 9-37 were refused a run)
    assert doc["score"]["rate_limited"] == 0 and doc["crawl"]["rate_limited"] == 0


def map_pixel(image, address: int, size: int = 4096) -> tuple[int, int, int] | None:
    """The colour at an address's pixel, or None where the /8 grid or its labels are drawn over it."""
    from whoiscrawl.results.hilbert import pixel_of
    from whoiscrawl.results.ipmap import layout

    if under_overlay(address, size):
        return None
    x, y = pixel_of(address, size)
    return image.getpixel((x, y + layout(size)[0]))


def under_overlay(address: int, size: int = 4096) -> bool:
    """Whether the /8 grid or a label is drawn over the address's pixel."""
    from whoiscrawl.results.hilbert import pixel_of

    x, y = pixel_of(address, size)
    side = size // 16
    return x % side in (0, side - 1) or y % side in (0, side - 1) or (x % side < 60 and y % side < 36)


def test_map_colours_blocks_by_registry_special_space_and_unfound_space(quick_results: Path, tmp_path: Path):
    from PIL import Image

    from whoiscrawl.ipv4 import ip_int
    from whoiscrawl.results.ipmap import NOT_FOUND, REGISTRY_COLOURS, SPECIAL
    from whoiscrawl.results.source import ResultSet

    out = tmp_path / "map.png"
    result = CliRunner().invoke(app, ["map", str(quick_results), "--out", str(out), "--by", "registry"])
    assert result.exit_code == 0, result.output
    image = Image.open(out).convert("RGB")
    assert image.size[0] > 4096 and image.size[1] > 4096  # the map, its title bar and its legend
    rs = ResultSet(quick_results, seekable=True)
    blocks = [(d["_first"], d["_last"], d["registry"]) for d in rs.nested()]
    # Leaves of a /24 or more: nothing later in hierarchy order starts inside them, so their pixels are
    # theirs.
    checked: dict[str, int] = {}
    for i, (first, last, registry) in enumerate(blocks):
        inner = i + 1 < len(blocks) and blocks[i + 1][0] <= last
        if last - first + 1 < 256 or inner:
            continue
        colour = map_pixel(image, first)
        if colour is not None:
            assert colour == REGISTRY_COLOURS[registry], (first, registry)
            checked[registry] = checked.get(registry, 0) + 1
    assert set(checked) == set(REGISTRY_COLOURS), checked
    # (addresses away from the grid and its labels)
    for special in ("10.20.30.40", "10.200.0.1", "127.200.0.1", "100.64.99.1", "198.18.100.1", "240.200.0.1"):
        assert map_pixel(image, ip_int(special)) == SPECIAL, special
    for unfound in ("8.200.0.1", "45.200.0.1", "150.100.0.1", "201.30.0.1"):
        assert not any(f <= ip_int(unfound) <= t for f, t, _ in blocks)
        assert map_pixel(image, ip_int(unfound)) == NOT_FOUND, unfound


@pytest.mark.parametrize("by", ["country", "holder", "found"])
def test_map_modes_sizes_and_svg(quick_results: Path, tmp_path: Path, by: str):
    import xml.etree.ElementTree as ET

    out = tmp_path / "map.svg"
    result = CliRunner().invoke(app, ["map", str(quick_results), "--out", str(out), "--by", by,
                                      "--size", "512", "--svg"])
    assert result.exit_code == 0, result.output
    legend = json.loads(result.output)["legend"]
    assert legend["not found"] > 0.5 and legend["special-purpose / IANA"] > 0.1
    assert len(legend) >= 3
    svg = ET.parse(out).getroot()
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert "12" in texts and any(t and t.startswith("not found") for t in texts)


def test_diff_names_exactly_the_blocks_that_changed(quick_results: Path, tmp_path: Path):
    from whoiscrawl.results.source import ResultSet

    docs = [{k: v for k, v in d.items() if not k.startswith("_")}
            for d in ResultSet(quick_results).latest()]
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    old.write_text("".join(json.dumps(d) + "\n" for d in docs))
    old_docs = list(docs)
    from whoiscrawl.ipv4 import ip_int

    # blocks whose pixel no grid line or label covers, so the map --diff below can show them
    clear = [i for i, d in enumerate(docs) if not under_overlay(ip_int(d["start_address"]))][100::100]
    hold, land, abuse, r1, r2 = clear[:5]
    changed = {docs[land]["handle"]: "country", docs[abuse]["handle"]: "abuse_emails"}
    removed = {docs[r1]["handle"], docs[r2]["handle"]}
    docs[hold] = {**docs[hold], "registrant": "A New Holder Ltd"}
    docs[land] = {**docs[land], "country": "ZZ"}
    docs[abuse] = {**docs[abuse], "abuse_emails": ["abuse@elsewhere.example"]}
    added = {**docs[0], "handle": "ADDED-1", "start_address": "9.9.9.0", "end_address": "9.9.9.255",
             "cidrs": ["9.9.9.0/24"]}
    kept = [d for d in docs if d["handle"] not in removed] + [added]
    new.write_text("".join(json.dumps(d) + "\n" for d in kept))

    result = CliRunner().invoke(app, ["diff", str(old), str(new), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    by_kind: dict[str, dict[str, list[str]]] = {}
    for c in report["changes"]:
        by_kind.setdefault(c["change"], {})[c["handle"]] = sorted(c.get("fields", {}))
    assert by_kind["changed"] == {h: [f] for h, f in changed.items()}
    assert by_kind["transferred"] == {docs[hold]["handle"]: ["holder"]}  # a new holder: a transfer
    assert set(by_kind["removed"]) == removed and set(by_kind["added"]) == {"ADDED-1"}
    assert (report["added"], report["removed"], report["changed"], report["transferred"]) == (1, 2, 2, 1)
    table = CliRunner().invoke(app, ["diff", str(old), str(new)])
    assert "ADDED-1" in table.output and "holder" in table.output and "removed" in table.output
    same = json.loads(CliRunner().invoke(app, ["diff", str(old), str(old), "--json"]).output)
    assert same["changes"] == [] and same["old_blocks"] == same["new_blocks"] == len(docs)
    # map --diff colours the same changes
    from PIL import Image

    from whoiscrawl.results.ipmap import DIFF_COLOURS

    out = tmp_path / "diff.png"
    result = CliRunner().invoke(app, ["map", "--diff", str(old), str(new), "--out", str(out)])
    assert result.exit_code == 0, result.output
    image = Image.open(out).convert("RGB")
    assert map_pixel(image, ip_int("9.9.9.0")) == DIFF_COLOURS["added"]
    kinds = {"changed": [docs[land], docs[abuse]], "transferred": [docs[hold]],
             "removed": [d for d in old_docs if d["handle"] in removed]}
    for kind, blocks in kinds.items():
        for d in blocks:
            assert map_pixel(image, ip_int(d["start_address"])) == DIFF_COLOURS[kind], (kind, d["handle"])


def test_status_follows_a_local_crawl_to_its_end(quick_sim, tmp_path: Path):
    out = tmp_path / "crawl.jsonl"
    checkpoint = tmp_path / "crawl.jsonl.checkpoint.json"
    proc = subprocess.Popen(crawl_cmd(quick_sim, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
                checkpoint.exists() and read_checkpoint(checkpoint)["cursors"]):
            time.sleep(0.2)
        status = [sys.executable, "-m", "whoiscrawl", "status", str(out), "--json"]
        midway = json.loads(subprocess.run(status, capture_output=True, text=True, timeout=60).stdout)
        assert not midway["complete"] and 0 < midway["progress"] < 1
        assert sum(r["shards_active"] for r in midway["by_registry"].values()) > 0
        watched = subprocess.run([*status, "--watch", "--interval", "1"], capture_output=True, text=True,
                                 timeout=600)
        looks = [json.loads(line) for line in watched.stdout.splitlines()]
        assert watched.returncode == 0 and looks[-1]["complete"] and looks[-1]["eta_s"] == 0.0
        assert len(looks) >= 2 and any(look["addresses_per_s"] for look in looks)
    finally:
        proc.communicate(timeout=600)
    assert proc.returncode == 0
