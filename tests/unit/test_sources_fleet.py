"""The fleet's sources: the worker's options."""

from __future__ import annotations

from typer.testing import CliRunner

from whoiscrawl.cli import app


def test_a_worker_without_live_is_refused_before_it_starts():
    """The files alone are `whoiscrawl crawl`'s: a fleet crawls live what they lack."""
    result = CliRunner().invoke(app, ["worker", "--crawl", "c", "--kafka-bootstrap", "127.0.0.1:1",
                                      "--redis-url", "redis://127.0.0.1:1", "--sources", "stats,dumps"])
    assert result.exit_code == 2 and "a fleet crawls live what the files lack" in result.output
