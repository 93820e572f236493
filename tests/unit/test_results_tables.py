"""The readable ends of crawl, bench and sim score: the figures a person looks for, in a few lines."""

from __future__ import annotations

from rich.console import Console

from whoiscrawl.results.tables import bench_table, crawl_table, print_tables, score_table


def text(*tables) -> str:
    console = Console(width=110, record=True)
    print_tables(*tables, console=console)
    return console.export_text()


CRAWL = {"complete": True, "blocks": 6031, "lookups": 2633, "addresses_done": 10, "addresses_total": 10,
         "rate_limited": 0, "errors": 0, "wall_s": 14.0, "out": "r.jsonl",
         "lookups_by_registry": {"arin": 653, "lacnic": 318}}
SCORE = {"address_coverage": 0.999121, "recall_resolution": 1.0, "lookups": 2633, "lookups_per_block": 0.4367,
         "wasted_lookups": 31, "wasted_floor": 25, "rate_limited": 0, "blocks_truth": 6080,
         "blocks_found": 6029, "recall": 0.9916,
         "recall_by_registry": {"lacnic": {"truth": 123, "found": 72, "recall": 0.585366}}}


def test_crawl_and_score_tables():
    out = text(crawl_table(CRAWL), score_table(SCORE))
    for want in ("blocks found", "6,031", "0.4366", "100.00%", "arin 653", "0.9991", "lacnic", "0.5854"):
        assert want in out, want
    assert len(out.splitlines()) < 25


def test_score_table_shows_field_accuracy_per_registry():
    accuracy = {"arin": {"blocks": 4, "holder": 0.75, "country": 1.0, "abuse_email": 0.0}}
    out = text(score_table({**SCORE, "field_accuracy": accuracy}))
    assert "abuse e-mail" in out
    rows = [line.split()[-4:] for line in out.splitlines() if "arin" in line]
    assert rows == [["arin", "75.0%", "100%", "0%"]]


def test_bench_table_puts_the_baselines_beside_the_run():
    run = {**SCORE, "strategy": "sweep", "workers": 3, "egress": 1, "wall_s": 40.0,
           "compare": {"sample_same_lookups": {**SCORE, "address_coverage": 0.808},
                       "grid_only": {**SCORE, "address_coverage": 0.939}}}
    out = text(bench_table(run))
    assert "sweep" in out and "sample_same_lookups" in out and "grid_only" in out
    assert "0.9991" in out and "0.8080" in out and "0.9390" in out
