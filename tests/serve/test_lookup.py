"""`whoiscrawl lookup`: cards, JSONL, CSV; from arguments, a file or stdin; malformed lines carried past."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import pytest
from serve_support import most_specific, write_results
from typer.testing import CliRunner

from whoiscrawl.cli import app
from whoiscrawl.ipv4 import ip_int, ip_str
from whoiscrawl.serve import lookup as lookup_mod
from whoiscrawl.serve.index import load_or_build

SPANS = [(0x0A000000, 0x0AFFFFFF), (0x0A010000, 0x0A0100FF), (0xC1000000, 0xC10007FF)]


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return write_results(tmp_path / "r.jsonl", SPANS)


def run(*args: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(app, ["lookup", *args], input=stdin)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_card_per_address_names_holder_network_parents_and_says_when_none_holds_it(results: Path):
    out = run(str(results), "10.1.0.5", "8.8.8.8")
    first, second = out.strip().split("\n\n")
    assert first.splitlines()[0] == "10.1.0.5"
    card = dict(line.split(None, 1) for line in first.splitlines()[1:])
    assert card["holder"] == "Holder 1" and card["country"] == "US" and card["registry"] == "arin"
    assert card["network"] == "10.1.0.0 - 10.1.0.255 (10.1.0.0/24)" and card["handle"] == "NET-1"
    assert card["abuse"] == "abuse@holder1.example" and card["parents"].startswith("NET-0")
    assert card["source"] == "rdap" and card["observed"] == "2026-12-01T00:00:01+00:00"
    assert second.splitlines() == ["8.8.8.8", "  no network in the map holds this address"]


def test_malformed_and_ipv6_lines_get_their_own_error_and_the_rest_carry_on(results: Path):
    stdin = "10.1.0.5\n::1\n300.1.1.1\n\n 193.0.6.139 \n10.0.0.0/8\n01.2.3.4\n"
    docs = [json.loads(line) for line in run(str(results), "-", "--json", stdin=stdin).splitlines()]
    assert [d["address"] for d in docs] == [
        "10.1.0.5", "::1", "300.1.1.1", "193.0.6.139", "10.0.0.0/8", "01.2.3.4"]
    assert docs[0]["handle"] == "NET-1" and docs[3]["handle"] == "NET-2"
    assert "IPv6" in docs[1]["error"] and "dotted quad" in docs[2]["error"]
    assert "prefix" in docs[4]["error"] and "dotted quad" in docs[5]["error"]


def test_a_file_streams_in_batches_in_input_order_and_agrees_with_brute_force(results: Path, tmp_path: Path,
                                                                             monkeypatch):
    monkeypatch.setattr(lookup_mod, "BATCH", 7)  # many batches, and a last one part full
    rng = random.Random(4)
    near = [(0x0A000000, 0x0A020000), (0xC0FFFF00, 0xC1000900)]  # nested networks, edges, a gap
    addrs = [ip_str(rng.randrange(*rng.choice(near))) for _ in range(100)]
    (tmp_path / "in.txt").write_text("\n".join(addrs) + "\n")
    rows = list(csv.DictReader(io.StringIO(run(str(results), "--from", str(tmp_path / "in.txt"), "--csv"))))
    assert [r["address"] for r in rows] == addrs
    for r in rows:
        want = most_specific(SPANS, ip_int(r["address"]))
        assert r["handle"] == ("" if want is None else f"NET-{want}")


def test_bad_options_name_what_to_fix(results: Path, tmp_path: Path):
    cases = ((["10.0.0.1", "--json", "--csv"], "one of"), (["--from", str(tmp_path / "no")], "no such"),
             ([], "give addresses"))
    for args, words in cases:
        result = CliRunner().invoke(app, ["lookup", str(results), *args])
        assert result.exit_code == 2 and words in result.output
    result = CliRunner().invoke(app, ["lookup", str(tmp_path / "missing.jsonl"), "10.0.0.1"])
    assert result.exit_code == 2 and "not a results file" in result.output
    result = CliRunner().invoke(app, ["lookup", "10.0.0.1", "10.0.0.2"])  # the results forgotten
    assert result.exit_code == 2 and "the results file comes first" in result.output


@pytest.mark.parametrize("fmt", lookup_mod.FORMATS)
def test_networks_rendered_once_write_what_each_answer_renders_to(results: Path, fmt: str):
    index, _ = load_or_build(results)
    lines = ["10.1.0.5", "10.1.0.9", "8.8.8.8", "::1", "10.0.0.1", "10.1.0.5", "1.2.3.4/24",
             "193.0.7.255"] * 3
    out = io.StringIO()
    counts = lookup_mod.write(index, lines, fmt, out)
    assert counts == {"found": 15, "not_found": 3, "errors": 6}
    want = io.StringIO()
    writer = csv.DictWriter(want, lookup_mod.CSV_COLUMNS, extrasaction="ignore")
    if fmt == "csv":
        writer.writeheader()
    for doc in lookup_mod.answers(index, lines):  # each answer rendered whole, as the plain way
        if fmt == "json":
            want.write(json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n")
        elif fmt == "csv":
            writer.writerow({k: " ".join(v) if isinstance(v, list) else v for k, v in doc.items()})
        else:
            want.write(lookup_mod.card(doc))
    assert out.getvalue() == want.getvalue()

