"""Spec parsing: defaults, validation errors that name the field, rates and budgets."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from whoiscrawl.operator.spec import SpecError, parse_spec, validate_name

from whoiscrawl.rates import parse_rate

BASE: dict[str, Any] = {"kafka": {"bootstrapServers": "k:9092"}, "redis": {"url": "redis://r"}}


def spec_with(**changes: Any) -> dict[str, Any]:
    out = {**BASE}
    out.update(changes)
    return out


def test_defaults_cover_everything_but_connections() -> None:
    s = parse_spec(BASE)
    assert s.ranges == ("0.0.0.0/0",)
    assert s.strategy == "sweep" and s.resolution == 24 and s.shard_prefix == 16
    assert s.workers.min == 0 and s.workers.max == 10 and s.workers.replicas is None
    assert s.scheduling.capacity_type == "any" and not s.scheduling.one_per_node
    assert (s.egress.mode, s.egress.addresses) == ("nat", 1)
    assert s.cleanup.topics == "Retain" and s.cleanup.redis == "Delete"
    assert s.rate_limits_env() == "arin=10/s,ripencc=10/s,apnic=10/s,lacnic=10/m,afrinic=2/s"


@pytest.mark.parametrize(("text", "per_second"), [
    ("10/s", 10.0), ("10/m", 10 / 60), ("600/h", 600 / 3600), ("0", 0.0), ("2.5", 2.5),
    ("86400/d", 1.0),
])
def test_parse_rate(text: str, per_second: float) -> None:
    assert parse_rate(text).rate_per_s == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["fast", "10/x", "-1/s", "", "/s"])
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not a rate"):
        parse_rate(text)


@pytest.mark.parametrize(("raw", "field", "words"), [
    ({"redis": {"url": "redis://r"}}, "spec.kafka.bootstrapServers", "required"),
    ({"kafka": {"bootstrapServers": "k"}}, "spec.redis", "exactly one"),
    (spec_with(redis={"url": "redis://r", "urlSecretRef": {"name": "s"}}), "spec.redis",
     "exactly one"),
    (spec_with(redis={"url": "http://r"}), "spec.redis.url", "redis://"),
    (spec_with(ranges=["10.0.0.0/8", "banana"]), "spec.ranges[1]", "not an IPv4 CIDR"),
    (spec_with(ranges=["2001:db8::/32"]), "spec.ranges[0]", "not IPv4"),
    (spec_with(ranges=[]), "spec.ranges", "at least one"),
    (spec_with(strategy="random"), "spec.strategy", "one of sweep, sample"),
    (spec_with(strategy="sample"), "spec.samples", "> 0"),
    (spec_with(resolution=40), "spec.resolution", "<= 32"),
    (spec_with(workers={"min": 5, "max": 2}), "spec.workers.min", "<= spec.workers.max"),
    (spec_with(workers={"mode": "manual", "replicas": 20}), "spec.workers.replicas", "<= spec.workers.max"),
    (spec_with(workers={"replicas": 2}), "spec.workers.replicas", "needs workers.mode: manual"),
    (spec_with(workers={"mode": "fixed"}), "spec.workers.mode", "auto"),
    (spec_with(workers={"max": "ten"}), "spec.workers.max", "integer"),
    (spec_with(workers={"lookupsPerSecond": 0}), "spec.workers.lookupsPerSecond", "> 0"),
    (spec_with(workers={"maxUnavailable": "half"}), "spec.workers.maxUnavailable", "percentage"),
    (spec_with(workers={"resources": {"requets": {}}}), "spec.workers.resources.requets",
     "only requests and limits"),
    (spec_with(workers={"scratch": {"size": "8GB"}}), "spec.workers.scratch.size", "a size such as"),
    (spec_with(workers={"scratch": {"size": "16Mi"}}), "spec.workers.scratch.size", "at least 320Mi"),
    (spec_with(workers={"scratch": {"storageClassName": "Fast_SSD"}}),
     "spec.workers.scratch.storageClassName", "a StorageClass name"),
    (spec_with(workers={"resources": {"limits": {"ephemeral-storage": "1Gi"}}}),
     "spec.workers.resources.limits.ephemeral-storage", "below the workers' scratch volume (8Gi"),
    (spec_with(workers={"resources": {"limits": {"ephemeral-storage": "lots"}}}),
     "spec.workers.resources.limits.ephemeral-storage", "a size such as"),
    (spec_with(registries={"arin": {"rate": "lots"}}), "spec.registries.arin.rate",
     "not a rate"),
    (spec_with(registries={"iana": {}}), "spec.registries.iana", "unknown registry"),
    (spec_with(registries={r: {"enabled": False} for r in
                           ("arin", "ripencc", "apnic", "lacnic", "afrinic")}),
     "spec.registries", "nothing to crawl"),
    (spec_with(scheduling={"capacityType": "cheap"}), "spec.scheduling.capacityType",
     "spot, on-demand, any"),
    (spec_with(scheduling={"tolerations": "all"}), "spec.scheduling.tolerations", "list"),
    (spec_with(egress={"mode": "nat", "addresses": 0}), "spec.egress.addresses", ">= 1"),
    (spec_with(deadline="tomorrow"), "spec.deadline", "RFC 3339"),
    (spec_with(cleanup={"topics": "Maybe"}), "spec.cleanup.topics", "Retain, Delete"),
    (spec_with(paused="yes"), "spec.paused", "true or false"),
    (spec_with(workrs={}), "spec.workrs", "unknown field"),
])
def test_invalid_specs_name_the_field(raw: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert any(path == field and words in msg for path, msg in err.value.problems), \
        err.value.problems
    assert field in str(err.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(spec_with(strategy="x", resolution=99, workers={"max": -1}))
    assert {p for p, _ in err.value.problems} >= {"spec.strategy", "spec.resolution",
                                                   "spec.workers.max"}


@pytest.mark.parametrize(("registries", "env", "budget"), [
    ({}, "arin=10/s,ripencc=10/s,apnic=10/s,lacnic=10/m,afrinic=2/s", 32 + 10 / 60),
    ({"lacnic": {"enabled": False}}, "arin=10/s,ripencc=10/s,apnic=10/s,lacnic=0,afrinic=2/s",
     32.0),
    ({"arin": {"rate": "1/s"}, "afrinic": {"rate": "0"}},
     "arin=1/s,ripencc=10/s,apnic=10/s,lacnic=10/m,afrinic=0", 21 + 10 / 60),
])
def test_rate_limits_and_budget(registries: dict[str, Any], env: str, budget: float) -> None:
    s = parse_spec(spec_with(registries=registries))
    assert s.rate_limits_env() == env
    assert s.address_budget() == pytest.approx(budget)


@pytest.mark.parametrize(("text", "expected"), [
    ("2030-01-02T03:04:05Z", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("2030-01-02T03:04:05", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
])
def test_deadline(text: str, expected: datetime) -> None:
    assert parse_spec(spec_with(deadline=text)).deadline == expected


def test_secret_ref_defaults_key() -> None:
    s = parse_spec(spec_with(redis={"urlSecretRef": {"name": "redis"}}))
    assert s.redis.url_secret is not None and s.redis.url_secret.key == "url"


@pytest.mark.parametrize(("name", "ok"), [("crawl-1", True), ("Crawl", False),
                                          ("a" * 41, False), ("-x", False)])
def test_names(name: str, ok: bool) -> None:
    assert (validate_name(name) is None) == ok
