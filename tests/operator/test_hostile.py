"""One tenant's hostile spec, Secret or URL is reported on its own crawl and never raises out of a pass."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import pytest
from opsupport_crd import validator
from opsupport_fakes import EmptyKube, FakeBackend
from whoiscrawl.operator import builders, control
from whoiscrawl.operator.backend import BackendError, LiveBackend, Target
from whoiscrawl.operator.kube import secret_data
from whoiscrawl.operator.spec import SpecError, parse_spec

BASE: dict[str, Any] = {"kafka": {"bootstrapServers": "k:9092"}, "redis": {"url": "redis://r:6379/0"}}
PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"

# (affinity, the field path the error must name)
BAD_AFFINITIES = [
    ({"nodeAffinity": "x"}, "spec.scheduling.affinity.nodeAffinity"),
    ({"nodeAffinity": {PREFERRED: [{"weight": "heavy", "preference": {}}]}},
     f"spec.scheduling.affinity.nodeAffinity.{PREFERRED}.0.weight"),
    ({"nodeAffinity": {PREFERRED: [{"weight": 1}]}},
     f"spec.scheduling.affinity.nodeAffinity.{PREFERRED}.0.preference"),
    ({"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": "all"}}},
     f"spec.scheduling.affinity.nodeAffinity.{REQUIRED}.nodeSelectorTerms"),
    ({"podAntiAffinity": {REQUIRED: [{"labelSelector": {}}]}},
     f"spec.scheduling.affinity.podAntiAffinity.{REQUIRED}.0.topologyKey"),
    ({"podAffinity": [1, 2]}, "spec.scheduling.affinity.podAffinity"),
    ({"nodeAffinity": {PREFERRED: {"weight": 1}}}, f"spec.scheduling.affinity.nodeAffinity.{PREFERRED}"),
]


@pytest.mark.parametrize(("affinity", "path"), BAD_AFFINITIES)
def test_an_affinity_of_the_wrong_shape_is_an_invalid_spec_naming_the_field(
        affinity: dict[str, Any], path: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({**BASE, "scheduling": {"affinity": affinity}})
    assert path in [p for p, _ in caught.value.problems], caught.value.problems


@pytest.mark.parametrize(("affinity", "path"), BAD_AFFINITIES)
def test_the_crd_types_affinity_as_core_v1(affinity: dict[str, Any], path: str) -> None:
    doc = {"apiVersion": "whoiscrawl.io/v1alpha1", "kind": "WhoisCrawl", "metadata": {"name": "a"},
           "spec": {**BASE, "scheduling": {"affinity": affinity}}}
    assert list(validator().iter_errors(doc)), f"the CRD accepts affinity {affinity}"


def test_a_well_formed_affinity_is_merged_into_the_pod_template() -> None:
    zone = {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In",
                                  "values": ["a"]}]}
    spec = parse_spec({**BASE, "scheduling": {"affinity": {
        "nodeAffinity": {PREFERRED: [{"weight": 5, "preference": zone}]}}}})
    owner = builders.Owner("a", "ns", "u", "1")
    deployment = next(o for o in builders.owned_objects(owner, spec, 1, "spot", None)
                      if o["kind"] == "Deployment")
    preferred = deployment["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][PREFERRED]
    assert {"weight": 5, "preference": zone} in preferred


class OneSecret:
    """A Kube holding one Secret (the reconciler's reads of it)."""

    def __init__(self, data: dict[str, bytes]) -> None:
        self.secret = {"data": {k: base64.b64encode(v).decode() for k, v in data.items()}}

    def get(self, api: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.secret if plural == "secrets" else None


def test_a_binary_key_in_the_credentials_secret_is_left_out() -> None:
    """Strimzi's KafkaUser Secret holds a PKCS#12 keystore (`user.p12`) beside the text keys."""
    kube = OneSecret({"user.p12": b"\x30\x82\x0a\xff\xfe", "WHOISCRAWL_KAFKA_SASL_USERNAME": b"u"})
    assert secret_data(kube, "ns", "creds") == {"WHOISCRAWL_KAFKA_SASL_USERNAME": "u"}  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["redis://r:notaport/0", "redis://r:99999999/0", "redis:/"])
def test_a_malformed_redis_url_is_a_backend_error(url: str) -> None:
    """The CRD's pattern only checks the scheme; redis-py's ValueError becomes a BackendError."""
    t = Target(crawl="ns.c", bootstrap="k:9092", prefix="whoiscrawl.", redis_url=url)
    with pytest.raises(BackendError, match="connecting to Redis"):
        LiveBackend().counters(t)


class Broken(FakeBackend):
    """A data plane that fails in a way nobody planned for."""

    def lag(self, t: Target) -> int:
        raise ZeroDivisionError("a bug")


def test_a_pass_that_raises_is_reported_on_its_crawl() -> None:
    crawl = control.Crawl(name="c", namespace="ns", uid="u-raises", generation=3, spec=BASE, status={})
    deps = control.Deps(kube=EmptyKube(), backend=Broken())  # type: ignore[arg-type]
    result = control.reconcile(deps, crawl)
    degraded = next(c for c in result.status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ReconcileError")
    assert "ZeroDivisionError: a bug" in degraded["message"]
    assert ("Warning", "ReconcileError", degraded["message"]) in result.events
    assert result.api_error is not None  # retried after the interval


@pytest.mark.parametrize("url", ["redis://:hunter2@r:6379/0", "rediss://user:hunter2@r/0"])
def test_an_inline_redis_password_is_refused_and_never_echoed(url: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({**BASE, "redis": {"url": url}})
    assert "urlSecretRef" in str(caught.value) and "hunter2" not in str(caught.value)
    doc = {"apiVersion": "whoiscrawl.io/v1alpha1", "kind": "WhoisCrawl", "metadata": {"name": "a"},
           "spec": {**BASE, "redis": {"url": url}}}
    assert list(validator().iter_errors(doc)), "the CRD accepts a password in redis.url"
    parse_spec({**BASE, "redis": {"url": "redis://user@r:6379/0"}})  # a user name alone is fine


def test_a_password_from_a_secret_is_redacted_in_backend_errors() -> None:
    """A client error that echoes the URL (as redis-py's parse errors may) reaches status, Events
    and logs only redacted."""
    def echo() -> None:
        raise ValueError("cannot use rediss://user:hunter2@r:x/0 or redis://:hunter2@r")

    with pytest.raises(BackendError) as caught:
        LiveBackend._call("connecting to Redis", echo)
    assert "hunter2" not in str(caught.value)
    assert "rediss://user:***@r:x/0" in str(caught.value) and "redis://:***@r" in str(caught.value)


@pytest.mark.parametrize("key", ["WHOISCRAWL_RATE_LIMITS", "WHOISCRAWL_TOPIC_PREFIX", "WHOISCRAWL_CRAWL"])
def test_workers_env_may_not_set_what_the_operator_sets(key: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({**BASE, "workers": {"env": {key: "x", "WHOISCRAWL_WHOIS": "127.0.0.1:43"}}})
    assert [p for p, _ in caught.value.problems] == [f"spec.workers.env.{key}"]
    # Built from a spec that holds one anyway (an older operator's object), ours still win.
    spec = parse_spec(BASE)
    spec = replace(spec, workers=replace(spec.workers, extra_env={key: "x", "WHOISCRAWL_WHOIS": "w"}))
    data = builders.config_data("ns.c", spec)
    assert data[key] != "x" and data["WHOISCRAWL_WHOIS"] == "w"


# (a spec fragment, the field the parser names): the CRD refuses each too.
OUT_OF_BOUNDS = [
    ({"ranges": ["999.0.0.0/8"]}, "spec.ranges[0]"),
    ({"ranges": ["10.256.0.0/16"]}, "spec.ranges[0]"),
    ({"excludes": ["1.2.3.400/32"]}, "spec.excludes[0]"),
    ({"ranges": [f"10.{i // 256}.{i % 256}.0/24" for i in range(1001)]}, "spec.ranges"),
    ({"workers": {"min": 5000, "max": 10}}, "spec.workers.min"),
    ({"workers": {"lagThreshold": 10**9}}, "spec.workers.lagThreshold"),
    ({"workers": {"lookupsPerSecond": 1e9}}, "spec.workers.lookupsPerSecond"),
    ({"scheduling": {"spotPendingTimeoutSeconds": 10**7}}, "spec.scheduling.spotPendingTimeoutSeconds"),
    ({"scheduling": {"maxSkew": 10**6}}, "spec.scheduling.maxSkew"),
    ({"strategy": "sample", "samples": 10**7}, "spec.samples"),
    ({"sources": {"use": "stats,bogus,live"}}, "spec.sources.use"),
    ({"sources": {"acceptDumpTerms": "ripe"}}, "spec.sources.acceptDumpTerms"),
    ({"sources": {"verify": 2}}, "spec.sources.verify"),
]


@pytest.mark.parametrize(("fragment", "path"), OUT_OF_BOUNDS)
def test_out_of_range_values_are_refused_by_the_crd_and_the_parser(fragment: dict[str, Any],
                                                                   path: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({**BASE, **fragment})
    assert path in [p for p, _ in caught.value.problems], caught.value.problems
    doc = {"apiVersion": "whoiscrawl.io/v1alpha1", "kind": "WhoisCrawl", "metadata": {"name": "a"},
           "spec": {**BASE, **fragment}}
    assert list(validator().iter_errors(doc)), f"the CRD accepts {str(fragment)[:80]}"
