"""Liveness: the probe fails while a crawl's reconcile passes stop finishing, and only then."""

from __future__ import annotations

import kopf
import pytest
from whoiscrawl.operator import glue, health, on_startup


def test_a_crawl_whose_passes_do_not_finish_is_stuck() -> None:
    live = health.Liveness()
    live.started("a", 100.0)
    live.started("b", 100.0)
    live.finished("b")
    live.started("a", 130.0)  # a later pass of a hung (or failing) crawl keeps the oldest start
    assert live.stuck(150.0, 60.0) == []
    assert live.stuck(161.0, 60.0) == ["a"]
    live.finished("a")
    assert live.stuck(1000.0, 60.0) == []


def test_the_probe_fails_when_a_crawl_is_stuck(monkeypatch: pytest.MonkeyPatch) -> None:
    live = health.Liveness()
    monkeypatch.setattr(health, "LIVENESS", live)
    assert on_startup.reconciles() == 0  # no crawls: healthy
    live.started("uid-1", 0.0)  # started long ago (monotonic 0), never finished
    with pytest.raises(kopf.PermanentError, match="uid-1"):
        on_startup.reconciles()
    glue.forget("uid-1")  # deleted: forgotten
    assert on_startup.reconciles() == 0
