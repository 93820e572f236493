"""Where the real scheduler puts the operator's worker pods: spot nodes of every platform, zones, reclaims.

The Deployment, PDB and the rest are the operator's own desired objects (builders), owned by a real
WhoisCrawl object; the real controller-manager makes the pods, the real scheduler binds them to
KWOK nodes labelled and tainted like EKS, Karpenter, GKE, AKS spot nodes and on-demand ones.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
from opsupport_api import ApiError, until
from whoiscrawl.operator import builders
from whoiscrawl.operator.spec import DEFAULT_SPOT_LABELS, parse_spec

from .conftest import ON_DEMAND, POOL, WC, K8s, node, node_ready, pool_of

pytestmark = pytest.mark.timeout(240)


def owned_fleet(k8s: K8s, namespace: str, pool: str, capacity: str, replicas: int,
                scheduling: dict[str, Any] | None = None, **spec: Any) -> tuple[str, dict[str, Any]]:
    """A WhoisCrawl (no operator runs here; `spec`: more of its fields) and the objects the operator
    would make for it."""
    name = f"f{uuid.uuid4().hex[:6]}"
    raw = {"kafka": {"bootstrapServers": "kafka:9092"}, "redis": {"url": "redis://r:6379/0"},
           "scheduling": {"nodeSelector": {POOL: pool}, **(scheduling or {})}, **spec}
    crawl = k8s.api.create(*WC, namespace, {"apiVersion": "whoiscrawl.io/v1alpha1", "kind": "WhoisCrawl",
                                            "metadata": {"name": name}, "spec": raw})
    owner = builders.Owner(name, namespace, crawl["metadata"]["uid"])
    k8s.apply(builders.owned_objects(owner, parse_spec(crawl["spec"]), replicas, capacity))
    return name, crawl


def bound(k8s: K8s, namespace: str, crawl: str) -> dict[str, str]:
    """Pod name -> node name of the crawl's pods that are bound and not being deleted."""
    pods = [p for p in k8s.api.list("v1", "pods", namespace, builders.selector_string(crawl))
            if not p["metadata"].get("deletionTimestamp")]
    return {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods if p["spec"].get("nodeName")}


def placed(k8s: K8s, namespace: str, crawl: str, count: int, avoid: frozenset[str] = frozenset()
           ) -> dict[str, dict[str, str]]:
    """Pod name -> labels of its node, once exactly `count` pods (none of `avoid`) are bound."""
    nodes = until(lambda: (got := bound(k8s, namespace, crawl)) and len(got) == count
                  and not set(got) & avoid and got, 60, f"{count} pods bound")
    return {pod: (k8s.api.get("v1", "nodes", None, node) or {})["metadata"]["labels"]
            for pod, node in nodes.items()}


def is_spot(labels: dict[str, str]) -> bool:
    return any(labels.get(k) == v for k, v in DEFAULT_SPOT_LABELS.items())


def test_spot_workers_land_on_every_platforms_spot_nodes_across_zones(k8s: K8s, crd: dict,
                                                                      namespace: str) -> None:
    pool = f"p{uuid.uuid4().hex[:5]}"
    pool_of(k8s, pool, {"eks": "eks", "karp": "karpenter", "gke": "gke", "aks": "aks"}, on_demand=2)
    crawl, _ = owned_fleet(k8s, namespace, pool, "spot", replicas=8)
    nodes = placed(k8s, namespace, crawl, 8)
    assert all(is_spot(labels) for labels in nodes.values()), nodes
    zones = Counter(labels["topology.kubernetes.io/zone"] for labels in nodes.values())
    assert set(zones) == {"zone-a", "zone-b", "zone-c"}, zones
    # The tainted GKE and AKS spot nodes are used too: the workers tolerate their taints.
    hosts = {labels["kubernetes.io/hostname"] for labels in nodes.values()}
    assert {f"{pool}-gke", f"{pool}-aks"} <= hosts, hosts


def test_on_demand_workers_never_land_on_spot(k8s: K8s, crd: dict, namespace: str) -> None:
    pool = f"p{uuid.uuid4().hex[:5]}"
    pool_of(k8s, pool, {"eks": "eks", "karp": "karpenter"}, on_demand=2)
    crawl, _ = owned_fleet(k8s, namespace, pool, "on-demand", replicas=4)
    nodes = placed(k8s, namespace, crawl, 4)
    assert not any(is_spot(labels) for labels in nodes.values()), nodes


def test_spot_labels_of_another_node_group_are_the_ones_used(k8s: K8s, crd: dict,
                                                              namespace: str) -> None:
    """A spot pool labelled as none of the five platforms do (kops' lifecycle label): with
    `spotLabels` naming it, spot workers land there and never on the on-demand node."""
    pool = f"p{uuid.uuid4().hex[:5]}"
    kops = {"node.kubernetes.io/lifecycle": "spot"}
    names = [node(k8s, f"{pool}-kops", pool, "zone-a", kops),
             node(k8s, f"{pool}-od0", pool, "zone-b", ON_DEMAND)]
    for name in names:
        until(lambda n=name: node_ready(k8s, n), 30, f"node {name} Ready")
    crawl, _ = owned_fleet(k8s, namespace, pool, "spot", replicas=2,
                           scheduling={"spotLabels": kops})
    hosts = {labels["kubernetes.io/hostname"] for labels in placed(k8s, namespace, crawl, 2).values()}
    assert hosts == {f"{pool}-kops"}, hosts


