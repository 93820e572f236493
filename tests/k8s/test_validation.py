"""Invalid WhoisCrawl specs are refused by the API server itself, with the schema's or CEL rule's message."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
from opsupport_api import ApiError

from .conftest import WC, K8s

VALID: dict[str, Any] = {"kafka": {"bootstrapServers": "kafka:9092"}, "redis": {"url": "redis://r:6379/0"}}


def merged(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def create(k8s: K8s, namespace: str, spec: dict[str, Any], name: str | None = None) -> Any:
    body = {"apiVersion": "whoiscrawl.io/v1alpha1", "kind": "WhoisCrawl",
            "metadata": {"name": name or f"c{uuid.uuid4().hex[:6]}"}, "spec": spec}
    return k8s.api.create(*WC, namespace, body)


REFUSED = [
    ("min above max", {"workers": {"min": 5, "max": 2}}, "workers.min must be <= workers.max"),
    ("replicas above max", {"workers": {"mode": "manual", "max": 2, "replicas": 3}},
     "workers.replicas must be <= workers.max"),
    ("replicas in auto mode", {"workers": {"replicas": 2}}, "workers.replicas (kubectl scale, HPA, KEDA) "
                                                            "needs workers.mode: manual"),
    ("both redis url and secret", {"redis": {"url": "redis://r", "urlSecretRef": {"name": "s"}}},
     "set exactly one of redis.url or redis.urlSecretRef"),
    ("neither redis url nor secret", {"redis": {"url": None}},
     "set exactly one of redis.url or redis.urlSecretRef"),
    ("sample without samples", {"strategy": "sample"}, "samples must be > 0 when strategy is sample"),
    ("no registry enabled", {"registries": {r: {"enabled": False} for r in
                                            ("arin", "ripencc", "apnic", "lacnic", "afrinic")}},
     "enable at least one registry"),
    ("a rate that is no rate", {"registries": {"arin": {"rate": "fast"}}}, "spec.registries.arin.rate"),
    ("a range that is no CIDR", {"ranges": ["10.0.0.0/33"]}, "spec.ranges[0]"),
    ("no ranges at all", {"ranges": []}, "spec.ranges"),
    ("an unknown strategy", {"strategy": "random"}, "Unsupported value: \"random\""),
    ("a resolution past /32", {"resolution": 33}, "spec.resolution"),
    ("no kafka", {"kafka": None}, "spec.kafka: Required value"),
    ("a bad topic prefix", {"kafka": {"topicPrefix": "no spaces"}}, "spec.kafka.topicPrefix"),
    ("a redis url of another scheme", {"redis": {"url": "http://r"}}, "spec.redis.url"),
    ("a source that is none", {"sources": {"use": "stats,ftp,live"}}, "spec.sources.use"),
    ("terms of no registry", {"sources": {"acceptDumpTerms": "ripe"}}, "spec.sources.acceptDumpTerms"),
]


@pytest.mark.parametrize(("change", "message"), [(c, m) for _, c, m in REFUSED],
                         ids=[i for i, _, _ in REFUSED])
def test_an_invalid_spec_is_refused_with_its_rule(k8s: K8s, crd: dict, namespace: str,
                                                  change: dict[str, Any], message: str) -> None:
    with pytest.raises(ApiError) as refused:
        create(k8s, namespace, merged(VALID, change))
    assert refused.value.status == 422
    assert message in refused.value.body["message"], refused.value.body["message"]


def test_the_valid_base_is_accepted(k8s: K8s, crd: dict, namespace: str) -> None:
    assert create(k8s, namespace, VALID)["spec"]["strategy"] == "sweep"


def test_a_long_name_is_refused(k8s: K8s, crd: dict, namespace: str) -> None:
    with pytest.raises(ApiError) as refused:
        create(k8s, namespace, VALID, name="x" * 41)
    assert "metadata.name must be a DNS label of at most 40 characters" in refused.value.body["message"]


@pytest.mark.parametrize(("field", "change"), [
    ("kafka.topicPrefix", {"kafka": {"topicPrefix": "other"}}),
    ("kafka.bootstrapServers", {"kafka": {"bootstrapServers": "elsewhere:9092"}}),
    ("redis", {"redis": {"url": "redis://elsewhere:6379/0"}}),
])
def test_where_the_data_lives_cannot_change_mid_crawl(k8s: K8s, crd: dict, namespace: str, field: str,
                                                      change: dict[str, Any]) -> None:
    name = create(k8s, namespace, VALID)["metadata"]["name"]
    with pytest.raises(ApiError) as refused:
        k8s.api.patch(*WC, namespace, name, {"spec": change})
    assert refused.value.status == 422
    assert f"{field} cannot change once set" in refused.value.body["message"]
    # Other fields still change freely.
    k8s.api.patch(*WC, namespace, name, {"spec": {"workers": {"max": 3}}})
