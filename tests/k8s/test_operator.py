"""The chart's operator on a real control plane: a real crawl from `kubectl apply` to Completed and delete.

The chart is installed with helm; the real scheduler places its operator pod and the worker pods on
KWOK nodes; the kubelet runner runs each as a real process with its pod's service-account token, so
the operator has exactly the chart's RBAC. The API server's audit log is the RBAC check: any 403 for
the operator's service account fails the test, and the calls it made are compared with the grants.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka.admin import AdminClient
from opsupport_api import until
from opsupport_kubelet import Kubelet, kubelet
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner
from whoiscrawl.operator.builders import crawl_id
from whoiscrawl.operator.spec import parse_spec

from whoiscrawl import queue
from whoiscrawl.bench.common import Simulator
from whoiscrawl.cli import app
from whoiscrawl.dev.services import free_port
from whoiscrawl.sim.score import score
from whoiscrawl.store import Progress
from whoiscrawl.store.redis_admin import RedisCrawlAdmin

from .conftest import CHART, POOL, WC, K8s, blocks_of, pool_of

pytestmark = [pytest.mark.timeout(420), pytest.mark.slow, pytest.mark.services]
RELEASE = "wc"
OPERATOR_SA = f"{RELEASE}-whoiscrawl"


@dataclass
class Release:
    namespace: str
    kubelet: Kubelet
    liveness_port: int = 0  # the operator's kopf liveness endpoint on 127.0.0.1
    metrics_port: int = 0  # its Prometheus /metrics on 127.0.0.1

    def passes(self) -> float:
        """Reconcile passes the operator finished with a result (its own counter, every crawl)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        return sum(sample.value for family in text_string_to_metric_families(text)
                   if family.name == "whoiscrawl_operator_reconciles" for sample in family.samples
                   if sample.name.endswith("_total"))

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{OPERATOR_SA}"


@contextlib.contextmanager
def operator_release(k8s: K8s, tmp: Path, watched: list[str] | None, pool: str,
                     crawls_in: list[str]) -> Iterator[Release]:
    """`helm install` the chart (namespaced for `watched`, or all namespaces) and run its pods
    and those of the crawls in `crawls_in`."""
    ns = k8s.namespace(f"op-{uuid.uuid4().hex[:6]}")
    liveness, metrics_port = free_port(), free_port()
    values = {
        "watch": {"allNamespaces": watched is None, "namespaces": watched or []},
        "reconcileIntervalSeconds": 1, "livenessPort": liveness, "metrics": {"port": metrics_port},
        "nodeSelector": {POOL: pool}, "verbose": True,
        "crds": {"install": False},  # the `crd` fixture owns the cluster's CRD, shared by every test
    }
    values_file = tmp / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    k8s.helm("install", RELEASE, str(CHART), "-n", ns, "-f", str(values_file))
    try:
        with kubelet(k8s.api, tmp / "pods", {ns, *crawls_in}) as runner:
            until(lambda: runner.running(OPERATOR_SA), 60, "the operator's process")
            yield Release(ns, runner, liveness, metrics_port)
    finally:
        k8s.helm("uninstall", RELEASE, "-n", ns, check=False)
        k8s.api.delete("v1", "namespaces", None, ns)


def crawl_doc(name: str, services: Any, sim: Simulator, pool: str) -> dict[str, Any]:
    return {"apiVersion": "whoiscrawl.io/v1alpha1", "kind": "WhoisCrawl", "metadata": {"name": name},
            "spec": {
                "ranges": sim.ranges,
                "kafka": {"bootstrapServers": services.kafka_bootstrap},
                "redis": {"url": services.redis_url},
                "registries": {r: {"rate": f"{lim.rate_per_s:g}/s"} for r, lim in sim.limits().items()},
                "workers": {"min": 0, "max": 3, "scaleDownStabilizationSeconds": 0,
                            "gracePeriodSeconds": 10, "bootstrapUrl": sim.bootstrap_url,
                            "env": {"WHOISCRAWL_WHOIS": sim.whois}},
                "scheduling": {"nodeSelector": {POOL: pool}},
                "cleanup": {"topics": "Delete", "redis": "Delete"},
            }}


def drop_data(services: Any, prefix: str, ident: str) -> None:
    """A test's crawl data gone, whatever the crawl's own cleanup did."""
    with contextlib.suppress(Exception):
        queue.delete_topics(services.kafka_bootstrap, prefix, ident)
    with contextlib.suppress(Exception):
        RedisCrawlAdmin(services.redis_url, ident).delete_crawl()


