"""The apply helper's merge patches (remove what we no longer want, leave others' metadata); timeouts."""

from __future__ import annotations

import asyncio
from typing import Any

import kmock
import pytest
from opsupport_kmock import make
from whoiscrawl.operator.crd import build_crd
from whoiscrawl.operator.kube import (
    KubeClient,
    KubeError,
    matches,
    merge_diff,
    merge_patched,
    update_patch,
)


@pytest.mark.parametrize(("live", "want", "patch"), [
    ({"a": 1}, {"a": 1}, {}),
    ({"a": 1}, {"a": 2}, {"a": 2}),
    ({"a": {"x": 1, "y": 2}}, {"a": {"x": 1}}, {"a": {"y": None}}),
    ({"a": [1, 2]}, {"a": [1]}, {"a": [1]}),
    ({}, {"a": {"b": 1}}, {"a": {"b": 1}}),
    ({"req": {"terms": [1]}, "pref": [2]}, {"pref": [2]}, {"req": None}),
])
def test_merge_diff(live: dict[str, Any], want: dict[str, Any], patch: dict[str, Any]) -> None:
    assert merge_diff(live, want) == patch


@pytest.mark.parametrize(("live", "want"), [
    ({"a": 1}, {"a": 1}), ({"a": 1}, {"a": 2}), ({"a": {"x": 1, "y": 2}}, {"a": {"x": 1}}),
    ({"a": [1, 2]}, {"a": [1]}), ({}, {"a": {"b": 1}}), ({"a": {"b": 1}}, {}),
    ({"a": 1, "b": {"c": None}}, {"b": {"d": 2}}),
])
def test_merge_patched_applies_the_patch_merge_diff_makes(live: dict[str, Any], want: dict[str, Any]) -> None:
    """What the API server makes of a merge patch (RFC 7386): the status read back after a write
    whose reply was lost is compared with it (control.write_status)."""
    assert merge_patched(live, merge_diff(live, want)) == want
    patch = {"a": {"b": None, "d": 3}, "e": None}
    assert merge_patched({"a": {"b": 1, "c": 2}}, patch) == {"a": {"c": 2, "d": 3}}


def test_update_patch_keeps_foreign_metadata() -> None:
    live = {"metadata": {"annotations": {"deployment.kubernetes.io/revision": "3", "ours": "a"}},
            "spec": {"replicas": 2, "x": 1}}
    want = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "n", "annotations": {"ours": "b"}, "labels": {"l": "1"}},
            "spec": {"replicas": 2}}
    assert update_patch(live, want) == {
        "spec": {"x": None},
        "metadata": {"annotations": {"ours": "b"}, "labels": {"l": "1"}}}


@pytest.mark.parametrize(("labels", "selector", "ok"), [
    ({"a": "1", "b": "2"}, {"a": "1"}, True), ({"a": "2"}, {"a": "1"}, False),
    (None, {"a": "1"}, False), ({}, {}, True),
])
def test_matches(labels: dict[str, str] | None, selector: dict[str, str], ok: bool) -> None:
    assert matches(labels, selector) == ok


@pytest.mark.filterwarnings("ignore::DeprecationWarning:kmock")
async def test_a_stalled_api_call_times_out() -> None:
    kube = make(build_crd())
    kube.stalls[("GET", "deployments")] = 5.0  # far longer than the client waits
    async with kube, kmock.Server(kube) as server:
        client = KubeClient(str(server.url).rstrip("/"), timeout=0.5)
        with pytest.raises(KubeError) as caught:
            await asyncio.to_thread(client.get, "apps/v1", "deployments", "ns", "w")
        assert caught.value.status == 0 and "timed out" in str(caught.value).lower()
        # Calls without a stall answer as before.
        assert await asyncio.to_thread(client.get, "v1", "configmaps", "ns", "none") is None
