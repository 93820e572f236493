"""The chaos bench's figures from a simulator log: silences overall and outside service restarts."""

from __future__ import annotations

import json

from whoiscrawl.chaos import _request_figures


def test_a_silence_during_a_restart_counts_overall_but_not_outside_restarts(tmp_path):
    log = tmp_path / "requests.jsonl"
    times = [100.0, 101.0, 120.0, 121.0, 130.0]  # 19 s silent across a restart, then 9 s
    log.write_text("".join(json.dumps({"t": t, "address": f"10.0.0.{i}", "protocol": "rdap",
                                       "outcome": "ok"}) + "\n" for i, t in enumerate(times)))
    figures = _request_figures(log, [[105.0, 119.0]])
    assert figures["max_stall_s"] == 19.0
    assert figures["max_stall_outside_restarts_s"] == 9.0
    assert _request_figures(log, [[125.0, None]])["max_stall_outside_restarts_s"] == 19.0  # never over
    assert _request_figures(log)["max_stall_outside_restarts_s"] == 19.0
