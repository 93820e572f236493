"""The fleet's sources: the worker's options, and when a published file is older than one used."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from whoiscrawl.cli import app
from whoiscrawl.sources.fetch import discard
from whoiscrawl.sources.published import stale_note, went_back


@pytest.mark.parametrize(("used", "now", "back"), [
    ("41234568", "41234567", True),  # RIPE.CURRENTSERIAL: numbers, not text ("9" > "10" as text)
    ("10", "9", True),
    ("9", "10", False),
    ("41234567", "41234567", False),
    ("20261206", "20261205", True),  # a date
    ("2026-12-06T00:00:00+00:00", "2026-12-07T00:00:00+00:00", False),
    (None, "1", False),  # nothing used yet
    ("1", None, False),  # no serial published: nothing to compare
])
def test_a_serial_went_back(used: str | None, now: str | None, back: bool):
    assert went_back(used, now) is back


def test_the_refusal_names_the_file_both_serials_and_what_to_do():
    text = stale_note("ripencc dump", "42", "41")
    assert text.startswith("ripencc dump: serial 41 is older than 42, which this crawl already used: refused")
    assert "--files-base" in text and "nothing of it was written" in text


def test_a_worker_without_live_is_refused_before_it_starts():
    """The files alone are `whoiscrawl crawl`'s: a fleet crawls live what they lack."""
    result = CliRunner().invoke(app, ["worker", "--crawl", "c", "--kafka-bootstrap", "127.0.0.1:1",
                                      "--redis-url", "redis://127.0.0.1:1", "--sources", "stats,dumps"])
    assert result.exit_code == 2 and "a fleet crawls live what the files lack" in result.output


def test_files_downloaded_are_discarded_and_a_local_mirrors_are_left_alone(tmp_path: Path):
    """Once read, what the loader downloaded gives its disk back; a mirror on a local path (read
    where it is, never copied: `--files-base DIR`) is not the loader's to delete."""
    cache, mirror = tmp_path / "cache", tmp_path / "mirror"
    downloaded = cache / "ftp.ripe.net" / "ripe.db.inetnum.gz"
    local = mirror / "ftp.apnic.net" / "apnic.db.inetnum.gz"
    for path in (downloaded, local):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
    discard([downloaded, local, cache / "gone.gz"], cache)
    assert not downloaded.exists() and local.exists()
