"""`whoiscrawl bench-serve` on a tiny map: one JSON line with every figure, the baseline agreeing."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from whoiscrawl.bench.serve import check_figures, nested_records
from whoiscrawl.cli import app
from whoiscrawl.results.source import ResultSet
from whoiscrawl.serve import mmdb
from whoiscrawl.serve.index import load_or_build


def test_nested_records_nest_and_leave_gaps(tmp_path: Path):
    path = tmp_path / "n.jsonl"
    assert nested_records(path, 500) == 500
    rs = ResultSet(path, seekable=True)
    first, last = rs.spans()
    sizes = set((last - first + 1).tolist())
    assert rs.blocks == 500 and sizes == {4096, 256, 16}


def test_bench_serve_prints_one_json_line_of_figures(tmp_path: Path):
    result = CliRunner().invoke(app, [
        "bench-serve", "--networks", "3000", "--lookups", "50000", "--baseline", "5000", "--requests", "300",
        "--seconds", "20", "--concurrency", "4", "--workers", "2", "--batch-lines", "3000",
        "--mmdb-lookups", "2000",
        "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["networks"] == 3000 and doc["lookups"] == 50000 and doc["found_share"] > 0.5
    assert doc["rdap_requests"] == 300 and doc["rdap_statuses"] == {"200": 300}
    assert doc["rdap_p99_ms"] >= doc["rdap_p50_ms"] > 0 and doc["rdap_server_workers"] == 2
    # what the generator and the server (its processes) spent, measured apart: the cores are shared
    assert doc["rdap_server_cpu_us_per_request"] > 0 and doc["rdap_generator_cpu_share"] > 0
    assert doc["batch_lines"] == 3000 and doc["batch_peak_rss_mb"] > 0
    assert 0 < doc["mmdb_networks"] <= 3000 and doc["maxminddb_lookups_per_s"] > 0
    keys = ("lookups_per_s", "baseline_ipaddress_bisect_per_s", "index_build_s", "index_bytes_per_network",
            "mmdb_write_s", "targets", "lookup_json_lines_per_s")
    assert all(key in doc for key in keys)


def test_the_check_holds_served_answers_to_the_results_own(tmp_path: Path):
    """The check agrees with a map's own results and finds another map's answers wrong."""
    ours, other = tmp_path / "ours.jsonl", tmp_path / "other.jsonl"
    nested_records(ours, 400)
    nested_records(other, 400, seed=2)  # the same layout nearly, other holders and gaps
    index, _ = load_or_build(ours)
    mmdb.write(index, tmp_path / "ours.mmdb")
    same = check_figures(ours, index, tmp_path / "ours.mmdb", 2000, 10)
    assert same["check_held"] >= 80 and same["check_probes"] > 2000  # every 10th network: 40, both ends
    assert same["check_lookup"]["wrong"] == same["check_mmdb"]["wrong"] == 0
    wrong = check_figures(other, index, tmp_path / "ours.mmdb", 2000, 10)
    assert wrong["check_lookup"]["wrong"] > 0 and wrong["check_mmdb"]["wrong"] > 0
