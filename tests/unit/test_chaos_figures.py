"""The chaos bench's figures from a simulator log: silences overall and outside service restarts."""

from __future__ import annotations

import json

from whoiscrawl.bench.chaos import _holding, _request_figures, against_chaos_targets


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


def test_each_chaos_target_is_met_or_not_by_the_runs_figure():
    figures = {"lost": 0, "drained_in_grace": False, "lookups_vs_no_chaos": 1.051, "max_stall_s": 15.0,
               "max_recovery_s": None, "rate_limit_violations": 1}
    met = {name: t["met"] for name, t in against_chaos_targets(figures).items()}
    assert met == {"finished": None, "lost": True, "unbacked_blocks": None, "unread_blocks": None,
                   "drained_in_grace": False, "lookups_vs_no_chaos": False,
                   "max_stall_s": True, "max_recovery_s": None, "rate_limit_violations": False,
                   "checkpoints_backwards": None, "worker_crashes": None}
    paused = {**figures, "checkpoints_backwards": 2, "worker_crashes": 0}
    met = {name: t["met"] for name, t in against_chaos_targets(paused).items()}
    assert (met["checkpoints_backwards"], met["worker_crashes"]) == (False, True)
    # A crawl that timed out is no pass, whatever else it shows (it was, till 2026-12-07).
    assert against_chaos_targets({**figures, "finished": False})["finished"]["met"] is False


def test_lease_holders_are_read_from_their_fencing_tokens():
    """The bench pauses lease holders first: `<token>/<host>-<pid>-<suffix>/<nonce>` names them."""

    class Proc:
        def __init__(self, pid: int) -> None:
            self.pid = pid

    class Procs:
        procs = [Proc(101), Proc(202), Proc(303)]

    holders = ["17/node-a-202-1f2e3d/9a8b7c6d", "18/node-b-303-aaaaaa/0011aa22", "junk"]
    assert _holding(Procs(), [0, 1], holders) == [1]  # 303 is not among the live ones asked about
