"""A table of hostile WhoisCrawls against the chart's operator on a real API server.

Each spec is refused by the API server with a message naming the field (the CRD's schema and CEL
rules), or accepted and reported on its own crawl: a Degraded condition whose reason says what is
wrong, and a Warning Event. Meanwhile a good crawl keeps progressing (its lookups are measured
before and after the table) and the operator's process never exits and its liveness stays 200.
"""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import pytest
from opsupport_api import until
from whoiscrawl.operator.builders import crawl_id
from whoiscrawl.operator.spec import parse_spec

from whoiscrawl.bench.common import Simulator
from whoiscrawl.store.redis_admin import RedisCrawlAdmin

from .conftest import WC, K8s
from .test_hostile import healthz
from .test_operator import crawl_doc, drop_data, operator_release

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.services]


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = doc["spec"]
    for key in parents:
        node = node.setdefault(key, {})
    if value is DROP:
        node.pop(last, None)
    else:
        node[last] = value


DROP = object()
# (what is wrong, {spec path: value}, words the API server's refusal must hold)
REFUSED: list[tuple[str, dict[str, Any], list[str]]] = [
    ("octet over 255", {"ranges": ["999.0.0.0/8"]}, ["spec.ranges[0]", "should match"]),
    ("prefix over 32", {"ranges": ["10.0.0.0/33"]}, ["spec.ranges[0]"]),
    ("no ranges", {"ranges": []}, ["spec.ranges", "at least 1"]),
    ("ranges not a list", {"ranges": "10.0.0.0/8"}, ["spec.ranges", "array"]),
    ("too many ranges", {"ranges": [f"10.{i // 256}.{i % 256}.0/24" for i in range(1001)]},
     ["spec.ranges", "at most 1000"]),
    ("unknown strategy", {"strategy": "random"}, ["spec.strategy", "Unsupported value"]),
    ("sample without samples", {"strategy": "sample"}, ["samples must be > 0"]),
    ("resolution 33", {"resolution": 33}, ["spec.resolution", "32"]),
    ("shard prefix 4", {"shardPrefix": 4}, ["spec.shardPrefix", "8"]),
    ("rate not a rate", {"registries.arin.rate": "fast"}, ["spec.registries.arin.rate"]),
    ("every registry off", {"registries": {r: {"enabled": False} for r in
                                           ("arin", "ripencc", "apnic", "lacnic", "afrinic")}},
     ["enable at least one registry"]),
    ("unknown registry", {"registries.iana": {"rate": "1/s"}}, ["unknown field", "iana"]),
    ("min over max", {"workers.min": 5, "workers.max": 2}, ["workers.min must be <= workers.max"]),
    ("negative max", {"workers.max": -1}, ["spec.workers.max"]),
    ("replicas in auto mode", {"workers.replicas": 3}, ["needs workers.mode: manual"]),
    ("owned env key", {"workers.env": {"WHOISCRAWL_RATE_LIMITS": "arin=1000/s"}},
     ["workers.env may not set", "WHOISCRAWL_RATE_LIMITS"]),
    ("65 env vars", {"workers.env": {f"WHOISCRAWL_X{i}": "1" for i in range(65)}},
     ["spec.workers.env", "at most 64"]),
    ("pull policy", {"workers.imagePullPolicy": "Sometimes"}, ["imagePullPolicy", "Unsupported"]),
    ("no grace", {"workers.gracePeriodSeconds": 0}, ["gracePeriodSeconds"]),
    ("privileged port", {"workers.metricsPort": 80}, ["metricsPort"]),
    ("env not strings", {"workers.env": {"WHOISCRAWL_X": 1}}, ["spec.workers.env", "string"]),
    ("capacity cheap", {"scheduling.capacityType": "cheap"}, ["capacityType", "Unsupported"]),
    ("affinity shape", {"scheduling.affinity": {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": "heavy"}]}}},
     ["nodeAffinity", "weight"]),
    ("no spot labels", {"scheduling.spotLabels": {}}, ["spotLabels", "at least 1"]),
    ("spot timeout 1 s", {"scheduling.spotPendingTimeoutSeconds": 1}, ["spotPendingTimeoutSeconds"]),
    ("no kafka", {"kafka": DROP}, ["spec.kafka", "Required"]),
    ("topic prefix", {"kafka.topicPrefix": "bad prefix!"}, ["spec.kafka.topicPrefix"]),
    ("owned topic config", {"kafka.topicConfig": {"cleanup.policy": "delete"}},
     ["kafka.topicConfig may not set"]),
    ("partitions 0", {"kafka.partitions": 0}, ["spec.kafka.partitions"]),
    ("two redis sources", {"redis.urlSecretRef": {"name": "r"}},
     ["exactly one of redis.url or redis.urlSecretRef"]),
    ("password inline", {"redis.url": "redis://:hunter2@127.0.0.1:6379/0"}, ["spec.redis.url"]),
    ("not redis", {"redis.url": "http://127.0.0.1:6379"}, ["spec.redis.url"]),
    ("egress vpn", {"egress.mode": "vpn"}, ["spec.egress.mode", "Unsupported"]),
    ("no addresses", {"egress.addresses": 0}, ["spec.egress.addresses"]),
    ("cleanup maybe", {"cleanup.topics": "Maybe"}, ["spec.cleanup.topics", "Unsupported"]),
    ("deadline words", {"deadline": "tomorrow"}, ["spec.deadline"]),
    ("schedule in words", {"schedule": "every night"}, ["spec.schedule", "should match"]),
    ("schedule with seconds", {"schedule": "0 0 3 * * *"}, ["spec.schedule", "should match"]),
    ("time zone a path", {"schedule": "0 3 * * *", "timeZone": "../etc/passwd"}, ["spec.timeZone"]),
    ("keep no generation", {"schedule": "0 3 * * *", "history.keep": 0}, ["spec.history.keep"]),
]


def _doc(base: dict[str, Any], name: str, namespace: str, changes: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    doc["metadata"] = {"name": name, "namespace": namespace}
    for path, value in changes.items():
        _set(doc, path, value)
    return doc


def _reported(k8s: K8s, namespace: str, name: str) -> tuple[dict[str, Any], list[str]] | None:
    """The crawl's Degraded condition when True, with the reasons of its Warning Events."""
    got = k8s.api.get(*WC, namespace, name) or {}
    degraded = next((c for c in (got.get("status") or {}).get("conditions") or []
                     if c["type"] == "Degraded" and c["status"] == "True"), None)
    if degraded is None:
        return None
    warnings = [e["reason"] for e in k8s.api.list("v1", "events", namespace)
                if e["involvedObject"]["name"] == name and e["type"] == "Warning"]
    return degraded, warnings


def test_hostile_specs_are_refused_or_reported_and_nothing_else_suffers(
        k8s: K8s, crd: dict, shared_pool: str, services: Any, quick_sim: Simulator,
        namespace: str, tmp_path: Path) -> None:
    quota_ns = k8s.namespace(f"q-{uuid.uuid4().hex[:6]}")
    k8s.api.create("v1", "resourcequotas", quota_ns, {
        "metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}})
    good = f"g{uuid.uuid4().hex[:6]}"
    base = crawl_doc(good, services, quick_sim, shared_pool)
    base["spec"]["workers"]["min"] = 1
    k8s.api.create("v1", "secrets", namespace, {  # Strimzi's user.p12 is not text
        "metadata": {"name": "kafka-p12"}, "data": {"user.p12": "gICAgA=="}})
    # (name, namespace, changes, Degraded reason the operator must report)
    reported: list[tuple[str, str, dict[str, Any], str]] = [
        ("r-port", namespace, {"redis.url": "redis://127.0.0.1:notaport/0",
                               "cleanup": {"topics": "Retain", "redis": "Retain"}},
         "BackendUnavailable"),
        ("r-nosecret", namespace, {"redis.url": DROP, "redis.urlSecretRef": {"name": "missing"},
                                   "cleanup": {"topics": "Retain", "redis": "Retain"}},
         "BackendUnavailable"),
        ("r-nokafkasecret", namespace, {"kafka.credentialsSecret": "missing-too",
                                        "cleanup": {"topics": "Retain", "redis": "Retain"}},
         "BackendUnavailable"),
        ("r-badlabel", namespace, {"scheduling.spotLabels": {"bad key!": "spot"}}, "ApplyFailed"),
        ("r-priority", namespace, {"scheduling.priorityClassName": "no-such-class"},
         "PodsNotCreated"),
        ("r-nowhere", namespace, {"scheduling.capacityType": "on-demand",
                                  "scheduling.spotPendingTimeoutSeconds": 10,
                                  "scheduling.nodeSelector": {"whoiscrawl.test/pool": "none"}},
         "WorkersUnschedulable"),
        ("r-quota", quota_ns, {}, "PodsNotCreated"),
        # the CRD checks a schedule's shape, the operator its values
        ("r-cron", namespace, {"schedule": "61 3 * * *"}, "InvalidSpec"),
        ("r-zone", namespace, {"schedule": "0 3 * * *", "timeZone": "Mars/Olympus"}, "InvalidSpec"),
    ]
    idents = [crawl_id(ns, name) for name, ns, _, _ in reported] + [crawl_id(namespace, good)]
    prefix = parse_spec(base["spec"]).kafka.queue_prefix
    store = RedisCrawlAdmin(services.redis_url, crawl_id(namespace, good))
    try:
        with operator_release(k8s, tmp_path, [namespace, quota_ns], shared_pool,
                              [namespace, quota_ns]) as release:
            k8s.apply({**base, "metadata": {"name": good, "namespace": namespace}})
            until(lambda: store.progress().lookups > 0, 120, "the good crawl under way")
            before = store.progress().lookups
            probes = [healthz(release.liveness_port)]
            refusals = {}
            for what, changes, _ in REFUSED:
                name = f"h{uuid.uuid4().hex[:6]}"
                done = k8s.apply(_doc(base, name, namespace, changes), check=False)
                refusals[what] = (done.returncode, done.stderr)
                probes.append(healthz(release.liveness_port))
            for name, ns, changes, _ in reported:
                k8s.apply(_doc(base, name, ns, changes))
            found = {name: until(lambda n=name, s=ns: _reported(k8s, s, n), 120, f"{name} reported",
                                 every=1.0) for name, ns, _, _ in reported}
            probes.append(healthz(release.liveness_port))
            after = store.progress().lookups
            operator_exits = [e for e in release.kubelet.exits if e[0].startswith("wc-")]
            for name, ns, _, _ in [*reported, (good, namespace, {}, "")]:
                k8s.kubectl("delete", "wc", name, "-n", ns, "--timeout=120s")
    finally:
        for ident in idents:
            drop_data(services, prefix, ident)
        k8s.api.delete("v1", "namespaces", None, quota_ns)
    print(f"\nrefused {sum(1 for rc, _ in refusals.values() if rc)}/{len(REFUSED)}, reported "
          f"{ {n: f[0]['reason'] for n, f in found.items()} }, good crawl lookups {before} -> {after}, "
          f"probes {probes}")
    for what, changes, words in REFUSED:
        code, err = refusals[what]
        assert code != 0, f"{what}: accepted: {changes}"
        for word in words:
            assert word in err, f"{what}: {word!r} not in {err}"
    for name, _, _, reason in reported:
        degraded, warnings = found[name]
        assert degraded["reason"] == reason, (name, degraded)
        assert degraded["message"] and reason in warnings, (name, degraded, warnings)
    assert len(REFUSED) + len(reported) >= 30
    assert after > before, "the good crawl stopped while the hostile ones were handled"
    assert set(probes) == {200} and operator_exits == []
