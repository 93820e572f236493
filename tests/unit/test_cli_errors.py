"""Every command given bad arguments (a bad CIDR, a missing file, a wrong format, an unreachable URL,
a value of the wrong type) exits non-zero with one line saying what to fix, never a traceback."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from whoiscrawl.cli import app

# name: (arguments, a fragment of the one line); {tmp} is a scratch directory. Nothing here reaches
# a registry or starts a service: every case fails before that (10.0.0.0/24 has no registry). A Redis
# that is down ends `plan` at its first refusal (`test_plan_meets_a_silent_redis_in_one_try`).
CASES = {
    "crawl: bad CIDR": (["crawl", "1.2.3.4/40", "--out", "{tmp}/o.jsonl"], "'1.2.3.4/40' is not a CIDR"),
    "crawl: no ranges": (["crawl"], "Missing argument 'ranges'"),
    "crawl: a number that is none": (["crawl", "10.0.0.0/24", "--concurrency", "many"], "'--concurrency'"),
    "crawl: missing bootstrap file": (["crawl", "10.0.0.0/24", "--out", "{tmp}/o.jsonl", "--bootstrap-url",
                                       "{tmp}/none.json"], "bootstrap file {tmp}/none.json does not exist"),
    "crawl: bootstrap not JSON": (["crawl", "10.0.0.0/24", "--out", "{tmp}/o.jsonl", "--bootstrap-url",
                                   "{tmp}/bad.json"], "the RDAP bootstrap is not JSON"),
    "crawl: bootstrap no RFC 9224": (["crawl", "10.0.0.0/24", "--out", "{tmp}/o.jsonl", "--bootstrap-url",
                                      "{tmp}/list.json"], "not an RFC 9224 bootstrap"),
    "crawl: unreachable bootstrap": (["crawl", "10.0.0.0/24", "--out", "{tmp}/o.jsonl", "--bootstrap-url",
                                      "http://127.0.0.1:1/ipv4.json"], "cannot read the RDAP bootstrap at"),
    "crawl: bad rate limits": (["crawl", "10.0.0.0/24", "--out", "{tmp}/o.jsonl",
                                "--rate-limits", "arin=fast"], "bad rate limit 'arin=fast'"),
    "crawl: unknown strategy": (["crawl", "10.0.0.0/24", "--out", "{tmp}/o.jsonl", "--strategy", "zigzag"],
                                "unknown strategy 'zigzag'"),
    "crawl: bad resolution": (["crawl", "10.0.0.0/24", "--out", "{tmp}/o.jsonl", "--resolution", "40"],
                              "prefix lengths from 8 to 32"),
    "crawl: bad WHOIS server": (["crawl", "10.0.0.0/24", "--out", "{tmp}/o.jsonl", "--whois", "nohostport"],
                                "give host:port"),
    "crawl: bad bind address": (["crawl", "10.0.0.0/24", "--out", "{tmp}/o.jsonl", "--bind-address",
                                 "999.1.1.1"], "'999.1.1.1' is not an IP address"),
    "crawl: a listing timeout of none": (["crawl", "10.0.0.0/24", "--out", "{tmp}/o.jsonl",
                                          "--listing-timeout", "0"], "Invalid value for '--listing-timeout'"),
    "crawl: no directory for --out": (["crawl", "10.0.0.0/24", "--out", "{tmp}/no/dir/o.jsonl"],
                                      "the directory {tmp}/no/dir does not exist"),
    "crawl --refresh: no previous map": (["crawl", "10.0.0.0/24", "--out", "{tmp}/o.jsonl", "--refresh",
                                          "{tmp}/none.jsonl"], "--refresh {tmp}/none.jsonl: no such results"),
    "crawl --refresh: no manifest": (["crawl", "10.0.0.0/24", "--out", "{tmp}/o.jsonl", "--refresh",
                                      "{tmp}/bad.json"], "has no bad.json.map.json beside it"),
    "sim truth: a day before the first": (["sim", "truth", "--day", "-1"], "Invalid value for '--day'"),
    "sim truth: unknown churn": (["sim", "truth", "--churn", "sideways=1", "--out", "{tmp}/t.jsonl"],
                                 "--churn 'sideways=1': give a share"),
    "plan: bad CIDR": (["plan", "1.2.3/99", "--crawl", "c", "--kafka-bootstrap", "127.0.0.1:1", "--redis-url",
                        "redis://127.0.0.1:1"], "'1.2.3/99' is not a CIDR"),
    "plan: no Redis URL": (["plan", "10.0.0.0/24", "--crawl", "c", "--kafka-bootstrap", "127.0.0.1:1",
                            "--redis-url", "notaurl"], "cannot reach Redis at --redis-url notaurl"),
    "plan: Redis down, its password unsaid": (
        ["plan", "10.0.0.0/24", "--crawl", "c", "--kafka-bootstrap", "127.0.0.1:1", "--redis-url",
         "redis://:hunter2@127.0.0.1:1/0"], "cannot reach Redis at --redis-url redis://:***@127.0.0.1:1/0"),
    "status: missing file": (["status", "{tmp}/none.jsonl"],
                             "no local crawl at {tmp}/none.jsonl: neither {tmp}/none.jsonl nor"),
    "status: missing checkpoint": (["status", "{tmp}/none.jsonl.checkpoint.json"],
                                   "no local crawl at {tmp}/none.jsonl.checkpoint.json"),
    "worker: bad rate limits": (["worker", "--crawl", "c", "--kafka-bootstrap", "127.0.0.1:1", "--redis-url",
                                 "redis://127.0.0.1:1", "--rate-limits", "x"], "bad rate limit 'x'"),
    "summary: missing file": (["summary", "{tmp}/none.jsonl"], "{tmp}/none.jsonl is not a results file"),
    "summary: wrong format": (["summary", "{tmp}/bad.json"], "holds no result records"),
    "export: wrong format": (["export", "{tmp}/bad.json", "--out", "{tmp}/x.xml", "--format", "xml"],
                             "unknown format 'xml'"),
    "export: bad range": (["export", "{tmp}/bad.json", "--out", "{tmp}/x.csv", "--format", "csv",
                           "--range", "1.2.3.4/99"], "'1.2.3.4/99' is not a CIDR"),
    "map: missing file": (["map", "{tmp}/none.jsonl"], "is not a results file"),
    "diff: missing file": (["diff", "{tmp}/none.jsonl", "{tmp}/none2.jsonl"], "is not a results file"),
    "history add: missing map": (["history", "add", "{tmp}/none.jsonl", "--date", "2026-12-01", "--store",
                                  "{tmp}/st"], "{tmp}/none.jsonl is not a results file"),
    "history add: not a date": (["history", "add", "{tmp}/bad.json", "--date", "2026-13-01", "--store",
                                 "{tmp}/st"], "--date '2026-13-01' is not a date: give YYYY-MM-DD"),
    "history add: bad scope": (["history", "add", "{tmp}/bad.json", "--date", "2026-12-01", "--store",
                                "{tmp}/st", "--scope", "1.2.3.4/99"], "'1.2.3.4/99' is not a CIDR"),
    "history list: no store": (["history", "list", "--store", "{tmp}/nostore"], "is not a history store"),
    "history prune: keep none": (["history", "prune", "--store", "{tmp}/nostore", "--keep", "0"],
                                 "keep at least 1 generation"),
    "changes: no store": (["changes", "--since", "2026-12-01", "--history", "{tmp}/nostore"],
                          "{tmp}/nostore is not a history store"),
    "lookup: --at alone": (["lookup", "{tmp}/bad.json", "1.2.3.4", "--at", "2026-12-01"],
                           "--at needs --history DIR"),
    "serve: no map": (["serve"], "give a results file, or --history DIR"),
    "map: --at alone": (["map", "{tmp}/bad.json", "--at", "2026-12-01"], "--at needs --history DIR"),
    "bench: unknown scenario": (["bench", "--scenario", "nosuch"], "choose one of quick, standard, full"),
    "sim truth: unknown scenario": (["sim", "truth", "--scenario", "nosuch"], "unknown scenario 'nosuch'"),
    "sim score: extra argument": (["sim", "score", "{tmp}/none.jsonl"], "unexpected extra argument"),
    "no such command": (["frobnicate"], "No such command 'frobnicate'"),
}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "bad.json").write_text("not json\n")
    (tmp / "list.json").write_text('{"services": 5}\n')
    return tmp


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_arguments_end_in_one_line_saying_what_to_fix(case: str, scratch: Path):
    args, fragment = CASES[case]
    result = CliRunner().invoke(app, [a.format(tmp=scratch) for a in args])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert fragment.format(tmp=scratch) in lines[0]


@contextlib.contextmanager
def dead_end(answer: bool) -> Iterator[tuple[str, list[int]]]:
    """A port where no Redis answers: each connection is counted, then dropped at once (`answer`
    False: held open in silence, as a hung server or a firewall's black hole does)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []
    held: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                accepted.append(1)
                if answer:
                    conn.close()
                else:
                    held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0", accepted
    finally:
        server.close()
        for conn in held:
            conn.close()


@pytest.mark.parametrize("answer", [True, False], ids=["drops", "silent"])
def test_plan_meets_a_redis_that_does_not_answer_in_one_try(answer: bool):
    # Before: the store's client retried 45 times (~42 s) on a dropped connection, and waited for
    # ever on a silent one. Now one connection, bounded by REACH_TIMEOUT_S, and one line.
    with dead_end(answer) as (url, accepted):
        done = subprocess.run(
            [str(Path(sys.executable).with_name("whoiscrawl")), "plan", "10.0.0.0/24", "--crawl", "c",
             "--kafka-bootstrap", "127.0.0.1:1", "--redis-url", url],
            capture_output=True, text=True, timeout=120,  # a guard against the old wait for ever
        )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: cannot reach Redis at --redis-url {url}")
    assert done.stderr.count("\n") == 1
    assert len(accepted) == 1