def test_one_per_node_leaves_extra_workers_pending(k8s: K8s, crd: dict, namespace: str) -> None:
    pool = f"p{uuid.uuid4().hex[:5]}"
    pool_of(k8s, pool, {"eks": "eks", "karp": "karpenter"})
    crawl, _ = owned_fleet(k8s, namespace, pool, "spot", replicas=3, scheduling={"onePerNode": True})

    def pending() -> list[str]:
        return [p["metadata"]["name"] for p in k8s.api.list("v1", "pods", namespace,
                                                            builders.selector_string(crawl))
                if any(c["type"] == "PodScheduled" and c["status"] == "False"
                       and c.get("reason") == "Unschedulable"
                       for c in (p.get("status") or {}).get("conditions") or [])]
    until(lambda: len(pending()) == 1 and len(bound(k8s, namespace, crawl)) == 2, 60,
          "two pods bound, one Unschedulable")
    assert len(set(bound(k8s, namespace, crawl).values())) == 2  # on two nodes


def unschedulable(k8s: K8s, namespace: str, crawl: str) -> list[str]:
    """The scheduler's messages for the crawl's pods it could place nowhere."""
    pods = k8s.api.list("v1", "pods", namespace, builders.selector_string(crawl))
    return [c.get("message", "") for p in pods for c in (p.get("status") or {}).get("conditions") or []
            if c["type"] == "PodScheduled" and c["status"] == "False" and c.get("reason") == "Unschedulable"]


def test_a_worker_asks_for_its_scratch_disk_and_lands_only_where_it_fits(k8s: K8s, crd: dict,
                                                                         namespace: str) -> None:
    """The Deployment the API server stores carries the workers' scratch volume at /tmp, sized for
    the dumps the crawl reads by default, and asks the node's disk for it (ephemeral-storage): the
    scheduler binds it to a node with the room (KWOK's report 100Gi), and one asking for more than
    any node has stays Unschedulable instead of being evicted once the loader fills it."""
    pool = f"p{uuid.uuid4().hex[:5]}"
    pool_of(k8s, pool, {"eks": "eks"})
    crawl, _ = owned_fleet(k8s, namespace, pool, "spot", replicas=1)
    stored = k8s.api.get("apps/v1", "deployments", namespace, builders.worker_name(crawl))
    pod = stored["spec"]["template"]["spec"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "8Gi"}} in pod["volumes"], pod["volumes"]
    worker = pod["containers"][0]
    assert {"name": "tmp", "mountPath": "/tmp"} in worker["volumeMounts"]
    assert worker["resources"]["requests"]["ephemeral-storage"] == "8Gi", worker["resources"]
    assert worker["resources"]["limits"]["ephemeral-storage"] == "8256Mi", worker["resources"]
    placed(k8s, namespace, crawl, 1)
    too_big, _ = owned_fleet(k8s, namespace, pool, "spot", replicas=1, workers={"scratch": {"size": "200Gi"}})
    messages = until(lambda: unschedulable(k8s, namespace, too_big), 60, "the 200Gi worker Unschedulable")
    assert any("ephemeral-storage" in m for m in messages), messages


def evict(k8s: K8s, namespace: str, pod: str) -> None:
    k8s.api.create("v1", f"pods/{pod}/eviction", namespace, {
        "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": namespace}})


def test_a_spot_reclaim_drains_a_node_at_once_and_the_pods_move(k8s: K8s, crd: dict, namespace: str) -> None:
    """Karpenter, NTH and EKS node groups evict every pod of a reclaimed node through the Eviction API."""
    pool = f"p{uuid.uuid4().hex[:5]}"
    pool_of(k8s, pool, {"eks1": "eks", "eks2": "eks"}, on_demand=1)
    crawl, _ = owned_fleet(k8s, namespace, pool, "spot", replicas=4)
    before = placed(k8s, namespace, crawl, 4)
    reclaimed = f"{pool}-eks1"
    k8s.api.patch("v1", "nodes", None, reclaimed, {"spec": {"unschedulable": True}})
    victims = [pod for pod, labels in before.items() if labels["kubernetes.io/hostname"] == reclaimed]
    assert victims, before
    refused = []
    for pod in victims:
        try:
            evict(k8s, namespace, pod)
        except ApiError as exc:  # 429: the PodDisruptionBudget blocks the drain
            refused.append((pod, exc.status))
    assert refused == [], f"the crawl's PDB blocked a spot drain: {refused}"
    k8s.api.delete("v1", "nodes", None, reclaimed)
    after = placed(k8s, namespace, crawl, 4, avoid=frozenset(victims))
    hosts = {labels["kubernetes.io/hostname"] for labels in after.values()}
    assert hosts == {f"{pool}-eks2"}, after  # still spot: never the on-demand node


def test_deleting_the_crawl_garbage_collects_what_it_owned(k8s: K8s, crd: dict, namespace: str) -> None:
    pool = f"p{uuid.uuid4().hex[:5]}"
    pool_of(k8s, pool, {"eks": "eks"})
    crawl, _ = owned_fleet(k8s, namespace, pool, "spot", replicas=2)
    placed(k8s, namespace, crawl, 2)
    k8s.kubectl("delete", "wc", crawl, "-n", namespace, "--cascade=foreground", "--timeout=60s")
    for api, plural in (("apps/v1", "deployments"), ("apps/v1", "replicasets"), ("v1", "pods"),
                        ("v1", "configmaps"), ("v1", "serviceaccounts"),
                        ("policy/v1", "poddisruptionbudgets")):
        until(lambda a=api, p=plural: not [o for o in k8s.api.list(a, p, namespace)
                                           if o["metadata"]["name"].startswith(crawl)],
              60, f"{plural} of {crawl} collected")
