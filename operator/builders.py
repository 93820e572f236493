"""Desired state of a crawl's owned objects: Deployment, PDB, ServiceAccount, ConfigMap (pure)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes.utils import parse_quantity
from whoiscrawl.operator import scheduling
from whoiscrawl.operator.spec import GROUP, KIND, VERSION, CrawlSpec

from whoiscrawl.settings import env_name, worker_env

APP_NAME = "whoiscrawl"
COMPONENT = "worker"
COMPONENT_LABEL = "app.kubernetes.io/component"
OVERFLOW_COMPONENT = "worker-overflow"  # the on-demand overflow of a spot fleet
MANAGED_BY = "whoiscrawl-operator"
CRAWL_LABEL = f"{GROUP}/crawl"
HASH_ANNOTATION = f"{GROUP}/desired-hash"
CONFIG_HASH_ANNOTATION = f"{GROUP}/config-hash"
CAPACITY_ANNOTATION = f"{GROUP}/capacity"
TERMINATION_MARGIN_SECONDS = 3  # commit + exit after the drain
# The shortest spot notice pods get: GKE gives 30 s, of which ordinary pods get the first 15 s.
SHORTEST_SPOT_NOTICE_SECONDS = 15


@dataclass(frozen=True)
class Owner:
    """The WhoisCrawl object that owns everything built here."""

    name: str
    namespace: str
    uid: str
    version: str = ""  # app version label, from the image tag
    generation: int = 1  # a scheduled crawl's generation (operator/generations.py)


def crawl_id(namespace: str, name: str, generation: int = 1) -> str:
    """The crawl's identity in Kafka (topics, consumer group) and Redis (key prefix).

    Both parts are DNS labels (no dots), so two crawls of one name in two namespaces never meet.
    A scheduled crawl's later generations are `<namespace>.<name>.g<N>`: each its own topics and
    keys (a generation crawls afresh from the newest files), and no crawl's name holds a dot.
    """
    base = f"{namespace}.{name}"
    return base if generation <= 1 else f"{base}.g{generation}"


def worker_name(crawl: str) -> str:
    return f"{crawl}-worker"


def overflow_name(crawl: str) -> str:
    return f"{crawl}-worker-overflow"


def config_name(crawl: str) -> str:
    return f"{crawl}-worker-config"


def selector_labels(crawl: str, component: str = COMPONENT) -> dict[str, str]:
    """The immutable Deployment selector (and the scale subresource's label selector)."""
    return {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/instance": crawl,
            COMPONENT_LABEL: component}


def pod_labels(crawl: str) -> dict[str, str]:
    """Every worker pod of a crawl, spot and overflow."""
    return {CRAWL_LABEL: crawl}


def selector_string(crawl: str) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(crawl).items())


def labels(owner: Owner, component: str = COMPONENT) -> dict[str, str]:
    out = {**selector_labels(owner.name, component), "app.kubernetes.io/part-of": APP_NAME,
           "app.kubernetes.io/managed-by": MANAGED_BY, CRAWL_LABEL: owner.name}
    if owner.version:
        out["app.kubernetes.io/version"] = owner.version[:63]
    return out


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": owner.name,
            "uid": owner.uid, "controller": True, "blockOwnerDeletion": True}


def image_version(image: str) -> str:
    tail = image.rsplit("/", 1)[-1]
    return tail.split("@", 1)[0].split(":", 1)[1] if ":" in tail.split("@", 1)[0] else ""


