"""Who may take the operator's Lease, and what taking it writes (client-go's rules, pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from whoiscrawl.operator.leader import claimed, verdict

NOW = datetime(2026, 12, 6, 21, 0, tzinfo=UTC)


def at(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.parametrize(("spec", "want"), [
    (None, "take"),  # no Lease yet
    ({}, "take"),
    ({"holderIdentity": "me", "renewTime": at(1), "leaseDurationSeconds": 15}, "renew"),
    ({"holderIdentity": "me", "renewTime": at(60), "leaseDurationSeconds": 15}, "renew"),
    ({"holderIdentity": "rival", "renewTime": at(5), "leaseDurationSeconds": 15}, "wait"),
    ({"holderIdentity": "rival", "renewTime": at(14.9), "leaseDurationSeconds": 15}, "wait"),
    ({"holderIdentity": "rival", "renewTime": at(15.1), "leaseDurationSeconds": 15}, "take"),
    ({"holderIdentity": "rival", "leaseDurationSeconds": 15}, "take"),  # never renewed
    ({"holderIdentity": "", "renewTime": at(1), "leaseDurationSeconds": 15}, "take"),  # released
    ({"holderIdentity": "rival", "renewTime": "garbage", "leaseDurationSeconds": 15}, "take"),
])
def test_verdict(spec: dict[str, Any] | None, want: str) -> None:
    assert verdict(spec, "me", NOW) == want


def test_taking_counts_a_transition_and_renewing_keeps_the_acquire_time() -> None:
    taken = claimed({"holderIdentity": "rival", "leaseTransitions": 2, "acquireTime": at(99)},
                    "me", NOW, 15)
    assert taken["holderIdentity"] == "me" and taken["leaseTransitions"] == 3
    assert taken["acquireTime"] == taken["renewTime"] == at(0)
    renewed = claimed(taken, "me", NOW + timedelta(seconds=2), 15)
    assert renewed["acquireTime"] == at(0) and renewed["leaseTransitions"] == 3
    assert claimed(None, "me", NOW, 15)["leaseTransitions"] == 0
