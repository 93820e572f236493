"""The WhoisCrawl spec: typed, defaulted and validated from the raw custom-resource dict (pure)."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from whoiscrawl import rirs
from whoiscrawl.rates import Limit, LimitError, format_limits, parse_rate

GROUP = "whoiscrawl.io"
VERSION = "v1alpha1"
KIND = "WhoisCrawl"
PLURAL = "whoiscrawls"
SINGULAR = "whoiscrawl"
SHORT_NAMES = ("wc",)

REGISTRIES = rirs.REGISTRIES
# Published (or conservative) per-source-address limits (the registry catalogue); docs/operator.md.
DEFAULT_RATES = {r.id: r.default_rate for r in rirs.CATALOGUE}
STRATEGIES = ("sweep", "sample")
CAPACITY_TYPES = ("spot", "on-demand", "any")
# auto: the operator sizes the fleet; manual: spec.workers.replicas does (kubectl scale, HPA, KEDA).
SCALE_MODES = ("auto", "manual")
EGRESS_MODES = ("node", "nat")
RETAIN_DELETE = ("Retain", "Delete")
DEFAULT_IMAGE = "ghcr.io/whoiscrawl/whoiscrawl:0.1.0"
DEFAULT_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "250m", "memory": "256Mi"},
    "limits": {"memory": "512Mi"},
}

# Crawl names prefix object names, label values and topics: a short DNS label.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$"
TOPIC_PREFIX_PATTERN = r"^[a-zA-Z0-9._-]{1,100}$"
_DNS_LABEL = re.compile(NAME_PATTERN)
_TOPIC = re.compile(TOPIC_PREFIX_PATTERN)


class SpecError(ValueError):
    """An invalid spec; `problems` lists every (field path, message) found."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in problems))


@dataclass(frozen=True)
class Registry:
    """One registry's switch and per-egress-address rate limit."""

    rate: str  # in the rate syntax (whoiscrawl/rates.py); defaults come from the catalogue
    enabled: bool = True

    @property
    def limit(self) -> Limit:
        """The limit workers get (`WHOISCRAWL_RATE_LIMITS`); a disabled registry's is 0."""
        return parse_rate(self.rate) if self.enabled else Limit(0.0)

    @property
    def per_second(self) -> float:
        return self.limit.rate_per_s


@dataclass(frozen=True)
class Workers:
    """Worker fleet sizing, container settings and the inputs of the scaling policy."""

    min: int = 0
    max: int = 10
    mode: str = "auto"  # SCALE_MODES
    replicas: int | None = None  # the size in manual mode (kubectl scale); min when unset
    lookups_per_second: float = 20.0  # what one worker sustains when no registry limit binds
    lag_threshold: int = 2  # work messages per worker, like KEDA's lagThreshold
    scale_down_stabilization_seconds: int = 300
    image: str = DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    resources: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_RESOURCES.items()})
    grace_period_seconds: int = 10  # + 3 s margin: inside GKE's 15 s for ordinary pods
    metrics_port: int = 9090
    max_unavailable: int | str | None = None  # None: no PodDisruptionBudget (spot drains never wait)
    bootstrap_url: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def manual_replicas(self) -> int | None:
        """The fixed size in manual mode (spec.workers.replicas, else min); None in auto mode."""
        if self.mode != "manual":
            return None
        return self.min if self.replicas is None else self.replicas


@dataclass(frozen=True)
class Scheduling:
    """Where workers run: capacity type, spread, anti-affinity and user extras."""

    capacity_type: str = "spot"
    spot_pending_timeout_seconds: int = 300
    one_per_node: bool = False
    spread_zones: bool = True
    spread_instance_types: bool = True
    max_skew: int = 1
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] = field(default_factory=dict)
    priority_class_name: str | None = None


@dataclass(frozen=True)
class SecretRef:
    """A key of a Secret in the crawl's namespace."""

    name: str
    key: str


