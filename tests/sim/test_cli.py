"""The `whoiscrawl sim` commands: serve's first line and clean exit, truth, score; the data."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from typer.testing import CliRunner

from whoiscrawl import rirs
from whoiscrawl.bench.common import simulator, simulator_options
from whoiscrawl.records import NetworkRecord
from whoiscrawl.sim import data, model
from whoiscrawl.sim.cli import app


def test_ensure_data_is_idempotent():
    d = data.ensure_data()
    assert d == data.ensure_data()
    for r in rirs.REGISTRIES:
        assert (d / f"delegated-{r}-extended-latest").stat().st_size > 100_000
    assert len(data.load_delegations()) > 190_000


def test_generation_is_deterministic():
    d = next(x for x in data.load_delegations() if x.registry == "ripencc"
             and x.status == "allocated" and x.count == 65536)

    def gen(seed: int) -> list[tuple[int, int, int]]:
        w = model.World(seed)
        g = model._Gen(w, seed)
        o = w.add(d.start, d.end, -1, 1, model.T["ALLOCATED PA"], 0, d.date, 0, 0)
        g.subtree(o, model._rng(seed, d.start, 1), model.STYLES["ripencc"], 1)
        return list(zip(w.start, w.end, w.typ, strict=True))

    assert gen(1) == gen(1)
    assert gen(1) != gen(2)


def test_serve_first_line_and_clean_exit(tmp_path: Path):
    log = tmp_path / "log.jsonl"
    with simulator("quick", 100, log, extra=["--no-latency"]) as sim:
        info = sim.info
        assert set(info) >= {"bootstrap_url", "whois", "scenario", "ranges", "limits", "log",
                             "time_scale"}
        assert info["scenario"] == "quick" and info["log"] == str(log)
        assert info["limits"]["arin"]["rate_per_s"] == 1500.0
        boot = json.load(urllib.request.urlopen(info["bootstrap_url"], timeout=10))
        base = next(urls[0] for prefixes, urls in boot["services"] if "77.0.0.0/8" in prefixes)
        doc = json.load(urllib.request.urlopen(f"{base}ip/77.0.1.1", timeout=10))
        assert doc["objectClassName"] == "ip network"
    assert sim.proc.returncode == 0
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines and lines[-1]["handle"] == doc["handle"] and lines[-1]["outcome"] == "ok"
    assert set(lines[-1]) == {"t", "source", "registry", "address", "protocol", "status",
                              "handle", "outcome"}


def test_truth_and_score_commands(tmp_path: Path):
    runner = CliRunner()
    out = tmp_path / "truth.jsonl"
    r = runner.invoke(app, ["truth", "--scenario", "quick", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) >= 5000 and json.loads(r.output)["blocks"] == len(rows)
    res = tmp_path / "results.jsonl"
    keep = ("registry", "handle", "start_address", "end_address", "cidrs", "name", "country",
            "parent_handle", "type", "registrant", "abuse_emails")
    # results as a crawl writes them: the scorer reads them through the one record reader
    res.write_bytes(b"".join(NetworkRecord(**{k: row[k] for k in keep}).to_json() + b"\n" for row in rows))
    r = runner.invoke(app, ["score", "--scenario", "quick", "--results", str(res), "--json"])
    assert r.exit_code == 0, r.output
    figures = json.loads(r.output.strip().splitlines()[-1])
    assert figures["recall"] == 1.0 and figures["address_coverage"] == 1.0
    assert figures["recall_resolution"] == 1.0
    assert sum(figures["field_errors"].values()) == 0
    assert all((acc["holder"], acc["country"], acc["abuse_email"]) == (1.0, 1.0, 1.0)
               for acc in figures["field_accuracy"].values())


def test_the_benchs_simulator_serves_with_the_options_it_is_given(tmp_path: Path):
    options = simulator_options(row_limit=500, arin_relation_search=False, arin_listing_limit=0)
    with simulator("quick", 100, tmp_path / "log.jsonl", extra=list(options)) as sim:
        assert sim.info["relation_search"] == {"registries": ["ripencc"], "row_limit": 500}
        assert sim.info["whois_listing_limit"] == {"arin": 0}


def test_files_writes_every_published_file_at_its_real_path(tmp_path: Path):
    runner = CliRunner()
    result = runner.invoke(app, ["files", "--scenario", "quick", "--out", str(tmp_path),
                                 "--fault", "ripencc:stale_serial"])
    assert result.exit_code == 0, result.output
    *rows, total = map(json.loads, result.output.splitlines())
    assert total["files"] == len(rows) and total["bytes"] == sum(r["bytes"] for r in rows)
    for r in rirs.CATALOGUE:
        serials = [r.serial_url] if r.serial_url else []
        for url in (r.stats_url, r.stats_url + ".md5", *r.dump_urls, *serials):
            assert Path(rirs.published_at(url, str(tmp_path))).stat().st_size > 0, url
    serial = Path(rirs.published_at(rirs.BY_ID["ripencc"].serial_url or "", str(tmp_path))).read_text()
    assert int(serial) == 39_000_001 - 100_000  # spoiled as asked
    refused = runner.invoke(app, ["files", "--out", str(tmp_path), "--fault", "arin:truncated_gzip"])
    assert refused.exit_code != 0 and "truncated_gzip needs a file arin does not publish" in refused.output
