"""The operator CLI parses its options (the adapter: tests/integration/test_operator_backend.py)."""

from __future__ import annotations

from typer.testing import CliRunner
from whoiscrawl.operator.cli import app


def test_cli_requires_a_scope() -> None:
    runner = CliRunner()
    assert "--all-namespaces" in runner.invoke(app, ["--help"]).output
    result = runner.invoke(app, [])
    assert result.exit_code != 0 and "--namespace" in result.output
    result = runner.invoke(app, ["-n", "a", "--all-namespaces"])
    assert result.exit_code != 0
