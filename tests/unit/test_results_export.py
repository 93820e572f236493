"""`whoiscrawl export`: each format read back, dedup, every filter, one schema."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from whoiscrawl.cli import app
from whoiscrawl.results.export import COLUMNS, SCHEMA

from .test_results_summary import record, write


def results(tmp_path: Path) -> Path:
    return write(tmp_path / "r.jsonl", [
        record("193.0.0.0/16", type="ALLOCATED PA", registrant="Parent LIR", abuse_emails=["a@lir.example"]),
        record("193.0.1.0/24", registrant="Old Holder"),
        record("193.0.4.0/22", country="DE", registrant="Big Customer"),
        record("193.0.1.0/24", registrant="New Holder"),  # later: wins
        record("12.0.0.0/8", registry="arin", country="US", registrant="AT&T"),
        record("200.0.0.0/20", registry="lacnic", country="BR", registrant="Telecom BR",
               abuse_emails=["x@br.example", "y@br.example"]),
    ], junk=True)


def export(tmp_path: Path, fmt: str, *args: str) -> tuple[Path, dict]:
    out = tmp_path / f"out.{fmt}"
    result = CliRunner().invoke(app, ["export", str(results(tmp_path)), "--format", fmt, "--out", str(out),
                                      *args])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.output)


def read_back(path: Path, fmt: str) -> list[dict]:
    if fmt == "parquet":
        table = pq.read_table(path)
        assert table.schema.equals(SCHEMA, check_metadata=False)
        return table.to_pylist()
    if fmt == "csv":
        with path.open(newline="") as fh:
            return list(csv.DictReader(fh))
    return [json.loads(line) for line in path.open()]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_each_format_reads_back_deduplicated_in_the_one_schema(tmp_path: Path, fmt: str):
    out, doc = export(tmp_path, fmt)
    assert doc["rows"] == 5 and doc["records"] == 6 and doc["blocks"] == 5
    rows = read_back(out, fmt)
    want = ["Parent LIR", "Big Customer", "New Holder", "AT&T", "Telecom BR"]
    assert [r["registrant"] for r in rows] == want
    assert all(tuple(r) == COLUMNS for r in rows)
    lacnic = rows[-1]
    assert int(lacnic["first"]) == (200 << 24) and int(lacnic["addresses"]) == 4096
    emails = lacnic["abuse_emails"]
    assert (emails.split(" ") if fmt == "csv" else emails) == ["x@br.example", "y@br.example"]
    assert (lacnic["cidrs"] if fmt != "csv" else [lacnic["cidrs"]]) == ["200.0.0.0/20"]


@pytest.mark.parametrize(("args", "want"), [
    (["--registry", "ripencc"], ["Parent LIR", "Big Customer", "New Holder"]),
    (["--registry", "arin", "--registry", "LACNIC"], ["AT&T", "Telecom BR"]),
    (["--country", "de"], ["Big Customer"]),
    (["--country", "NL", "--country", "US"], ["Parent LIR", "New Holder", "AT&T"]),
    (["--range", "193.0.1.128/25"], ["Parent LIR", "New Holder"]),  # blocks overlapping the range
    (["--range", "12.1.0.0/16", "--range", "200.0.15.0-200.0.16.0"], ["AT&T", "Telecom BR"]),
    (["--registry", "ripencc", "--country", "NL", "--range", "193.0.4.0/24"], ["Parent LIR"]),
])
def test_filters(tmp_path: Path, args: list[str], want: list[str]):
    out, doc = export(tmp_path, "parquet", *args)
    assert [r["registrant"] for r in read_back(out, "parquet")] == want and doc["rows"] == len(want)


def test_schema_is_documented(tmp_path: Path):
    docs = (Path(__file__).parents[2] / "docs" / "results.md").read_text()
    for f in SCHEMA:
        assert f"| `{f.name}` |" in docs, f.name
        assert f.metadata[b"description"]


def test_refusals(tmp_path: Path):
    runner = CliRunner()
    path = results(tmp_path)
    bad = runner.invoke(app, ["export", str(path), "--format", "xlsx", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "unknown format" in bad.output
    bad = runner.invoke(app, ["export", str(path), "--out", str(tmp_path / "x"), "--range", "1.2.3.4.5"])
    assert bad.exit_code == 2 and "not a CIDR" in bad.output
