"""What a new user meets first, on a real API server: the CRD, helm install, plain manifests, examples."""

from __future__ import annotations

import json
import uuid

import yaml
from opsupport_api import until

from .conftest import CHART, ROOT, K8s

MANIFESTS = ROOT / "manifests"


def test_the_crd_is_accepted_and_serves_whoiscrawls(k8s: K8s, crd: dict) -> None:
    # (Established and NamesAccepted: the `crd` fixture waits for them.) What a user types works.
    assert crd["spec"]["names"]["shortNames"] == ["wc"]
    out = k8s.kubectl("api-resources", "--api-group=whoiscrawl.io", "-o", "name").stdout
    assert "whoiscrawls.whoiscrawl.io" in out
    k8s.kubectl("get", "wc", "-A")  # the short name resolves on the server (fails the test if not)


def test_the_plain_manifests_install_on_a_fresh_cluster(k8s: K8s, crd: dict) -> None:
    """`kubectl apply -f manifests/crds/`, then `-f manifests/whoiscrawl.yaml`, as the README says."""
    assert k8s.api.get("v1", "namespaces", None, "whoiscrawl-system") is None, "not a fresh cluster"
    k8s.kubectl("apply", "-f", str(MANIFESTS / "crds"))
    try:
        out = k8s.kubectl("apply", "-f", str(MANIFESTS / "whoiscrawl.yaml")).stdout
        assert "namespace/whoiscrawl-system created" in out
        dep = k8s.api.get("apps/v1", "deployments", "whoiscrawl-system", "whoiscrawl")
        assert dep is not None and dep["spec"]["template"]["spec"]["serviceAccountName"] == "whoiscrawl"
    finally:
        k8s.kubectl("delete", "-f", str(MANIFESTS / "whoiscrawl.yaml"), "--wait=false",
                    "--ignore-not-found")


def test_helm_installs_the_chart(k8s: K8s, crd: dict) -> None:
    release, ns = f"wc{uuid.uuid4().hex[:4]}", f"helm-{uuid.uuid4().hex[:6]}"
    before = crd_version(k8s)
    # crds.install=false: the cluster's CRD is the `crd` fixture's, shared by every test (a second
    # owner would be refused by helm); tests/operator/test_chart.py checks the templated CRD.
    out = k8s.helm("install", release, str(CHART), "-n", ns, "--create-namespace",
                   "--set", "crds.install=false", "--set", "watch.allNamespaces=false",
                   "--set", f"watch.namespaces={{{ns}}}").stdout
    try:
        assert "STATUS: deployed" in out
        listed = json.loads(k8s.helm("list", "-n", ns, "-o", "json").stdout)
        assert [r["status"] for r in listed if r["name"] == release] == ["deployed"]
        assert k8s.api.list("rbac.authorization.k8s.io/v1", "roles", ns)
        # With crds.install=false the release holds no CRD, and the installed CRD's spec was left
        # as it was.
        manifest = k8s.helm("get", "manifest", release, "-n", ns).stdout
        kinds = {d.get("kind") for d in yaml.safe_load_all(manifest) if d}
        assert "Deployment" in kinds and "CustomResourceDefinition" not in kinds, kinds
        assert crd_version(k8s) == before
    finally:
        k8s.helm("uninstall", release, "-n", ns, check=False)
        k8s.api.delete("v1", "namespaces", None, ns)


def crd_version(k8s: K8s) -> int:
    """The installed CRD's generation: it moves with every change to its spec (resourceVersion moves
    with the server's own status updates too, and helm 4 applies crds/ server-side, identical)."""
    got = k8s.api.get("apiextensions.k8s.io/v1", "customresourcedefinitions", None,
                      "whoiscrawls.whoiscrawl.io")
    assert got is not None
    return int(got["metadata"]["generation"])


def test_every_example_is_accepted(k8s: K8s, crd: dict, namespace: str) -> None:
    examples = sorted((MANIFESTS / "examples").glob("*.yaml"))
    assert examples
    for path in examples:
        k8s.kubectl("apply", "-n", namespace, "-f", str(path))
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "WhoisCrawl":
                got = k8s.api.get("whoiscrawl.io/v1alpha1", "whoiscrawls", namespace,
                                  doc["metadata"]["name"])
                assert got is not None
                # The server filled in the nested defaults the schema declares.
                assert got["spec"]["workers"]["lagThreshold"] > 0
                assert got["spec"]["registries"]["arin"]["enabled"] is True


def test_defaults_fill_an_empty_object_on_the_server(k8s: K8s, crd: dict, namespace: str) -> None:
    body = {"apiVersion": "whoiscrawl.io/v1alpha1", "kind": "WhoisCrawl",
            "metadata": {"name": "minimal"},
            "spec": {"kafka": {"bootstrapServers": "k:9092"}, "redis": {"url": "redis://r:6379"}}}
    got = k8s.api.create("whoiscrawl.io/v1alpha1", "whoiscrawls", namespace, body)
    assert got["spec"]["workers"]["min"] <= got["spec"]["workers"]["max"]
    assert got["spec"]["ranges"] == ["0.0.0.0/0"]
    assert got["spec"]["kafka"]["topicPrefix"] == "whoiscrawl"
    until(lambda: k8s.api.get("whoiscrawl.io/v1alpha1", "whoiscrawls", namespace, "minimal"), 5,
          "the crawl")


def test_applied_objects_keep_strings_that_yaml_1_2_reads_as_numbers(k8s: K8s, crd: dict,
                                                                      namespace: str) -> None:
    """A hash annotation such as 8215e42 is a float to kubectl's YAML 1.2 reader (CI met one)."""
    note = {"whoiscrawl.io/spec-hash": "8215e42", "whoiscrawl.io/plain": "0755"}
    k8s.apply({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "numeric-looking", "namespace": namespace, "annotations": note}})
    got = k8s.api.get("v1", "configmaps", namespace, "numeric-looking")
    assert {k: got["metadata"]["annotations"].get(k) for k in note} == note
