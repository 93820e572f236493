"""A test run killed midway leaves no service behind: the next run reaps what it started, by PID."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from whoiscrawl.dev import services as dev_services

HOLDER = """
import json, sys, time
from pathlib import Path
from whoiscrawl.dev import services
with services.session(Path(sys.argv[1]), ("redis",)) as running:
    print(json.dumps({n: s.pid for n, s in running.services.items()}), flush=True)
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def test_killed_run_is_reaped(tmp_path):
    root = tmp_path / "runs"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    pids = json.loads(holder.stdout.readline())
    assert _alive(pids["redis"])

    holder.send_signal(signal.SIGKILL)  # no finally blocks run: the service is orphaned
    holder.wait()
    assert _alive(pids["redis"])

    reaped = dev_services.reap_stale(root)
    assert reaped == ["redis"]
    deadline = time.monotonic() + 10
    while _alive(pids["redis"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pids["redis"])
    assert list(root.iterdir()) == []


def test_reap_leaves_live_runs_alone(tmp_path):
    root = tmp_path / "runs"
    with dev_services.session(root, ("redis",)) as running:
        pid = running.services["redis"].pid
        assert dev_services.reap_stale(root) == []
        assert _alive(pid)
    assert not _alive(pid)