def _meta(owner: Owner, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": owner.namespace, "labels": labels(owner),
            "ownerReferences": [owner_reference(owner)]}


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def with_hash(obj: dict[str, Any]) -> dict[str, Any]:
    """Stamp an object with the hash of its desired form, to patch only on real change."""
    digest = stable_hash(obj)
    obj["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = digest
    return obj


def termination_grace_seconds(grace: int) -> int:
    """The worker's own drain (WHOISCRAWL_GRACE_SECONDS) + commit/exit margin.

    No preStop: workers have no Service, so there is no traffic to let drain before SIGTERM.
    """
    return grace + TERMINATION_MARGIN_SECONDS


def fits_spot_notice(grace: int) -> bool:
    return termination_grace_seconds(grace) <= SHORTEST_SPOT_NOTICE_SECONDS


def notice_overrun(spec: CrawlSpec) -> str | None:
    """Why the workers' grace may be cut short on spot capacity (None: it fits, or no spot)."""
    grace = spec.workers.grace_period_seconds
    if spec.scheduling.capacity_type == "on-demand" or fits_spot_notice(grace):
        return None
    return (f"terminationGracePeriodSeconds {termination_grace_seconds(grace)} s (gracePeriodSeconds "
            f"{grace} + {TERMINATION_MARGIN_SECONDS}) exceeds the {SHORTEST_SPOT_NOTICE_SECONDS} s GKE "
            "gives ordinary pods of a spot notice: a reclaimed worker may be killed mid-drain (its "
            "shard resumes from the last checkpoint, so nothing is lost, but work is repeated)")


def config_data(crawl: str, spec: CrawlSpec, previous: str | None = None) -> dict[str, str]:
    """Worker environment that is not secret and not per pod (`crawl`: the crawl_id; `previous`:
    the previous generation's, which the load refreshes by difference), written through the
    settings contract (whoiscrawl/settings.py: what the worker reads)."""
    nat = spec.egress.mode == "nat"
    return {
        **spec.workers.extra_env,  # first: the operator's own keys below always win
        **worker_env(
            crawl=crawl,
            kafka_bootstrap=spec.kafka.bootstrap_servers,
            topic_prefix=spec.kafka.queue_prefix,
            rate_limits=spec.rate_limits_env(),
            metrics_port=spec.workers.metrics_port,
            grace_seconds=spec.workers.grace_period_seconds,
            egress_share=spec.egress.addresses if nat else 1,
            egress_key="nat" if nat else None,
            redis_url=spec.redis.url or None,
            bootstrap_url=spec.workers.bootstrap_url or None,
            previous=previous,
        ),
        **spec.sources.env(),
    }


def config_map(owner: Owner, spec: CrawlSpec) -> dict[str, Any]:
    return with_hash({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": _meta(owner, config_name(owner.name)),
                      "data": config_data(crawl_id(owner.namespace, owner.name, owner.generation), spec,
                                          previous_crawl(owner))})


def previous_crawl(owner: Owner) -> str | None:
    """The generation a scheduled crawl's generation N > 1 refreshes: N-1's crawl (its data kept
    while N runs: `history.keep` counts completed generations only)."""
    return crawl_id(owner.namespace, owner.name, owner.generation - 1) if owner.generation > 1 else None


def service_account(owner: Owner) -> dict[str, Any]:
    # Workers never talk to the Kubernetes API: no token in the pod.
    return with_hash({"apiVersion": "v1", "kind": "ServiceAccount",
                      "metadata": _meta(owner, worker_name(owner.name)),
                      "automountServiceAccountToken": False})


def pod_disruption_budget(owner: Owner, spec: CrawlSpec) -> dict[str, Any]:
    return with_hash({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": _meta(owner, worker_name(owner.name)),
        "spec": {"maxUnavailable": spec.workers.max_unavailable,
                 # Spot and overflow pods alike: a drain of on-demand nodes is held to it too.
                 "selector": {"matchLabels": pod_labels(owner.name)},
                 "unhealthyPodEvictionPolicy": "AlwaysAllow"},
    })


def _env(spec: CrawlSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": env_name("pod_name"), "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    if spec.egress.mode == "node":
        # Each node egresses from its own public address: the node IS the rate-limit key.
        env.append({"name": env_name("egress_key"),
                    "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}})
    if spec.redis.url_secret is not None:
        env.append({"name": env_name("redis_url"), "valueFrom": {"secretKeyRef": {
            "name": spec.redis.url_secret.name, "key": spec.redis.url_secret.key}}})
    return env


# The worker's scratch volume is mounted at /tmp: its download and staging folder is a
# `tempfile.TemporaryDirectory` (worker/runner.py), and TMPDIR is unset in the image.
SCRATCH_VOLUME, SCRATCH_PATH = "tmp", "/tmp"
# Room in the worker's ephemeral-storage limit beside its scratch emptyDir: its logs (the kubelet
# rotates them at 5 x 10Mi by default) count against the same limit.
LOG_ROOM_MI = 64


def scratch_volume(owner: Owner, spec: CrawlSpec) -> dict[str, Any]:
    """The worker pods' scratch volume: an emptyDir on the node's disk capped at its size, or a
    generic ephemeral volume of the StorageClass given (a claim made and deleted with each pod)."""
    size, storage_class = spec.scratch_size(), spec.workers.scratch.storage_class_name
    if storage_class is None:
        return {"name": SCRATCH_VOLUME, "emptyDir": {"sizeLimit": size}}
    claim = {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
             "resources": {"requests": {"storage": size}}}
    return {"name": SCRATCH_VOLUME, "ephemeral": {"volumeClaimTemplate": {
        "metadata": {"labels": labels(owner)}, "spec": claim}}}


def worker_resources(spec: CrawlSpec) -> dict[str, dict[str, str]]:
    """`workers.resources`, and where the scratch is an emptyDir, the node disk it takes as an
    ephemeral-storage request (the scheduler places the worker where the disk is) and limit (its
    size and the logs' room), unless `workers.resources` names them."""
    out = {k: dict(v) for k, v in spec.workers.resources.items()}
    if spec.workers.scratch.storage_class_name is None:
        size = spec.scratch_size()
        limit = f"{int(parse_quantity(size)) // (1 << 20) + LOG_ROOM_MI}Mi"
        out.setdefault("requests", {}).setdefault("ephemeral-storage", size)
        out.setdefault("limits", {}).setdefault("ephemeral-storage", limit)
    return out


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "metrics"}, "periodSeconds": period,
            "timeoutSeconds": 3, "failureThreshold": failures}


def pod_template(owner: Owner, spec: CrawlSpec, capacity: str, config_hash: str,
                 component: str = COMPONENT) -> dict[str, Any]:
    selector = selector_labels(owner.name, component)
    w = spec.workers
    env_from: list[dict[str, Any]] = [{"configMapRef": {"name": config_name(owner.name)}}]
    if spec.kafka.credentials_secret:
        env_from.append({"secretRef": {"name": spec.kafka.credentials_secret}})
    container = {
        "name": "worker",
        "image": w.image,
        "imagePullPolicy": w.image_pull_policy,
        "command": ["whoiscrawl", "worker"],
        "envFrom": env_from,
        "env": _env(spec),
        "ports": [{"name": "metrics", "containerPort": w.metrics_port, "protocol": "TCP"}],
        "startupProbe": _probe("/healthz", 2, 30),
        "livenessProbe": _probe("/healthz", 10, 3),
        "readinessProbe": _probe("/readyz", 5, 2),
        "resources": worker_resources(spec),
        "securityContext": {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
        },
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": worker_name(owner.name),
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": termination_grace_seconds(w.grace_period_seconds),
        # No fixed UIDs: the image's numeric USER satisfies runAsNonRoot, and OpenShift's
        # restricted SCC assigns its own.
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "affinity": scheduling.affinity(capacity, selector, spec.scheduling),
        "tolerations": scheduling.tolerations(capacity, spec.scheduling.tolerations),
        "topologySpreadConstraints": scheduling.topology_spread(selector, spec.scheduling),
        "volumes": [scratch_volume(owner, spec)],
    }
    container["volumeMounts"] = [{"name": SCRATCH_VOLUME, "mountPath": SCRATCH_PATH}]
    if spec.scheduling.node_selector:
        pod_spec["nodeSelector"] = dict(spec.scheduling.node_selector)
    if spec.scheduling.priority_class_name:
        pod_spec["priorityClassName"] = spec.scheduling.priority_class_name
    return {
        "metadata": {
            "labels": labels(owner, component),
            "annotations": {
                CONFIG_HASH_ANNOTATION: config_hash,
                CAPACITY_ANNOTATION: capacity,
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(w.metrics_port),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": pod_spec,
    }


def deployment(owner: Owner, spec: CrawlSpec, replicas: int, capacity: str,
               overflow: bool = False) -> dict[str, Any]:
    """The worker Deployment, or (`overflow`) its on-demand overflow. `replicas` is NOT part of
    the desired hash (patched on its own)."""
    cfg_hash = stable_hash(config_data(crawl_id(owner.namespace, owner.name, owner.generation), spec))
    component = OVERFLOW_COMPONENT if overflow else COMPONENT
    name = overflow_name(owner.name) if overflow else worker_name(owner.name)
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(owner, name),
        "spec": {
            "selector": {"matchLabels": selector_labels(owner.name, component)},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "revisionHistoryLimit": 3,
            "progressDeadlineSeconds": 600,
            "template": pod_template(owner, spec, "on-demand" if overflow else capacity, cfg_hash,
                                     component),
        },
    }
    with_hash(obj)
    obj["spec"]["replicas"] = replicas
    return obj


def owned_objects(owner: Owner, spec: CrawlSpec, replicas: int, capacity: str,
                  overflow: int | None = None) -> list[dict[str, Any]]:
    """Everything a crawl owns, in creation order (the Deployments last: they need the rest).

    `overflow`: the on-demand overflow Deployment's replicas (None: the crawl has none).
    """
    pdb = [pod_disruption_budget(owner, spec)] if spec.workers.max_unavailable is not None else []
    out = [service_account(owner), config_map(owner, spec), *pdb,
           deployment(owner, spec, replicas, capacity)]
    if overflow is not None:
        out.append(deployment(owner, spec, overflow, capacity, overflow=True))
    return out


def desired_hash(obj: Mapping[str, Any]) -> str | None:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(HASH_ANNOTATION)
    return str(value) if value is not None else None