@dataclass(frozen=True)
class Kafka:
    """Kafka connection and topic settings."""

    bootstrap_servers: str
    topic_prefix: str = "whoiscrawl"
    partitions: int = 12
    credentials_secret: str | None = None  # envFrom for workers (librdkafka settings)

    @property
    def queue_prefix(self) -> str:
        """What whoiscrawl.queue (and `whoiscrawl worker --topic-prefix`) prepend to the crawl.

        `whoiscrawl` names the topics `whoiscrawl.<crawl>.work`, like the CLI's default
        `whoiscrawl.`; a prefix that already ends in `.`, `-` or `_` is taken as it is.
        """
        prefix = self.topic_prefix
        return prefix if prefix.endswith((".", "-", "_")) else prefix + "."


@dataclass(frozen=True)
class Redis:
    """Redis connection: a URL, or a Secret key holding it."""

    url: str | None = None
    url_secret: SecretRef | None = None


@dataclass(frozen=True)
class Egress:
    """How workers reach the registries: each node its own address, or N shared NAT addresses."""

    mode: str = "node"
    addresses: int = 1  # NAT gateway addresses when mode == "nat"


@dataclass(frozen=True)
class Cleanup:
    """What deleting the crawl removes besides the owned Kubernetes objects."""

    topics: str = "Retain"
    redis: str = "Delete"


@dataclass(frozen=True)
class CrawlSpec:
    """The whole, defaulted spec."""

    kafka: Kafka
    redis: Redis
    ranges: tuple[str, ...] = ("0.0.0.0/0",)
    excludes: tuple[str, ...] = ()
    strategy: str = "sweep"
    resolution: int = 24
    shard_prefix: int = 16
    samples: int = 0
    registries: Mapping[str, Registry] = field(
        default_factory=lambda: {r: Registry(rate=DEFAULT_RATES[r]) for r in REGISTRIES})
    workers: Workers = field(default_factory=Workers)
    scheduling: Scheduling = field(default_factory=Scheduling)
    egress: Egress = field(default_factory=Egress)
    deadline: datetime | None = None
    paused: bool = False
    cleanup: Cleanup = field(default_factory=Cleanup)

    def rate_limits_env(self) -> str:
        """WHOISCRAWL_RATE_LIMITS: 'arin=10/s,...'; a disabled registry is 0."""
        return format_limits({name: reg.limit for name, reg in self.registries.items()})

    def address_budget(self) -> float:
        """Lookups per second ONE egress address may make, summed over enabled registries."""
        return sum(reg.per_second for reg in self.registries.values())

    def plan_key(self) -> tuple[Any, ...]:
        """What changes the planned work (a changed key means a re-plan)."""
        return (self.ranges, self.excludes, self.strategy, self.resolution, self.shard_prefix,
                self.samples)


