"""Scaling policy tables: lag, min/max, partitions, the rate-budget cap, deadlines, stabilisation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from whoiscrawl.operator.scaling import (
    Point,
    ScalingInputs,
    budget_cap,
    deadline_workers,
    recommend,
    stabilize,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def inputs(**kw: object) -> ScalingInputs:
    base: dict[str, object] = {"lag": 0, "partitions": 12, "min_workers": 0, "max_workers": 10,
                               "lag_threshold": 2, "address_budget": 10.0,
                               "egress_addresses": None, "worker_rate": 20.0}
    base.update(kw)
    return ScalingInputs(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("budget", "addresses", "worker_rate", "cap"), [
    (10.0, None, 20.0, None),  # every worker brings its own address: unbounded
    (10.0, 1, 20.0, 1),  # one NAT address at 10/s cannot feed even one 20/s worker fully
    (32.17, 4, 20.0, 7),  # 128.7 lookups/s of budget / 20 per worker -> 7
    (30.0, 2, 20.0, 3),  # exactly 3.0 stays 3 (no float creep to 4)
    (40.0, 3, 10.0, 12),
    (0.1667, 1, 20.0, 1),  # never below one worker
])
def test_budget_cap(budget: float, addresses: int | None, worker_rate: float,
                    cap: int | None) -> None:
    assert budget_cap(budget, addresses, worker_rate) == cap


@pytest.mark.parametrize(("remaining", "seconds", "rate", "need"), [
    (None, 100.0, 1.0, None), (1000, None, 1.0, None), (1000, 100.0, None, None),
    (0, 100.0, 1.0, 0), (1000, 100.0, 1.0, 10), (1001, 100.0, 1.0, 11), (1000, 0.0, 1.0, 1_000_000),
    (1000, -5.0, 1.0, 1_000_000),
])
def test_deadline_workers(remaining: int | None, seconds: float | None, rate: float | None,
                          need: int | None) -> None:
    assert deadline_workers(remaining, seconds, rate) == need


@pytest.mark.parametrize(("kw", "workers", "reason", "limited"), [
    ({"completed": True, "lag": 50}, 0, "Completed", ()),
    ({"paused": True, "lag": 50}, 0, "Paused", ()),
    ({"lag": 0}, 0, "Idle", ()),
    ({"lag": 0, "min_workers": 2}, 2, "MinWorkers", ()),
    ({"lag": 7}, 4, "Lag", ()),  # ceil(7/2)
    ({"lag": 1, "min_workers": 3}, 1, "MinWorkers", ("lag",)),  # one message feeds one worker
    ({"lag": 100}, 10, "Lag", ("max",)),
    ({"lag": 100, "partitions": 6}, 6, "Lag", ("max", "partitions")),
    ({"lag": 100, "max_workers": 50, "partitions": 64}, 50, "Lag", ()),
    ({"lag": 101, "max_workers": 50, "partitions": 64}, 50, "Lag", ("max",)),
    # The rate budget: 2 NAT addresses x 10/s = 20/s feeds one 20/s worker only.
    ({"lag": 100, "egress_addresses": 2}, 1, "Lag", ("max", "rateBudget")),
    ({"lag": 100, "egress_addresses": 8, "worker_rate": 10.0}, 8, "Lag", ("max", "rateBudget")),
    # Budget beats min: never more workers than the egress addresses can feed.
    ({"lag": 100, "min_workers": 5, "egress_addresses": 1}, 1, "Lag", ("max", "rateBudget")),
    ({"lag": 3, "replicas": 6}, 6, "Manual", ()),
    ({"lag": 3, "replicas": 6, "partitions": 4}, 4, "Manual", ("partitions",)),
    ({"lag": 3, "replicas": 6, "egress_addresses": 2}, 1, "Manual", ("rateBudget",)),
    # Deadline: 1e6 addresses left, 1000 s, 100 addresses/s per worker -> 10 workers.
    ({"lag": 42, "remaining_addresses": 1_000_000, "seconds_to_deadline": 1000.0,
      "worker_address_rate": 100.0, "max_workers": 20, "partitions": 64}, 20, "Lag", ("max",)),
    ({"lag": 4, "remaining_addresses": 1_000_000, "seconds_to_deadline": 1000.0,
      "worker_address_rate": 100.0, "max_workers": 20, "partitions": 64}, 4, "Deadline", ("lag",)),
    ({"lag": 30, "remaining_addresses": 1_000_000, "seconds_to_deadline": 1000.0,
      "worker_address_rate": 100.0, "max_workers": 20, "partitions": 64}, 15, "Lag", ()),
    ({"lag": 12, "remaining_addresses": 1_000_000, "seconds_to_deadline": 1000.0,
      "worker_address_rate": 100.0, "max_workers": 20, "partitions": 64}, 10, "Deadline", ()),
    ({"lag": 60, "remaining_addresses": 1_000_000, "seconds_to_deadline": 100.0,
      "worker_address_rate": 100.0, "max_workers": 20, "partitions": 64}, 20, "Deadline", ("max",)),
    ({"lag": 60, "remaining_addresses": 1_000_000, "seconds_to_deadline": 100.0,
      "worker_address_rate": 100.0, "max_workers": 20, "egress_addresses": 3,
      "partitions": 64}, 2, "Deadline",
     ("max", "rateBudget")),
])
def test_recommend(kw: dict[str, object], workers: int, reason: str,
                   limited: tuple[str, ...]) -> None:
    rec = recommend(inputs(**kw))
    assert (rec.workers, rec.reason, rec.limited_by) == (workers, reason, limited)
    assert str(workers) in rec.message


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(("current", "steps", "expected"), [
    # Scale up happens at once.
    (2, [(0, 8)], [8]),
    # Scale down waits until the higher recommendation left the 300 s window (8 held until 10).
    (8, [(0, 8), (10, 3), (100, 3), (305, 3), (311, 3)], [8, 8, 8, 8, 3]),
    # A blip down and back up never scales down.
    (8, [(0, 8), (10, 3), (20, 8), (200, 3), (400, 3), (510, 3)], [8, 8, 8, 8, 8, 3]),
    # Stepping down releases the highest recommendation still inside the window.
    (10, [(0, 10), (100, 6), (200, 4), (401, 4), (501, 4)], [10, 10, 10, 6, 4]),
])
def test_stabilize(current: int, steps: list[tuple[float, int]], expected: list[int]) -> None:
    history: tuple[Point, ...] = ()
    got = []
    for t, rec in steps:
        result = stabilize(current, rec, history, at(t), 300)
        history = result.history
        current = result.workers
        got.append(result.workers)
        assert len(history) <= 4  # change points only: the history stays small
    assert got == expected


def test_stabilize_without_window_scales_down_at_once() -> None:
    assert stabilize(8, 2, (Point(T0, 8),), at(1), 0).workers == 2


def test_held_back_flag() -> None:
    assert stabilize(8, 2, (Point(T0, 8),), at(10), 300).held_back
    assert not stabilize(2, 8, (), at(10), 300).held_back