def condition(k8s: K8s, ns: str, name: str, ctype: str) -> tuple[str, str] | None:
    got = k8s.api.get(*WC, ns, name) or {}
    for c in (got.get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            return c["status"], c.get("reason", "")
    return None


def audit_events(path: Path, user: str) -> list[dict[str, Any]]:
    events = []
    for line in path.read_text().splitlines():
        event = json.loads(line)
        if event.get("user", {}).get("username") == user:
            events.append(event)
    return events


def calls(events: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(API group, resource[/subresource], verb) of every resource request (not /api, /version)."""
    out = set()
    for e in events:
        ref = e.get("objectRef")
        if not ref:
            continue
        resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        out.add((ref.get("apiGroup", ""), resource, e["verb"]))
    return out


def granted(k8s: K8s, release_ns: str, watched: str, cluster_wide: bool) -> set[tuple[str, str, str]]:
    """What the chart's Role (or ClusterRole) and its discovery ClusterRole allow the operator."""
    rbac = "rbac.authorization.k8s.io/v1"
    roles = [k8s.api.get(rbac, "clusterroles", None, f"{OPERATOR_SA}-discovery")]
    roles.append(k8s.api.get(rbac, "clusterroles", None, OPERATOR_SA) if cluster_wide
                 else k8s.api.get(rbac, "roles", watched, OPERATOR_SA))
    roles.append(k8s.api.get(rbac, "roles", release_ns, f"{OPERATOR_SA}-leader"))  # the Lease
    return {(g, r, v) for role in roles for rule in (role or {}).get("rules", [])
            for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


# Grants this run does not exercise, and what does: everything else granted must be used.
NOT_EXERCISED = {
    ("", "secrets", "get"): "spec.redis.urlSecretRef or spec.kafka.credentialsSecret",
    ("policy", "poddisruptionbudgets", "get"): "spec.workers.maxUnavailable",
    ("policy", "poddisruptionbudgets", "create"): "spec.workers.maxUnavailable",
    ("policy", "poddisruptionbudgets", "patch"): "spec.workers.maxUnavailable",
    ("policy", "poddisruptionbudgets", "delete"): "spec.workers.maxUnavailable unset after set",
    ("", "configmaps", "patch"): "a spec edit (rates, env) while the crawl runs",
    ("", "serviceaccounts", "patch"): "a label change of the crawl's objects",
    ("whoiscrawl.io", "whoiscrawls/finalizers", "update"):
        "no request: admission checks it when ownerReferences set blockOwnerDeletion",
}


def forbidden(events: list[dict[str, Any]]) -> list[str]:
    return [f"{e['verb']} {e['requestURI']}" for e in events
            if (e.get("responseStatus") or {}).get("code") == 403]


def export_and_score(services: Any, prefix: str, crawl: str, out: Path) -> dict[str, Any]:
    records = queue.read_results(services.kafka_bootstrap, prefix, crawl)
    with out.open("w") as fh:
        fh.writelines(r.to_json().decode() + "\n" for r in records)
    return score("quick", str(out), None, resolution=24, time_scale=100.0)


def whoiscrawl_status(k8s: K8s, namespace: str, crawl: str) -> dict[str, Any]:
    """What `whoiscrawl status NAME --json` says of a WhoisCrawl, through the admin kubeconfig."""
    result = CliRunner().invoke(app, ["status", crawl, "-n", namespace, "--json",
                                      "--kubeconfig", str(k8s.cluster.kubeconfig)])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def check_rbac(k8s: K8s, release: Release, watched: str, cluster_wide: bool) -> None:
    """The API server's audit log of the operator's service account: no request refused, and every
    grant of the chart's Role (or ClusterRole) used, but those NOT_EXERCISED names."""
    events = audit_events(k8s.cluster.audit_log, release.user)
    assert events, "the operator made no request as its service account"
    assert forbidden(events) == [], "the chart's RBAC refused the operator"
    unused = granted(k8s, release.namespace, watched, cluster_wide) - calls(events) - set(NOT_EXERCISED)
    assert unused == set(), f"the chart grants what the operator never uses: {sorted(unused)}"


def test_a_crawl_runs_to_completed_under_the_charts_rbac(
        k8s: K8s, crd: dict, shared_pool: str, services: Any, quick_sim: Simulator, namespace: str,
        tmp_path: Path, uninterrupted_blocks: set[tuple[str, str]]) -> None:
    """A namespaced operator (a Role); the all-namespaces one (a ClusterRole) is checked the same
    way by the twin crawls' test below, which runs one anyway."""
    crawl = f"c{uuid.uuid4().hex[:6]}"
    doc = crawl_doc(crawl, services, quick_sim, shared_pool)
    prefix = parse_spec(doc["spec"]).kafka.queue_prefix
    ident = crawl_id(namespace, crawl)
    store = RedisCrawlAdmin(services.redis_url, ident)
    try:
        with operator_release(k8s, tmp_path, [namespace], shared_pool, [namespace]) as release:
            runner = release.kubelet
            k8s.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(doc))
            try:
                until(lambda: store.progress().lookups > 1000, 120, "lookups under way")
                killed = runner.kill("-worker-")  # the kubelet restarts it, as after an OOM kill
                until(lambda: condition(k8s, namespace, crawl, "Completed") == ("True", "AllShardsDone"),
                      180, "Completed")
            except AssertionError as exc:
                crawl_now = k8s.api.get(*WC, namespace, crawl)
                raise AssertionError(f"{exc}\n{crawl_now}\n{runner.tail()}") from None
            wide = k8s.kubectl("get", "wc", crawl, "-n", namespace, "-o", "wide").stdout
            status = whoiscrawl_status(k8s, namespace, crawl)
            figures = export_and_score(services, prefix, ident, tmp_path / "results.jsonl")

            k8s.kubectl("delete", "wc", crawl, "-n", namespace, "--timeout=120s")
            until(lambda: not k8s.api.list("apps/v1", "deployments", namespace), 60, "GC of the Deployment")
            until(lambda: not k8s.api.list("v1", "pods", namespace), 60, "worker pods gone")
            until(lambda: store.progress() == Progress(), 20, "Redis keys deleted")
            listed = AdminClient({"bootstrap.servers": services.kafka_bootstrap}).list_topics(timeout=10)
            assert not [t for t in queue.topic_names(prefix, ident) if t in listed.topics]
            check_rbac(k8s, release, namespace, cluster_wide=False)
            exits = list(runner.exits)
    finally:
        with contextlib.suppress(Exception):
            queue.delete_topics(services.kafka_bootstrap, prefix, ident)
        with contextlib.suppress(Exception):
            store.delete_crawl()

    header, row = wide.splitlines()[0].split(), wide.splitlines()[1].split()
    print(f"\n{wide}\nrecall {figures['recall_resolution']} coverage {figures['address_coverage']} "
          f"killed {killed}; exits {exits}")
    assert header[:6] == ["NAME", "READY", "PROGRESS", "%", "BLOCKS", "WORKERS"]
    assert row[0] == crawl and int(row[3]) > 0, wide  # Blocks, filled in from status
    # `whoiscrawl status NAME` reads the same status from the real API server.
    assert status["crawl"] == f"{namespace}/{crawl}" and status["complete"] and status["progress"] == 1.0
    assert status["blocks"] == int(row[3]) and status["shards"]["done"] == status["shards"]["total"]
    assert {"type": "Completed", "status": "True"}.items() <= next(
        c for c in status["conditions"] if c["type"] == "Completed").items()
    assert (killed, -9) in exits
    assert figures["recall_resolution"] == 1.0
    # The worker killed mid-crawl changed nothing: exactly the blocks of an uninterrupted crawl.
    found = blocks_of(tmp_path / "results.jsonl")
    extra, missing = found - uninterrupted_blocks, uninterrupted_blocks - found
    assert not extra and not missing, f"{len(extra)} extra, {len(missing)} missing blocks"


def test_kubectl_scale_drives_the_workers_through_the_scale_subresource(
        k8s: K8s, crd: dict, shared_pool: str, services: Any, quick_sim: Simulator, namespace: str,
        tmp_path: Path) -> None:
    crawl = f"s{uuid.uuid4().hex[:6]}"
    doc = crawl_doc(crawl, services, quick_sim, shared_pool)
    ident = crawl_id(namespace, crawl)
    prefix = parse_spec(doc["spec"]).kafka.queue_prefix
    try:
        with operator_release(k8s, tmp_path, [namespace], shared_pool, [namespace]):
            k8s.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(doc))
            until(lambda: condition(k8s, namespace, crawl, "Ready") is not None, 60, "first status")
            # In auto mode the operator sizes the fleet: kubectl scale is refused, and says why.
            refused = k8s.kubectl("scale", f"wc/{crawl}", "-n", namespace, "--replicas=2", check=False)
            assert refused.returncode != 0 and "needs workers.mode: manual" in refused.stderr, refused
            k8s.kubectl("patch", f"wc/{crawl}", "-n", namespace, "--type=merge",
                        "-p", '{"spec": {"workers": {"mode": "manual"}}}')
            k8s.kubectl("scale", f"wc/{crawl}", "-n", namespace, "--replicas=2")

            def deployment_replicas() -> int | None:
                dep = k8s.api.get("apps/v1", "deployments", namespace, f"{crawl}-worker") or {}
                return (dep.get("spec") or {}).get("replicas")

            until(lambda: deployment_replicas() == 2, 60, "Deployment at 2 replicas")
            scale = k8s.api.request("GET", f"/apis/whoiscrawl.io/v1alpha1/namespaces/{namespace}"
                                           f"/whoiscrawls/{crawl}/scale")
            assert scale["spec"]["replicas"] == 2
            until(lambda: (k8s.api.request("GET", f"/apis/whoiscrawl.io/v1alpha1/namespaces/{namespace}"
                                                  f"/whoiscrawls/{crawl}/scale").get("status") or {})
                  .get("replicas") == 2, 60, "status.replicas 2")
            # Conditions the operator wrote survive the API server's pruning.
            status = (k8s.api.get(*WC, namespace, crawl) or {}).get("status") or {}
            types = {c["type"] for c in status.get("conditions") or []}
            assert {"Ready", "Progressing"} <= types, status
            assert status.get("selector"), status
            k8s.kubectl("delete", "wc", crawl, "-n", namespace, "--timeout=120s")
    finally:
        drop_data(services, prefix, ident)


@dataclass
class DeleteWatch:
    """Samples, while a crawl is deleted, whether its data is gone and whether its workers still run."""

    store: RedisCrawlAdmin
    runner: Kubelet
    namespace: str
    samples: list[tuple[float, bool, int]] = field(default_factory=list)  # (t, data gone, workers)

    def sample(self) -> None:
        gone = self.store.progress() == Progress()
        workers = self.runner.alive("-worker-", self.namespace)  # draining ones still write
        self.samples.append((time.monotonic(), gone, len(workers)))

    def wiped_under_running_workers(self) -> list[tuple[float, bool, int]]:
        return [s for s in self.samples if s[1] and s[2] > 0]


def delete_watching(k8s: K8s, namespace: str, crawl: str, watch: DeleteWatch) -> None:
    """`kubectl delete wc` and sample until the object is gone."""
    k8s.kubectl("delete", "wc", crawl, "-n", namespace, "--wait=false")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and k8s.api.get(*WC, namespace, crawl) is not None:
        watch.sample()
        time.sleep(0.1)
    assert k8s.api.get(*WC, namespace, crawl) is None, "the crawl was never deleted"
    watch.sample()


def test_same_named_crawls_in_two_namespaces_and_a_delete_mid_crawl(
        k8s: K8s, crd: dict, shared_pool: str, services: Any, quick_sim: Simulator, namespace: str,
        tmp_path: Path) -> None:
    """All-namespaces operator: deleting one crawl stops its workers before its data goes, and
    leaves its same-named twin in another namespace crawling to Completed; the chart's ClusterRole
    refuses none of its requests, and each of its grants is used."""
    crawl, other = "twin", k8s.namespace(f"t-{uuid.uuid4().hex[:8]}")
    doc = crawl_doc(crawl, services, quick_sim, shared_pool)
    prefix = parse_spec(doc["spec"]).kafka.queue_prefix
    keep, gone = RedisCrawlAdmin(services.redis_url, crawl_id(namespace, crawl)), RedisCrawlAdmin(
        services.redis_url, crawl_id(other, crawl))
    try:
        with operator_release(k8s, tmp_path, None, shared_pool, [namespace, other]) as release:
            for ns in (namespace, other):
                k8s.kubectl("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(doc))
            until(lambda: keep.progress().lookups > 300 and gone.progress().lookups > 300, 120,
                  "both crawls under way")
            watch = DeleteWatch(gone, release.kubelet, other)
            delete_watching(k8s, other, crawl, watch)
            # A pass of the deleted crawl in flight ended before it was gone (kopf keeps the
            # finalizer until its timer has stopped); two more passes of the operator (the twin's,
            # the second started after the first ended) must not bring any of its data back.
            seen = release.passes()
            until(lambda: release.passes() >= seen + 2, 60, "two operator passes after the deletion")
            recreated = gone.progress() != Progress()
            listed = AdminClient({"bootstrap.servers": services.kafka_bootstrap}).list_topics(timeout=10)
            topics_left = [t for t in queue.topic_names(prefix, crawl_id(other, crawl)) if t in listed.topics]
            until(lambda: condition(k8s, namespace, crawl, "Completed") == ("True", "AllShardsDone"),
                  240, "the twin Completed")
            figures = export_and_score(services, prefix, crawl_id(namespace, crawl), tmp_path / "r.jsonl")
            check_rbac(k8s, release, namespace, cluster_wide=True)
    finally:
        for ns in (namespace, other):
            with contextlib.suppress(Exception):
                queue.delete_topics(services.kafka_bootstrap, prefix, crawl_id(ns, crawl))
        for store in (keep, gone):
            with contextlib.suppress(Exception):
                store.delete_crawl()
        k8s.api.delete("v1", "namespaces", None, other)
    assert watch.samples and watch.samples[-1][1], "the deleted crawl's Redis keys were not deleted"
    assert watch.wiped_under_running_workers() == [], "data was deleted while its workers still ran"
    assert not recreated and topics_left == []
    assert figures["recall_resolution"] == 1.0


def test_with_no_spot_capacity_left_the_on_demand_overflow_takes_over(
        k8s: K8s, crd: dict, services: Any, quick_sim: Simulator, namespace: str, tmp_path: Path) -> None:
    """capacityType any, one worker per node, one spot node: the real scheduler leaves two spot pods
    Unschedulable, and the operator sizes an on-demand overflow for them; the spot fleet stays."""
    pool = f"o{uuid.uuid4().hex[:5]}"
    pool_of(k8s, pool, {"eks": "eks"}, on_demand=3)
    crawl = f"o{uuid.uuid4().hex[:6]}"
    doc = crawl_doc(crawl, services, quick_sim, pool)
    doc["spec"]["workers"].update({"min": 3, "max": 3})
    doc["spec"]["scheduling"].update({"capacityType": "any", "onePerNode": True,
                                      "spotPendingTimeoutSeconds": 10})
    ident = crawl_id(namespace, crawl)
    prefix = parse_spec(doc["spec"]).kafka.queue_prefix

    def nodes_of(deployment: str) -> list[dict[str, str]]:
        dep = k8s.api.get("apps/v1", "deployments", namespace, deployment) or {}
        selector = ",".join(f"{k}={v}" for k, v in
                            ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels", {}).items())
        pods = k8s.api.list("v1", "pods", namespace, selector) if selector else []
        return [(k8s.api.get("v1", "nodes", None, p["spec"]["nodeName"]) or {})["metadata"]["labels"]
                for p in pods if p["spec"].get("nodeName") and not p["metadata"].get("deletionTimestamp")]

    try:
        with operator_release(k8s, tmp_path, [namespace], pool, [namespace]):
            k8s.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(doc))
            overflow = until(lambda: len(got := nodes_of(f"{crawl}-worker-overflow")) == 2 and got, 90,
                             "two overflow workers bound")
            spot_nodes = nodes_of(f"{crawl}-worker")
            spot_spec = (k8s.api.get("apps/v1", "deployments", namespace, f"{crawl}-worker") or {})["spec"]
            k8s.kubectl("delete", "wc", crawl, "-n", namespace, "--timeout=120s")
    finally:
        with contextlib.suppress(Exception):
            queue.delete_topics(services.kafka_bootstrap, prefix, ident)
        with contextlib.suppress(Exception):
            RedisCrawlAdmin(services.redis_url, ident).delete_crawl()
    assert all(labels.get("eks.amazonaws.com/capacityType") == "ON_DEMAND" for labels in overflow), overflow
    assert [labels["kubernetes.io/hostname"] for labels in spot_nodes] == [f"{pool}-eks"]
    assert spot_spec["replicas"] == 3  # the spot Deployment is kept, not flipped to on-demand
