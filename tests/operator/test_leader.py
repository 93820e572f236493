"""Who may take the operator's Lease, and what taking it writes (client-go's rules, pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from whoiscrawl.operator.leader import claimed, verdict

NOW = datetime(2026, 12, 6, 21, 0, tzinfo=UTC)


def at(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.parametrize(("spec", "unchanged_for", "want"), [
    (None, 0.0, "take"),  # no Lease yet
    ({}, 0.0, "take"),
    ({"holderIdentity": "me", "renewTime": at(1), "leaseDurationSeconds": 15}, 0.0, "renew"),
    ({"holderIdentity": "me", "renewTime": at(60), "leaseDurationSeconds": 15}, 60.0, "renew"),
    ({"holderIdentity": "rival", "renewTime": at(5), "leaseDurationSeconds": 15}, 5.0, "wait"),
    ({"holderIdentity": "rival", "renewTime": at(1), "leaseDurationSeconds": 15}, 14.9, "wait"),
    ({"holderIdentity": "rival", "renewTime": at(1), "leaseDurationSeconds": 15}, 15.0, "take"),
    # A renewTime far in the past but just seen changing (a rival's clock behind ours): wait.
    ({"holderIdentity": "rival", "renewTime": at(3600), "leaseDurationSeconds": 15}, 0.0, "wait"),
    ({"holderIdentity": "", "renewTime": at(1), "leaseDurationSeconds": 15}, 0.0, "take"),  # released
])
def test_verdict(spec: dict[str, Any] | None, unchanged_for: float, want: str) -> None:
    assert verdict(spec, "me", unchanged_for) == want


def test_taking_counts_a_transition_and_renewing_keeps_the_acquire_time() -> None:
    taken = claimed({"holderIdentity": "rival", "leaseTransitions": 2, "acquireTime": at(99)},
                    "me", NOW, 15)
    assert taken["holderIdentity"] == "me" and taken["leaseTransitions"] == 3
    assert taken["acquireTime"] == taken["renewTime"] == at(0)
    renewed = claimed(taken, "me", NOW + timedelta(seconds=2), 15)
    assert renewed["acquireTime"] == at(0) and renewed["leaseTransitions"] == 3
    assert claimed(None, "me", NOW, 15)["leaseTransitions"] == 0
