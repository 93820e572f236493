"""The chart's ValidatingAdmissionPolicies on the real API server: a crawl's worker image only from
the allowed sources, and the operator's worker Deployments only as their crawl's ServiceAccount,
without a token, from those images; other namespaces and other users are left alone."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import yaml
from opsupport_api import until
from whoiscrawl.operator import builders
from whoiscrawl.operator.spec import parse_spec

from .conftest import CHART, K8s

pytestmark = [pytest.mark.timeout(120)]
RELEASE = "adm"
GOOD = "ghcr.io/whoiscrawl/whoiscrawl:1.2.3"  # the chart's image repository
EVIL = "evil.example/whoiscrawl:1.2.3"
SPEC = {"kafka": {"bootstrapServers": "k:9092"}, "redis": {"url": "redis://r:6379"}}


def _crawl(namespace: str, image: str | None) -> dict[str, Any]:
    workers = {"image": image} if image else {}
    return {"apiVersion": "whoiscrawl.io/v1alpha1", "kind": "WhoisCrawl",
            "metadata": {"name": f"c{uuid.uuid4().hex[:6]}", "namespace": namespace},
            "spec": {**SPEC, "workers": workers}}


def _worker(namespace: str, **pod: Any) -> dict[str, Any]:
    """The worker Deployment the operator builds for a crawl, its pod spec changed by `pod`."""
    owner = builders.Owner(f"c{uuid.uuid4().hex[:6]}", namespace, str(uuid.uuid4()), "1.2.3")
    obj = builders.deployment(owner, parse_spec(SPEC, worker_image=GOOD), 1, "any")
    obj["metadata"].pop("ownerReferences", None)  # its crawl does not exist: nothing to collect it
    spec = obj["spec"]["template"]["spec"]
    for key, value in pod.items():
        if key == "image":
            spec["containers"][0]["image"] = value
        else:
            spec[key] = value
    return obj


def _dry_run(k8s: K8s, obj: dict[str, Any], *as_user: str) -> tuple[bool, str]:
    """Create `obj` with a server-side dry run (admission runs, nothing is stored): (admitted, why)."""
    done = k8s.kubectl("create", "--dry-run=server", "-o", "name", "-f", "-", *as_user,
                       stdin=json.dumps(obj), check=False)
    return done.returncode == 0, done.stderr


def test_the_policies_pin_crawl_images_and_the_operators_worker_deployments(
        k8s: K8s, crd: dict, namespace: str) -> None:
    home = k8s.namespace(f"adm-{uuid.uuid4().hex[:6]}")  # the release's
    elsewhere = k8s.namespace(f"adm-{uuid.uuid4().hex[:6]}")  # not watched by this release
    rendered = k8s.helm("template", RELEASE, str(CHART), "-n", home, "--set",
                        f"watch.namespaces={{{namespace}}}", "-s", "templates/admissionpolicy.yaml").stdout
    policies = [doc for doc in yaml.safe_load_all(rendered) if doc]
    operator = f"system:serviceaccount:{home}:{RELEASE}-whoiscrawl"
    # What the chart's RBAC grants the operator on Deployments, here with the built-in `edit`.
    k8s.api.create("rbac.authorization.k8s.io/v1", "rolebindings", namespace, {
        "metadata": {"name": "operator-edit"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "name": f"{RELEASE}-whoiscrawl", "namespace": home}]})
    as_operator = (f"--as={operator}",)
    # A crawl of an image the policy refuses, made before it: its finalizer and labels still change
    # (deletion must not hang on it), its image does not.
    old = _crawl(namespace, EVIL)
    k8s.api.create("whoiscrawl.io/v1alpha1", "whoiscrawls", namespace, old)
    name = old["metadata"]["name"]
    try:
        k8s.apply(policies)
        # A policy takes effect once the API server has compiled it and seen its binding.
        until(lambda: not _dry_run(k8s, _crawl(namespace, EVIL))[0], 60, "the crawl-image policy in force")
        until(lambda: not _dry_run(k8s, _worker(namespace, image=EVIL), *as_operator)[0], 60,
              "the worker policy in force")
        crawls = {image: _dry_run(k8s, _crawl(namespace, image)) for image in (EVIL, GOOD, None)}
        unwatched = _dry_run(k8s, _crawl(elsewhere, EVIL))
        workers = {case: _dry_run(k8s, _worker(namespace, **pod), *as_operator) for case, pod in {
            "as built": {}, "default account": {"serviceAccountName": "default"},
            "no account": {"serviceAccountName": None},
            "another crawl's account": {"serviceAccountName": "other-worker"},
            "a token": {"automountServiceAccountToken": True}, "another image": {"image": EVIL},
        }.items()}
        by_admin = _dry_run(k8s, _worker(namespace, image=EVIL))
        relabelled = k8s.kubectl("label", "wc", name, "-n", namespace, "team=a", check=False)
        reimaged = k8s.kubectl("patch", "wc", name, "-n", namespace, "--type=merge", "-p",
                               json.dumps({"spec": {"workers": {"image": EVIL + "-2"}}}), check=False)
    finally:
        for doc in policies:
            kind = "validatingadmissionpolicybindings" if doc["kind"].endswith("Binding") else \
                "validatingadmissionpolicies"
            k8s.api.delete("admissionregistration.k8s.io/v1", kind, None, doc["metadata"]["name"])
        k8s.api.delete("v1", "namespaces", None, home)
        k8s.api.delete("v1", "namespaces", None, elsewhere)

    admitted, why = crawls[EVIL]
    assert not admitted and f"spec.workers.image: {EVIL} is not from a source this cluster allows" in why, why
    assert crawls[GOOD][0] and crawls[None][0], crawls
    assert unwatched[0], unwatched  # the release's policy binds only the namespaces it watches
    assert workers.pop("as built")[0]
    for case, (admitted, why) in workers.items():
        assert not admitted and "ValidatingAdmissionPolicy" in why, (case, why)
    assert "crawl's ServiceAccount" in workers["default account"][1]
    assert "from ghcr.io/whoiscrawl/whoiscrawl:" in workers["another image"][1]
    assert by_admin[0], by_admin  # only the operator is held to it
    assert relabelled.returncode == 0, relabelled.stderr
    assert reimaged.returncode != 0 and "is not from a source" in reimaged.stderr, reimaged.stderr
