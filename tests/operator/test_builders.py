"""Desired-state builders: affinity per platform, spread, env, probes, PDB, hashes; all valid k8s."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes_validate
import pytest
from kubernetes.utils import parse_quantity
from whoiscrawl.operator import builders, control, scaling, scheduling, spot
from whoiscrawl.operator.spec import MIN_SCRATCH, SpecError, parse_spec
from whoiscrawl.operator.spot import PodView

from whoiscrawl.registry import spool

OWNER = builders.Owner("demo", "crawls", "uid-1", "0.1.0")
NOW = datetime(2026, 12, 6, 21, 0, tzinfo=UTC)
BASE: dict[str, Any] = {"kafka": {"bootstrapServers": "k:9092"}, "redis": {"url": "redis://r"}}


def spec_with(**changes: Any) -> Any:
    return parse_spec({**BASE, **changes})


def pod(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize(("capacity_type", "effective"), [
    ("spot", "spot"), ("on-demand", "on-demand"), ("any", "spot"),
])
def test_effective_capacity(capacity_type: str, effective: str) -> None:
    assert scheduling.effective_capacity(capacity_type) == effective


SPOT_KEYS = {"eks.amazonaws.com/capacityType", "karpenter.sh/capacity-type",
             "cloud.google.com/gke-spot", "cloud.google.com/gke-preemptible",
             "kubernetes.azure.com/scalesetpriority"}


@pytest.mark.parametrize(("capacity", "required_terms", "operator", "preferred", "aks_toleration"),
                         [("spot", 5, "In", 0, True),
                          ("on-demand", 1, "NotIn", 0, False),
                          ("any", 0, None, 5, True)])
def test_node_affinity_per_capacity(capacity: str, required_terms: int, operator: str | None,
                                    preferred: int, aks_toleration: bool) -> None:
    p = pod(builders.deployment(OWNER, spec_with(), 1, capacity))
    node = p["affinity"]["nodeAffinity"]
    terms = (node.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get(
        "nodeSelectorTerms", [])
    assert len(terms) == required_terms
    keys = {e["key"] for t in terms for e in t["matchExpressions"]}
    if required_terms:
        assert keys == SPOT_KEYS
        assert {e["operator"] for t in terms for e in t["matchExpressions"]} == {operator}
    assert len(node.get("preferredDuringSchedulingIgnoredDuringExecution", [])) == preferred
    has_aks = any(t["key"] == "kubernetes.azure.com/scalesetpriority" and t["effect"] ==
                  "NoSchedule" for t in p["tolerations"])
    assert has_aks == aks_toleration


def test_user_node_affinity_is_anded_with_spot() -> None:
    user = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]}]}]}}}
    p = pod(builders.deployment(OWNER, spec_with(scheduling={"affinity": user}), 1, "spot"))
    terms = p["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    assert len(terms) == 5
    assert all(any(e["key"] == "kubernetes.io/arch" for e in t["matchExpressions"]) for t in terms)


@pytest.mark.parametrize(("one_per_node", "hard"), [(True, True), (False, False)])
def test_one_worker_per_node(one_per_node: bool, hard: bool) -> None:
    p = pod(builders.deployment(OWNER, spec_with(scheduling={"onePerNode": one_per_node}), 1,
                                "spot"))
    anti = p["affinity"]["podAntiAffinity"]
    assert ("requiredDuringSchedulingIgnoredDuringExecution" in anti) == hard
    assert ("preferredDuringSchedulingIgnoredDuringExecution" in anti) == (not hard)


@pytest.mark.parametrize(("sched", "keys"), [
    ({}, ["topology.kubernetes.io/zone", "node.kubernetes.io/instance-type"]),
    ({"spreadInstanceTypes": False}, ["topology.kubernetes.io/zone"]),
    ({"spreadZones": False, "spreadInstanceTypes": False}, []),
])
def test_topology_spread(sched: dict[str, Any], keys: list[str]) -> None:
    p = pod(builders.deployment(OWNER, spec_with(scheduling=sched), 1, "spot"))
    assert [c["topologyKey"] for c in p["topologySpreadConstraints"]] == keys
    assert all(c["labelSelector"]["matchLabels"] == builders.selector_labels("demo")
               for c in p["topologySpreadConstraints"])


@pytest.mark.parametrize(("grace", "total", "fits"), [(10, 13, True), (12, 15, True), (20, 23, False),
                                                      (60, 63, False)])
def test_termination_fits_spot_notice(grace: int, total: int, fits: bool) -> None:
    p = pod(builders.deployment(OWNER, spec_with(workers={"gracePeriodSeconds": grace}), 1, "spot"))
    assert p["terminationGracePeriodSeconds"] == total
    assert builders.fits_spot_notice(grace) == fits
    assert "lifecycle" not in p["containers"][0]  # no preStop: workers serve no traffic to drain


def test_the_default_grace_fits_gkes_notice_for_ordinary_pods() -> None:
    p = pod(builders.deployment(OWNER, spec_with(), 1, "spot"))
    assert p["terminationGracePeriodSeconds"] <= 15


def test_no_fixed_uids_and_no_pdb_by_default() -> None:
    objects = builders.owned_objects(OWNER, spec_with(), 1, "spot")
    assert "PodDisruptionBudget" not in [o["kind"] for o in objects]
    security = pod(objects[-1])["securityContext"]
    assert security["runAsNonRoot"] is True and not {"runAsUser", "runAsGroup", "fsGroup"} & set(security)
    with_pdb = builders.owned_objects(OWNER, spec_with(workers={"maxUnavailable": "50%"}), 1, "spot")
    pdb = next(o for o in with_pdb if o["kind"] == "PodDisruptionBudget")
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    # It covers the overflow's on-demand pods as well as the spot ones.
    overflow = builders.owned_objects(OWNER, spec_with(workers={"maxUnavailable": "50%"}), 1, "any", 2)
    pods = [o["spec"]["template"]["metadata"]["labels"] for o in overflow if o["kind"] == "Deployment"]
    assert len(pods) == 2 and all(pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
                                  for labels in pods)



def test_a_worker_s_tmp_holds_the_answers_its_client_spools() -> None:
    """Long listings are spooled to the scratch volume until parsed (registry/spool.py): one smaller
    than the client's budget would have a worker evicted mid-crawl by its own listings, so neither
    the smallest default nor the smallest size a spec may give is below it."""
    (volume,) = pod(builders.owned_objects(OWNER, spec_with(), 1, "spot")[-1])["volumes"]
    needed = spool.MAX_SPOOLED_BYTES + (32 << 20)  # and the statistics
    assert parse_quantity(volume["emptyDir"]["sizeLimit"]) >= needed
    assert parse_quantity(MIN_SCRATCH) >= needed

def env_of(obj: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pod(obj)["containers"][0]["env"]}


@pytest.mark.parametrize(("egress", "key_in_config", "share", "node_field"), [
    ({"mode": "node"}, None, "1", True),
    ({"mode": "nat", "addresses": 3}, "nat", "3", False),
])
def test_egress_identity(egress: dict[str, Any], key_in_config: str | None, share: str,
                         node_field: bool) -> None:
    spec = spec_with(egress=egress)
    data = builders.config_data("demo", spec)
    assert data.get("WHOISCRAWL_EGRESS_KEY") == key_in_config
    assert data["WHOISCRAWL_EGRESS_SHARE"] == share
    env = env_of(builders.deployment(OWNER, spec, 1, "spot"))
    assert (env.get("WHOISCRAWL_EGRESS_KEY") == {"fieldRef": {"fieldPath": "spec.nodeName"}}) \
        == node_field


def test_defaults_keep_a_fleet_behind_one_nat_address_within_one_registry_limit() -> None:
    """Behind Cloud NAT or a NAT gateway every node leaves by one address: with no egress stated,
    every worker of every node shares ONE budget (key `nat`, share 1) and the rate-budget cap counts
    one address, however many nodes the pods are on (node mode gave each node its own budget)."""
    spec = spec_with()
    data = builders.config_data("demo", spec)
    assert (data.get("WHOISCRAWL_EGRESS_KEY"), data["WHOISCRAWL_EGRESS_SHARE"]) == ("nat", "1")
    assert "WHOISCRAWL_EGRESS_KEY" not in env_of(builders.deployment(OWNER, spec, 1, "spot"))
    pods = [PodView(f"w{i}", "Running", None, True, True, f"node-{i}") for i in range(12)]
    assert control.egress_addresses(spec, pods) == 1
    cap = scaling.budget_cap(spec.address_budget(), control.egress_addresses(spec, pods),
                             spec.workers.lookups_per_second)
    assert cap == math.ceil(spec.address_budget() / spec.workers.lookups_per_second)


def test_default_capacity_falls_back_to_on_demand_where_no_node_is_spot() -> None:
    """On-prem, kind or other node-group labels: no node is spot, the spot pods stay Unschedulable.
    The default (`any`) sizes on-demand overflow for them; `spot` alone had no way out."""
    spec = spec_with()
    stuck = PodView("w0", "Pending", NOW, False, False, None,
                    unschedulable_since=NOW - timedelta(seconds=spec.scheduling
                                                        .spot_pending_timeout_seconds))
    got = spot.decide(spec.scheduling.capacity_type, [stuck], NOW,
                      spec.scheduling.spot_pending_timeout_seconds)
    assert got.overflow == 1 and got.pending_message is None


@pytest.mark.parametrize(("capacity", "operator"), [("spot", "In"), ("on-demand", "NotIn")])
def test_spot_labels_are_the_users_when_given(capacity: str, operator: str) -> None:
    kops = {"node.kubernetes.io/lifecycle": "spot"}
    p = pod(builders.deployment(OWNER, spec_with(scheduling={"spotLabels": kops}), 1, capacity))
    terms = p["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    assert [e for t in terms for e in t["matchExpressions"]] == [
        {"key": "node.kubernetes.io/lifecycle", "operator": operator, "values": ["spot"]}]


@pytest.mark.parametrize(("labels", "message"), [
    ({}, "spec.scheduling.spotLabels: must name at least one label"),
    ({f"k{i}": "spot" for i in range(17)}, "spec.scheduling.spotLabels: holds 17 labels, at most 16"),
    ({"k": 1}, "spec.scheduling.spotLabels.k: must be a string"),
    (["karpenter.sh/capacity-type"], "spec.scheduling.spotLabels: must be an object"),
])
def test_bad_spot_labels_are_named(labels: Any, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        spec_with(scheduling={"spotLabels": labels})


def test_worker_config_and_secrets() -> None:
    spec = spec_with(redis={"urlSecretRef": {"name": "r", "key": "u"}},
                     kafka={"bootstrapServers": "k:9092", "credentialsSecret": "kafka-creds"},
                     registries={"lacnic": {"enabled": False}},
                     workers={"bootstrapUrl": "http://127.0.0.1:8080/ipv4.json"})
    data = builders.config_data("demo", spec)
    assert data["WHOISCRAWL_RATE_LIMITS"].split(",")[3] == "lacnic=0"
    assert data["WHOISCRAWL_BOOTSTRAP_URL"].endswith("ipv4.json")
    assert "WHOISCRAWL_REDIS_URL" not in data
    obj = builders.deployment(OWNER, spec, 2, "spot")
    assert env_of(obj)["WHOISCRAWL_REDIS_URL"] == {"secretKeyRef": {"name": "r", "key": "u"}}
    c = pod(obj)["containers"][0]
    assert {"secretRef": {"name": "kafka-creds"}} in c["envFrom"]
    assert c["command"] == ["whoiscrawl", "worker"]
    assert c["ports"][0]["containerPort"] == 9090
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_labels_owner_and_selector() -> None:
    for obj in builders.owned_objects(OWNER, spec_with(), 3, "spot"):
        meta = obj["metadata"]
        assert meta["ownerReferences"][0] == {
            "apiVersion": "whoiscrawl.io/v1alpha1", "kind": "WhoisCrawl", "name": "demo",
            "uid": "uid-1", "controller": True, "blockOwnerDeletion": True}
        assert meta["labels"]["app.kubernetes.io/instance"] == "demo"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "whoiscrawl-operator"
        assert meta["labels"]["app.kubernetes.io/version"] == "0.1.0"
    dep = builders.owned_objects(OWNER, spec_with(), 3, "spot")[-1]
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["selector"]["matchLabels"] == builders.selector_labels("demo")
    assert builders.selector_string("demo") == (
        "app.kubernetes.io/name=whoiscrawl,app.kubernetes.io/instance=demo,"
        "app.kubernetes.io/component=worker")


def test_hash_ignores_replicas_but_sees_config() -> None:
    spec = spec_with()
    a = builders.deployment(OWNER, spec, 1, "spot")
    b = builders.deployment(OWNER, spec, 7, "spot")
    c = builders.deployment(OWNER, spec_with(registries={"arin": {"rate": "5/s"}}), 1, "spot")
    d = builders.deployment(OWNER, spec, 1, "any")
    assert builders.desired_hash(a) == builders.desired_hash(b)
    assert builders.desired_hash(a) != builders.desired_hash(c) != builders.desired_hash(d)


@pytest.mark.parametrize("capacity", ["spot", "on-demand", "any"])
@pytest.mark.parametrize("sched", [{}, {"onePerNode": True, "nodeSelector": {"pool": "crawl"},
                                        "tolerations": [{"key": "x", "operator": "Exists"}],
                                        "priorityClassName": "low"}])
def test_objects_are_valid_kubernetes(capacity: str, sched: dict[str, Any]) -> None:
    for obj in builders.owned_objects(OWNER, spec_with(scheduling=sched), 2, capacity, 1):
        kubernetes_validate.validate(obj, "1.37.0", strict=True)


def _disk(request: str, limit: str) -> dict[str, dict[str, str]]:
    return {"requests": {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": request},
            "limits": {"memory": "512Mi", "ephemeral-storage": limit}}


CLAIM = {"ephemeral": {"volumeClaimTemplate": {"metadata": {"labels": builders.labels(OWNER)}, "spec": {
    "accessModes": ["ReadWriteOnce"], "storageClassName": "fast-ssd",
    "resources": {"requests": {"storage": "50Gi"}}}}}}
OWN_DISK = {"requests": {"ephemeral-storage": "2Gi"}, "limits": {"ephemeral-storage": "30Gi"}}


@pytest.mark.parametrize(("changes", "volume", "resources"), [
    # the default sources read the dumps: downloaded and staged there
    ({}, {"emptyDir": {"sizeLimit": "8Gi"}}, _disk("8Gi", "8256Mi")),
    ({"sources": {"use": "stats,live"}}, {"emptyDir": {"sizeLimit": "1Gi"}}, _disk("1Gi", "1088Mi")),
    # live alone: another RDAP service, no mirror of its files
    ({"workers": {"bootstrapUrl": "http://sim/ipv4.json"}}, {"emptyDir": {"sizeLimit": "1Gi"}},
     _disk("1Gi", "1088Mi")),
    # a schedule: later generations refresh the one before, its map spooled there
    ({"schedule": "@daily", "sources": {"use": "stats,live"}}, {"emptyDir": {"sizeLimit": "8Gi"}},
     _disk("8Gi", "8256Mi")),
    ({"schedule": "@daily"}, {"emptyDir": {"sizeLimit": "16Gi"}}, _disk("16Gi", "16448Mi")),
    ({"workers": {"scratch": {"size": "20Gi"}}}, {"emptyDir": {"sizeLimit": "20Gi"}},
     _disk("20Gi", "20544Mi")),
    # what workers.resources says of the disk stands
    ({"workers": {"resources": OWN_DISK}}, {"emptyDir": {"sizeLimit": "8Gi"}}, OWN_DISK),
    # a claim of its own StorageClass: not the node's disk, nothing asked of it
    ({"workers": {"scratch": {"size": "50Gi", "storageClassName": "fast-ssd"}}}, CLAIM,
     {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}),
])
def test_the_workers_scratch_volume_is_sized_for_what_the_crawl_reads(
        changes: dict[str, Any], volume: dict[str, Any], resources: dict[str, Any]) -> None:
    obj = builders.deployment(OWNER, spec_with(**changes), 1, "any")
    p = pod(obj)
    assert p["volumes"] == [{"name": "tmp", **volume}]
    assert p["containers"][0]["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert p["containers"][0]["resources"] == resources
    kubernetes_validate.validate(obj, "1.37.0", strict=True)


def test_the_overflow_deployment_is_on_demand_and_selects_only_its_own_pods() -> None:
    objs = builders.owned_objects(OWNER, spec_with(scheduling={"capacityType": "any"}), 4, "spot", 2)
    main, extra = objs[-2], objs[-1]
    assert extra["metadata"]["name"] == "demo-worker-overflow" and extra["spec"]["replicas"] == 2
    annotations = extra["spec"]["template"]["metadata"]["annotations"]
    assert annotations["whoiscrawl.io/capacity"] == "on-demand"
    assert main["spec"]["template"]["metadata"]["annotations"]["whoiscrawl.io/capacity"] == "spot"
    mine, theirs = (d["spec"]["selector"]["matchLabels"] for d in (main, extra))
    assert mine != theirs  # two Deployments never adopt each other's pods
    for dep in (main, extra):  # both fleets are the crawl's worker pods
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert builders.pod_labels("demo").items() <= labels.items()
    assert len(builders.owned_objects(OWNER, spec_with(), 4, "spot")) == 3  # no overflow (nor PDB): none


@pytest.mark.parametrize(("image", "version"), [
    ("ghcr.io/x/whoiscrawl:1.2.3", "1.2.3"), ("whoiscrawl", ""),
    ("localhost:5000/whoiscrawl", ""), ("x/y:2@sha256:abc", "2"),
])
def test_image_version(image: str, version: str) -> None:
    assert builders.image_version(image) == version


def test_the_sources_reach_the_workers_as_their_options() -> None:
    """spec.sources becomes the workers' --sources, --files-base, --accept-dump-terms, --verify and
    --fill-redacted (their environment); unset ones are left to the worker's default."""
    data = builders.config_data("demo", spec_with())
    assert "WHOISCRAWL_SOURCES" not in data and "WHOISCRAWL_FILES_BASE" not in data
    assert (data["WHOISCRAWL_VERIFY"], data["WHOISCRAWL_FILL_REDACTED"]) == ("0.001", "true")
    spec = spec_with(sources={"use": "stats,dumps,live", "filesBase": "http://mirror/", "verify": 0.01,
                              "acceptDumpTerms": "ripencc,afrinic", "fillRedacted": False})
    data = builders.config_data("demo", spec)
    assert data["WHOISCRAWL_SOURCES"] == "stats,dumps,live"
    assert data["WHOISCRAWL_FILES_BASE"] == "http://mirror/"
    assert data["WHOISCRAWL_ACCEPT_DUMP_TERMS"] == "ripencc,afrinic"
    assert (data["WHOISCRAWL_VERIFY"], data["WHOISCRAWL_FILL_REDACTED"]) == ("0.01", "false")


def test_a_fleet_without_live_is_refused() -> None:
    """The files alone are the local crawl's (`whoiscrawl crawl --sources stats,dumps`): a fleet
    crawls live what they lack."""
    with pytest.raises(SpecError) as caught:
        spec_with(sources={"use": "stats,dumps"})
    assert [p for p, _ in caught.value.problems] == ["spec.sources.use"]
    assert "must include live" in str(caught.value)


def test_a_later_generation_is_told_the_previous_one_to_refresh() -> None:
    """Generation N > 1's workers get WHOISCRAWL_PREVIOUS, generation N-1's crawl (the settings
    contract's); the first generation crawls anew."""
    spec = spec_with()
    first = builders.config_map(builders.Owner("demo", "ns", "u"), spec)["data"]
    third = builders.config_map(builders.Owner("demo", "ns", "u", generation=3), spec)["data"]
    assert "WHOISCRAWL_PREVIOUS" not in first and first["WHOISCRAWL_CRAWL"] == "ns.demo"
    assert (third["WHOISCRAWL_CRAWL"], third["WHOISCRAWL_PREVIOUS"]) == ("ns.demo.g3", "ns.demo.g2")