class _Reader:
    """Walks the raw dict, collecting problems with full field paths instead of stopping at one."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def fail(self, path: str, msg: str) -> None:
        self.problems.append((path, msg))

    def obj(self, raw: Any, path: str) -> Mapping[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            self.fail(path, f"must be an object, got {type(raw).__name__}")
            return {}
        return raw

    def integer(self, raw: Mapping[str, Any], key: str, path: str, default: int,
                lo: int | None = None, hi: int | None = None) -> int:
        value = raw.get(key, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{path}.{key}", f"must be an integer, got {value!r}")
            return default
        if lo is not None and value < lo:
            self.fail(f"{path}.{key}", f"must be >= {lo}, got {value}")
        if hi is not None and value > hi:
            self.fail(f"{path}.{key}", f"must be <= {hi}, got {value}")
        return value

    def number(self, raw: Mapping[str, Any], key: str, path: str, default: float,
               lo_exclusive: float = 0.0) -> float:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            self.fail(f"{path}.{key}", f"must be a number, got {value!r}")
            return default
        if value <= lo_exclusive:
            self.fail(f"{path}.{key}", f"must be > {lo_exclusive}, got {value}")
        return float(value)

    def boolean(self, raw: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = raw.get(key, default)
        if not isinstance(value, bool):
            self.fail(f"{path}.{key}", f"must be true or false, got {value!r}")
            return default
        return value

    def string(self, raw: Mapping[str, Any], key: str, path: str, default: str | None,
               choices: tuple[str, ...] | None = None) -> str | None:
        value = raw.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(f"{path}.{key}", f"must be a string, got {value!r}")
            return default
        if choices is not None and value not in choices:
            self.fail(f"{path}.{key}", f"must be one of {', '.join(choices)}; got {value!r}")
            return default
        return value

    def cidrs(self, raw: Mapping[str, Any], key: str, path: str,
              default: tuple[str, ...]) -> tuple[str, ...]:
        value = raw.get(key)
        if value is None:
            return default
        if not isinstance(value, list):
            self.fail(f"{path}.{key}", "must be a list of IPv4 CIDRs")
            return default
        out: list[str] = []
        for i, item in enumerate(value):
            try:
                net = ipaddress.ip_network(str(item), strict=False)
            except ValueError:
                self.fail(f"{path}.{key}[{i}]", f"{item!r} is not an IPv4 CIDR")
                continue
            if net.version != 4:
                self.fail(f"{path}.{key}[{i}]", f"{item!r} is not IPv4")
                continue
            out.append(str(net))
        return tuple(out)

    def str_map(self, raw: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
        value = self.obj(raw.get(key), f"{path}.{key}")
        out = {}
        for k, v in value.items():
            if not isinstance(v, str):
                self.fail(f"{path}.{key}.{k}", f"must be a string, got {v!r}")
            else:
                out[str(k)] = v
        return out


MANUAL_ONLY = ("workers.replicas (kubectl scale, HPA, KEDA) needs workers.mode: manual; "
               "in auto mode the operator sizes the fleet")


def _parse_workers(r: _Reader, raw: Mapping[str, Any]) -> Workers:
    p = "spec.workers"
    d = Workers()
    lo = r.integer(raw, "min", p, d.min, lo=0)
    hi = r.integer(raw, "max", p, d.max, lo=0, hi=1000)
    if lo > hi:
        r.fail(f"{p}.min", f"must be <= spec.workers.max ({hi}), got {lo}")
    replicas = raw.get("replicas")
    if replicas is not None:
        replicas = r.integer(raw, "replicas", p, 0, lo=0, hi=1000)
    resources = r.obj(raw.get("resources", d.resources), f"{p}.resources")
    for key in resources:
        if key not in ("requests", "limits"):
            r.fail(f"{p}.resources.{key}", "only requests and limits are allowed")
    grace = r.integer(raw, "gracePeriodSeconds", p, d.grace_period_seconds, lo=1, hi=600)
    max_unavailable = raw.get("maxUnavailable", d.max_unavailable)
    if (max_unavailable is not None and (isinstance(max_unavailable, bool)
                                        or not isinstance(max_unavailable, int | str))) or (
            isinstance(max_unavailable, str) and not re.fullmatch(r"\d{1,3}%", max_unavailable)):
        r.fail(f"{p}.maxUnavailable", f"must be an integer or a percentage like '50%', "
                                      f"got {max_unavailable!r}")
        max_unavailable = d.max_unavailable
    mode = r.string(raw, "mode", p, d.mode, SCALE_MODES) or d.mode
    if replicas is not None and mode != "manual":
        r.fail(f"{p}.replicas", MANUAL_ONLY)
    return Workers(
        min=lo, max=hi, mode=mode, replicas=replicas,
        lookups_per_second=r.number(raw, "lookupsPerSecond", p, d.lookups_per_second),
        lag_threshold=r.integer(raw, "lagThreshold", p, d.lag_threshold, lo=1),
        scale_down_stabilization_seconds=r.integer(
            raw, "scaleDownStabilizationSeconds", p, d.scale_down_stabilization_seconds, lo=0,
            hi=3600),
        image=r.string(raw, "image", p, d.image) or d.image,
        image_pull_policy=r.string(raw, "imagePullPolicy", p, d.image_pull_policy,
                                   ("Always", "IfNotPresent", "Never")) or d.image_pull_policy,
        resources={k: dict(v) for k, v in resources.items() if isinstance(v, Mapping)},
        grace_period_seconds=grace,
        metrics_port=r.integer(raw, "metricsPort", p, d.metrics_port, lo=1024, hi=65535),
        max_unavailable=max_unavailable,
        bootstrap_url=r.string(raw, "bootstrapUrl", p, None),
        extra_env=r.str_map(raw, "env", p),
    )


def _parse_scheduling(r: _Reader, raw: Mapping[str, Any]) -> Scheduling:
    p = "spec.scheduling"
    d = Scheduling()
    tolerations = raw.get("tolerations") or []
    if not isinstance(tolerations, list) or not all(isinstance(t, Mapping) for t in tolerations):
        r.fail(f"{p}.tolerations", "must be a list of toleration objects")
        tolerations = []
    return Scheduling(
        capacity_type=r.string(raw, "capacityType", p, d.capacity_type, CAPACITY_TYPES)
        or d.capacity_type,
        spot_pending_timeout_seconds=r.integer(raw, "spotPendingTimeoutSeconds", p,
                                               d.spot_pending_timeout_seconds, lo=10),
        one_per_node=r.boolean(raw, "onePerNode", p, d.one_per_node),
        spread_zones=r.boolean(raw, "spreadZones", p, d.spread_zones),
        spread_instance_types=r.boolean(raw, "spreadInstanceTypes", p, d.spread_instance_types),
        max_skew=r.integer(raw, "maxSkew", p, d.max_skew, lo=1),
        node_selector=r.str_map(raw, "nodeSelector", p),
        tolerations=tuple(dict(t) for t in tolerations),
        affinity=dict(r.obj(raw.get("affinity"), f"{p}.affinity")),
        priority_class_name=r.string(raw, "priorityClassName", p, None),
    )


def _parse_registries(r: _Reader, raw: Mapping[str, Any]) -> dict[str, Registry]:
    out = {}
    for name in raw:
        if name not in REGISTRIES:
            r.fail(f"spec.registries.{name}", f"unknown registry; known: {', '.join(REGISTRIES)}")
    for name in REGISTRIES:
        p = f"spec.registries.{name}"
        item = r.obj(raw.get(name), p)
        rate = r.string(item, "rate", p, DEFAULT_RATES[name]) or DEFAULT_RATES[name]
        try:
            parse_rate(rate)
        except LimitError as exc:
            r.fail(f"{p}.rate", str(exc))
            rate = DEFAULT_RATES[name]
        out[name] = Registry(enabled=r.boolean(item, "enabled", p, True), rate=rate)
    if not any(reg.per_second > 0 for reg in out.values()):
        r.fail("spec.registries", "every registry is disabled or has rate 0: nothing to crawl")
    return out


def parse_deadline(value: Any) -> datetime:
    """RFC 3339 timestamp -> aware datetime (UTC when no offset is given)."""
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    stamp = datetime.fromisoformat(text)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _parse_kafka(r: _Reader, kafka_raw: Mapping[str, Any]) -> Kafka:
    bootstrap = r.string(kafka_raw, "bootstrapServers", "spec.kafka", None)
    if not bootstrap:
        r.fail("spec.kafka.bootstrapServers", "is required (host:port[,host:port])")
    prefix = r.string(kafka_raw, "topicPrefix", "spec.kafka", "whoiscrawl") or "whoiscrawl"
    if not _TOPIC.match(prefix):
        r.fail("spec.kafka.topicPrefix", f"{prefix!r} is not a valid Kafka topic prefix")
    return Kafka(
        bootstrap_servers=bootstrap or "",
        topic_prefix=prefix,
        partitions=r.integer(kafka_raw, "partitions", "spec.kafka", 12, lo=1, hi=10000),
        credentials_secret=r.string(kafka_raw, "credentialsSecret", "spec.kafka", None),
    )


def _parse_redis(r: _Reader, redis_raw: Mapping[str, Any]) -> Redis:
    url = r.string(redis_raw, "url", "spec.redis", None)
    secret_raw = redis_raw.get("urlSecretRef")
    secret = None
    if secret_raw is not None:
        sref = r.obj(secret_raw, "spec.redis.urlSecretRef")
        sname = r.string(sref, "name", "spec.redis.urlSecretRef", None)
        if not sname:
            r.fail("spec.redis.urlSecretRef.name", "is required")
        secret = SecretRef(name=sname or "",
                           key=r.string(sref, "key", "spec.redis.urlSecretRef", "url") or "url")
    if (url is None) == (secret is None):
        r.fail("spec.redis", "set exactly one of url or urlSecretRef")
    elif url is not None and not re.match(r"^rediss?://", url):
        r.fail("spec.redis.url", f"must start with redis:// or rediss://, got {url!r}")
    return Redis(url=url, url_secret=secret)


def _parse_egress(r: _Reader, egress_raw: Mapping[str, Any]) -> Egress:
    return Egress(
        mode=r.string(egress_raw, "mode", "spec.egress", "node", EGRESS_MODES) or "node",
        addresses=r.integer(egress_raw, "addresses", "spec.egress", 1, lo=1, hi=10000),
    )


def _parse_cleanup(r: _Reader, cleanup_raw: Mapping[str, Any]) -> Cleanup:
    return Cleanup(
        topics=r.string(cleanup_raw, "topics", "spec.cleanup", "Retain", RETAIN_DELETE)
        or "Retain",
        redis=r.string(cleanup_raw, "redis", "spec.cleanup", "Delete", RETAIN_DELETE) or "Delete",
    )


def parse_spec(raw: Mapping[str, Any] | None) -> CrawlSpec:
    """Validate and default a raw `spec`; raises SpecError naming every offending field."""
    r = _Reader()
    spec = r.obj(raw, "spec")
    known = {"ranges", "excludes", "strategy", "resolution", "shardPrefix", "samples",
             "registries", "workers", "scheduling", "kafka", "redis", "egress", "deadline",
             "paused", "cleanup"}
    for key in spec:
        if key not in known:
            r.fail(f"spec.{key}", "unknown field")

    ranges = r.cidrs(spec, "ranges", "spec", ("0.0.0.0/0",))
    if not ranges:
        r.fail("spec.ranges", "must list at least one CIDR (omit it for all of IPv4)")
    excludes = r.cidrs(spec, "excludes", "spec", ())
    strategy = r.string(spec, "strategy", "spec", "sweep", STRATEGIES) or "sweep"
    resolution = r.integer(spec, "resolution", "spec", 24, lo=8, hi=32)
    shard_prefix = r.integer(spec, "shardPrefix", "spec", 16, lo=8, hi=28)
    samples = r.integer(spec, "samples", "spec", 0, lo=0)
    if strategy == "sample" and samples == 0:
        r.fail("spec.samples", "must be > 0 when strategy is sample")

    kafka = _parse_kafka(r, r.obj(spec.get("kafka"), "spec.kafka"))
    redis = _parse_redis(r, r.obj(spec.get("redis"), "spec.redis"))

    egress = _parse_egress(r, r.obj(spec.get("egress"), "spec.egress"))

    deadline = None
    if spec.get("deadline") is not None:
        try:
            deadline = parse_deadline(spec["deadline"])
        except ValueError:
            r.fail("spec.deadline", f"{spec['deadline']!r} is not an RFC 3339 date-time")

    cleanup = _parse_cleanup(r, r.obj(spec.get("cleanup"), "spec.cleanup"))

    result = CrawlSpec(
        kafka=kafka,
        redis=redis,
        ranges=ranges, excludes=excludes, strategy=strategy, resolution=resolution,
        shard_prefix=shard_prefix, samples=samples,
        registries=_parse_registries(r, r.obj(spec.get("registries"), "spec.registries")),
        workers=_parse_workers(r, r.obj(spec.get("workers"), "spec.workers")),
        scheduling=_parse_scheduling(r, r.obj(spec.get("scheduling"), "spec.scheduling")),
        egress=egress, deadline=deadline,
        paused=r.boolean(spec, "paused", "spec", False),
        cleanup=cleanup,
    )
    if result.workers.replicas is not None and result.workers.replicas > result.workers.max:
        r.fail("spec.workers.replicas",
               f"must be <= spec.workers.max ({result.workers.max}), got {result.workers.replicas}")
    if r.problems:
        raise SpecError(r.problems)
    return result


def validate_name(name: str) -> str | None:
    """Crawl names become topic, label and object names: a short DNS label. None if fine."""
    if not _DNS_LABEL.match(name):
        return (f"metadata.name: {name!r} must be a DNS label of at most 40 characters "
                "(it prefixes the worker objects and topics)")
    return None
