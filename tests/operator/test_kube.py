"""The apply helper's merge patches: remove what we no longer want, leave others' metadata."""

from __future__ import annotations

from typing import Any

import pytest
from whoiscrawl.operator.kube import matches, merge_diff, update_patch


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
