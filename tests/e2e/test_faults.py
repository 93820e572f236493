"""Registries misbehaving: 429 storms, 5xx, resets, broken JSON, timeouts, RDAP down. Nothing lost."""

from __future__ import annotations

import json
import subprocess
from collections import Counter

import pytest
import yaml

from whoiscrawl.bench.common import simulator

from .conftest import TIME_SCALE, score
from .test_local_crawl import crawl_cmd

pytestmark = pytest.mark.slow  # crawls of `quick` with faults


def crawl(tmp_path, faults: dict) -> tuple[dict, dict, list[dict], list[dict]]:
    spec = tmp_path / "faults.yaml"
    spec.write_text(yaml.safe_dump(faults))
    log = tmp_path / "requests.jsonl"
    out = tmp_path / "out.jsonl"
    with simulator("quick", TIME_SCALE, log, faults=spec) as sim:
        done = subprocess.run(crawl_cmd(sim, out), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    requests = [json.loads(line) for line in log.open()]
    records = [json.loads(line) for line in out.open()]
    return summary, score(out, str(log)), requests, records


def test_storms_and_broken_answers_are_retried_and_nothing_is_lost(tmp_path):
    summary, figures, requests, _ = crawl(
        tmp_path,
        {
            "seed": 3,
            "ripencc": {"storm": {"period_s": 300, "duration_s": 60}},
            "arin": {"http_5xx": 0.03, "reset": 0.02, "truncated": 0.02, "malformed": 0.02, "timeout": 0.01},
        },
    )
    outcomes = Counter((r["registry"], r["outcome"]) for r in requests)
    assert outcomes[("ripencc", "fault")] > 0 and outcomes[("arin", "fault")] > 0  # they happened
    assert summary["complete"]
    assert summary["errors"] == 0, summary["failures"][:5]  # every address was answered in the end
    assert summary["rate_limited"] > 0  # the storm's 429s were seen and sat out
    assert figures["recall_resolution"] == 1.0
    assert figures["field_errors"] == {k: 0 for k in figures["field_errors"]}


def test_whois_carries_a_registry_whose_rdap_is_down(tmp_path):
    summary, figures, _, records = crawl(tmp_path, {"afrinic": {"http_5xx": 1.0, "protocols": ["rdap"]}})
    assert summary["complete"] and summary["errors"] == 0, summary["failures"][:4]
    sources = Counter(r["source"] for r in records if r["registry"] == "afrinic")
    assert sources["whois"] > 0 and sources["rdap"] == 0
    assert figures["recall_resolution"] == 1.0
    # what a person reads off AFRINIC's WHOIS (org-name, the abuse remark) is what its RDAP says
    afrinic = figures["field_accuracy"]["afrinic"]
    assert (afrinic["holder"], afrinic["country"], afrinic["abuse_email"]) == (1.0, 1.0, 1.0)
