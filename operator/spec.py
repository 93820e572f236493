"""The WhoisCrawl spec: typed, defaulted and validated from the raw custom-resource dict (pure)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.models.v1_affinity import V1Affinity
from kubernetes.utils import parse_quantity
from pydantic import ValidationError
from whoiscrawl.operator.generations import (
    SCHEDULE_PATTERN,
    TIME_ZONE_PATTERN,
    Schedule,
    schedule_problem,
    time_zone_problem,
)
from whoiscrawl.operator.knobs import knob, knobs, setting_knob

from whoiscrawl import rirs
from whoiscrawl.rates import RATE_PATTERN, Limit, LimitError, format_limits, parse_rate
from whoiscrawl.settings import OPERATOR_ENV, chosen_sources

GROUP = "whoiscrawl.io"
VERSION = "v1alpha1"
KIND = "WhoisCrawl"
PLURAL = "whoiscrawls"
SINGULAR = "whoiscrawl"
SHORT_NAMES = ("wc",)
# Set to "true" on a crawl to delete it without touching its topics and Redis keys (a way out
# when its backend is gone for good).
SKIP_CLEANUP_ANNOTATION = f"{GROUP}/skip-cleanup"

CAPACITY_TYPES = ("spot", "on-demand", "any")
# auto: the operator sizes the fleet; manual: spec.workers.replicas does (kubectl scale, HPA, KEDA).
SCALE_MODES = ("auto", "manual")
EGRESS_MODES = ("node", "nat")
# (label, value) that marks a spot node, one per platform; any ONE of them makes a node spot.
# scheduling.spotLabels replaces them (other node-group labels, kops, on-prem pools).
DEFAULT_SPOT_LABELS: dict[str, str] = {
    "eks.amazonaws.com/capacityType": "SPOT",  # EKS managed node groups
    "karpenter.sh/capacity-type": "spot",  # Karpenter (EKS and others)
    "cloud.google.com/gke-spot": "true",  # GKE Spot VMs
    "cloud.google.com/gke-preemptible": "true",  # GKE preemptible VMs (older)
    "kubernetes.azure.com/scalesetpriority": "spot",  # AKS spot node pools
}
MAX_SPOT_LABELS = 16
RETAIN_DELETE = ("Retain", "Delete")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
# The worker image when neither the spec nor the operator ($WHOISCRAWL_WORKER_IMAGE, which the
# chart sets from its values) names one: a plain `whoiscrawl operator` outside the chart.
DEFAULT_IMAGE = "ghcr.io/whoiscrawl/whoiscrawl:0.1.0"
DEFAULT_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "250m", "memory": "256Mi"},
    "limits": {"memory": "512Mi"},
}

# Crawl names prefix object names, label values and topics: a short DNS label.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$"
TOPIC_PREFIX_PATTERN = r"^[a-zA-Z0-9._-]{1,100}$"
_DNS_LABEL = re.compile(NAME_PATTERN)


MAX_RANGES = 1000  # CIDRs in ranges or excludes (the plan's shards and the CRD object stay small)
# A redis:// or rediss:// URL with no password in it (a user name alone is fine).
REDIS_URL_PATTERN = r"^rediss?://([^/@:]*@)?[^@]*$"
# Worker environment the operator sets (the settings contract's operator -> worker variables):
# workers.env may not override it (rate limits past the CRD's checks, another crawl's topics or
# Redis keys).
MAX_ENV = 64  # workers.env entries (the CRD's maxProperties, which bounds its CEL rule's cost)
OWNED_ENV = OPERATOR_ENV


def redis_url_problem(text: str) -> str | None:
    """Why a spec's inline Redis URL is refused (never the URL itself: it may hold a password)."""
    if not re.match(r"^rediss?://", text):
        return "must be a redis:// or rediss:// URL"
    if not re.match(REDIS_URL_PATTERN, text):
        return ("holds a password, which would be readable in the worker ConfigMap: put the URL "
                "in a Secret and set redis.urlSecretRef instead")
    return None


def rate_problem(text: str) -> str | None:
    """Why a rate does not parse (whoiscrawl/rates.py), None if it does."""
    try:
        parse_rate(text)
    except LimitError as exc:
        return str(exc)
    return None


class SpecError(ValueError):
    """An invalid spec; `problems` lists every (field path, message) found."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in problems))


@dataclass(frozen=True)
class Registry:
    """One registry's switch and per-egress-address rate limit."""

    # In the rate syntax (whoiscrawl/rates.py); each registry's default comes from the catalogue.
    rate: str = knob("rate", kind="string", required=True, pattern=RATE_PATTERN, check=rate_problem,
                     desc="Lookups allowed per egress address: N/s, N/m, N/h, N/d, optionally "
                          ":CONNECTIONS (N/s:3); 0 disables.")
    enabled: bool = knob("enabled", True, desc="Query this registry at all.")

    @property
    def limit(self) -> Limit:
        """The limit workers get (`WHOISCRAWL_RATE_LIMITS`); a disabled registry's is 0."""
        return parse_rate(self.rate) if self.enabled else Limit(0.0)

    @property
    def per_second(self) -> float:
        return self.limit.rate_per_s


# A size as Kubernetes writes one (a quantity of bytes: 512Mi, 8Gi, 20G).
SIZE_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
STORAGE_CLASS_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"  # a DNS subdomain
# every worker fetches the statistics there (~32 MB) and spools long listings (registry/spool.py, 256 MiB)
MIN_SCRATCH = "320Mi"
# The workers' scratch volume, unless `workers.scratch.size` says: what the crawl writes there, by
# (reads dumps, refreshes a previous generation: has a schedule). docs/sources.md, Disk: the
# statistics ~32 MB; the dumps downloaded, staged and their digests, GBs for the whole space; a
# refresh spools the previous generation's map and its digests, GBs again.
SCRATCH_SIZES: dict[tuple[bool, bool], str] = {
    (False, False): "1Gi", (True, False): "8Gi", (False, True): "8Gi", (True, True): "16Gi"}


def size_problem(text: str) -> str | None:
    """Why a scratch size is refused, None if fine."""
    if not re.match(SIZE_PATTERN, text):
        return f"must be a size such as 512Mi, 8Gi or 20G, got {text!r}"
    if parse_quantity(text) < parse_quantity(MIN_SCRATCH):
        return (f"must be at least {MIN_SCRATCH} (every worker fetches the registries' statistics, "
                f"~32 MB, there and spools long listings, up to 256 MiB), got {text!r}")
    return None


@dataclass(frozen=True)
class Scratch:
    """The workers' scratch volume at /tmp: where each downloads the statistics, and the loader of
    the crawl's files downloads and stages the dumps (worker/sources.py)."""

    size: str | None = knob("size", kind="string", pattern=SIZE_PATTERN, check=size_problem,
                            desc="Its size (e.g. 8Gi). Unset: sized for what the crawl reads: "
                                 "1Gi; 8Gi with dumps or a schedule (a refresh); 16Gi with both.")
    storage_class_name: str | None = knob(
        "storageClassName", kind="string", pattern=STORAGE_CLASS_PATTERN, hint="a StorageClass name",
        desc="A generic ephemeral volume of this StorageClass (a claim per pod, deleted with it). "
             "Unset: an emptyDir on the node's disk, with an ephemeral-storage request and limit "
             "on the worker so the scheduler places it where the disk is.")


@dataclass(frozen=True)
class Workers:
    """Worker fleet sizing, container settings and the inputs of the scaling policy."""

    min: int = knob("min", 0, lo=0, hi=1000, desc="Fewest workers while work is left.")
    max: int = knob("max", 10, lo=0, hi=1000, desc="Most workers.")
    mode: str = knob("mode", "auto", choices=SCALE_MODES,
                     desc="auto: the operator sizes the fleet from lag, rate budget and deadline; "
                          "manual: replicas does (kubectl scale, HPA and KEDA drive it through "
                          "the scale subresource).")
    replicas: int | None = knob("replicas", kind="integer", lo=0, hi=1000,
                                desc="The fleet's size in manual mode (min when unset).")
    lookups_per_second: float = knob("lookupsPerSecond", 20.0, above=0, hi=100000,
                                     desc="Lookups/s one worker sustains when no registry limit "
                                          "binds; sizes the rate-budget cap.")
    lag_threshold: int = knob("lagThreshold", 2, lo=1, hi=1000000,
                              desc="Work messages per worker (like KEDA's lagThreshold).")
    scale_down_stabilization_seconds: int = knob("scaleDownStabilizationSeconds", 300, lo=0,
                                                 hi=3600)
    # No default in the CRD: a stored default would pin every crawl to the image of the CRD it
    # was created under, so operator upgrades would never roll the workers.
    image: str = knob("image", DEFAULT_IMAGE,
                      desc="Worker image. Unset: the operator's (the chart's workerImage, else "
                           "its own image), so upgrading the operator rolls the workers.")
    image_pull_policy: str = knob("imagePullPolicy", "IfNotPresent", choices=PULL_POLICIES)
    resources: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_RESOURCES.items()})
    grace_period_seconds: int = knob(
        "gracePeriodSeconds", 10, lo=1, hi=600,
        desc="Drain time after SIGTERM (WHOISCRAWL_GRACE_SECONDS); the pod gets grace+3 s; keep "
             "that <= 15 s for GKE spot notices.")
    metrics_port: int = knob("metricsPort", 9090, lo=1024, hi=65535)
    max_unavailable: int | str | None = None  # None: no PodDisruptionBudget (spot drains never wait)
    bootstrap_url: str | None = knob("bootstrapUrl", kind="string",
                                     desc="RDAP bootstrap URL (WHOISCRAWL_BOOTSTRAP_URL).")
    extra_env: Mapping[str, str] = field(default_factory=dict)
    scratch: Scratch = field(default_factory=Scratch)

    @property
    def manual_replicas(self) -> int | None:
        """The fixed size in manual mode (spec.workers.replicas, else min); None in auto mode."""
        if self.mode != "manual":
            return None
        return self.min if self.replicas is None else self.replicas


@dataclass(frozen=True)
class Scheduling:
    """Where workers run: capacity type, spread, anti-affinity and user extras."""

    # any by default: spot alone leaves pods Pending forever where no node carries a spot label
    # (on-prem, kind, other node-group labels); any falls back to on-demand.
    capacity_type: str = knob("capacityType", "any", choices=CAPACITY_TYPES,
                              desc="any (spot first, on-demand when spot pods stay Pending past "
                                   "spotPendingTimeoutSeconds), spot (never on-demand), or "
                                   "on-demand.")
    spot_pending_timeout_seconds: int = knob("spotPendingTimeoutSeconds", 300, lo=10, hi=86400)
    one_per_node: bool = knob("onePerNode", False,
                              desc="At most one worker per node (egress diversity).")
    spread_zones: bool = knob("spreadZones", True)
    spread_instance_types: bool = knob("spreadInstanceTypes", True)
    max_skew: int = knob("maxSkew", 1, lo=1, hi=1000)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] = field(default_factory=dict)
    priority_class_name: str | None = knob("priorityClassName", kind="string")
    spot_labels: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SPOT_LABELS))


@dataclass(frozen=True)
class SecretRef:
    """A key of a Secret in the crawl's namespace."""

    name: str = knob("name", kind="string", required=True)
    key: str = knob("key", "url")


@dataclass(frozen=True)
class Kafka:
    """Kafka connection and topic settings."""

    bootstrap_servers: str = knob("bootstrapServers", kind="string", required=True,
                                  immutable="kafka.bootstrapServers", desc="host:port[,host:port]")
    topic_prefix: str = knob("topicPrefix", "whoiscrawl", pattern=TOPIC_PREFIX_PATTERN,
                             hint="a Kafka topic prefix (1-100 of a-z A-Z 0-9 . _ -)",
                             immutable="kafka.topicPrefix")
    partitions: int = knob("partitions", 12, lo=1, hi=10000,
                           desc="Partitions of the work topic (caps workers).")
    credentials_secret: str | None = knob("credentialsSecret", kind="string",
                                          desc="Secret whose keys become worker environment.")
    replication_factor: int | None = knob(
        "replicationFactor", kind="integer", lo=1, hi=32767,
        desc="Replicas of each of the crawl's topics, set when they are created; unset: the "
             "broker's default.replication.factor.")
    topic_config: Mapping[str, str] = field(default_factory=dict)  # e.g. min.insync.replicas

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

    url: str | None = knob("url", kind="string", pattern=REDIS_URL_PATTERN, check=redis_url_problem,
                           desc="redis:// or rediss:// URL without a password (it would be "
                                "readable in the worker ConfigMap): use urlSecretRef for one.")
    url_secret: SecretRef | None = None


@dataclass(frozen=True)
class Egress:
    """How workers reach the registries: each node its own address, or N shared NAT addresses."""

    # nat with one address by default: behind Cloud NAT or a NAT gateway every node leaves by
    # the same address, and node mode would give N nodes N budgets, N times a registry's limit.
    mode: str = knob("mode", "nat", choices=EGRESS_MODES,
                     desc="nat: the whole fleet shares `addresses` public IPs (one budget); node: "
                          "each node has its own public address (only where that is true: N nodes "
                          "behind one NAT would send N times a registry's limit).")
    addresses: int = knob("addresses", 1, lo=1, hi=10000,
                          desc="Public NAT addresses (mode nat). More than 1 only if the NAT spreads "
                               "connections evenly over them: the budget is this many times a "
                               "registry's per-address limit.")


def _listing(names: tuple[str, ...]) -> str:
    """A regular expression for a comma-separated list of some of `names`."""
    one = "|".join(names)
    return f"({one})(,({one}))*"


SOURCES_PATTERN = f"^{_listing(rirs.SOURCES)}$"
TERMS_PATTERN = f"^(all|{_listing(rirs.REGISTRIES)})$"


def sources_problem(text: str) -> str | None:
    """Why a fleet's sources are refused (a fleet crawls live what the files lack), None if fine."""
    if not re.match(SOURCES_PATTERN, text):
        return f"must be one or more of {', '.join(rirs.SOURCES)}, comma-separated; got {text!r}"
    if "live" not in text.split(","):
        return f"must include live (a fleet crawls live what the files lack); got {text!r}"
    return None


@dataclass(frozen=True)
class Sources:
    """What the registries publish, read once per crawl before anything is asked live
    (docs/sources.md); the workers' --sources, --files-base, --accept-dump-terms, --verify."""

    use: str | None = knob("use", kind="string", pattern=SOURCES_PATTERN, check=sources_problem,
                           desc="stats, dumps and live, comma-separated (live required); unset: "
                                "stats,dumps,live, or live alone with workers.bootstrapUrl and no "
                                "filesBase (the real registries' files describe no other service).")
    files_base: str | None = knob("filesBase", kind="string",
                                  desc="A mirror of the registries' download trees "
                                       "(<base>/<host>/<path>); unset: the registries' own servers.")
    accept_dump_terms: str | None = knob(
        "acceptDumpTerms", kind="string", pattern=TERMS_PATTERN,
        hint="registries, comma-separated, or all",
        desc="Registries whose dump terms you accept (ripencc: the RIPE Database terms and "
             "acceptable-use policy; afrinic: no redistribution), or all; without, their space "
             "is crawled live.")
    verify: float = knob("verify", 0.001, lo=0, hi=1,
                         desc="Share of each registry's dumped networks asked again live.")
    fill_redacted: bool = knob("fillRedacted", True,
                               desc="Ask live for each dumped network lacking holder, country or "
                                    "abuse e-mail.")

    def env(self) -> dict[str, str]:
        """The workers' environment for these settings (unset ones left to the worker's default)."""
        given = {"WHOISCRAWL_SOURCES": self.use, "WHOISCRAWL_FILES_BASE": self.files_base,
                 "WHOISCRAWL_ACCEPT_DUMP_TERMS": self.accept_dump_terms}
        return {**{k: v for k, v in given.items() if v}, "WHOISCRAWL_VERIFY": str(self.verify),
                "WHOISCRAWL_FILL_REDACTED": str(self.fill_redacted).lower()}


@dataclass(frozen=True)
class Cleanup:
    """What deleting the crawl removes besides the owned Kubernetes objects."""

    topics: str = knob("topics", "Retain", choices=RETAIN_DELETE,
                       desc="Delete the crawl's topics on delete?")
    redis: str = knob("redis", "Delete", choices=RETAIN_DELETE,
                      desc="Delete the crawl's Redis keys on delete?")
    timeout_seconds: int = knob(
        "timeoutSeconds", 300, lo=0, hi=86400,
        desc="How long deletion retries (workers still stopping, Kafka or Redis unreachable, "
             "the Secret gone) before it gives up: a Warning Event CleanupAbandoned says what "
             "was left, and the finalizer is dropped.")

    @property
    def deletes_data(self) -> bool:
        """Whether deleting the crawl deletes anything outside Kubernetes (else the backend is
        never touched, so a crawl whose Secret or backend is gone still deletes at once)."""
        return "Delete" in (self.topics, self.redis)


@dataclass(frozen=True)
class History:
    """How many generations of a scheduled crawl keep their data (docs/operator.md, Schedule)."""

    keep: int = knob("keep", 3, lo=1, hi=100,
                     desc="Completed generations whose topics and Redis keys are kept (the one "
                          "running is not counted, as a CronJob's successfulJobsHistoryLimit counts "
                          "finished Jobs); older ones are deleted.")


@dataclass(frozen=True)
class CrawlSpec:
    """The whole, defaulted spec."""

    kafka: Kafka
    redis: Redis
    ranges: tuple[str, ...] = ("0.0.0.0/0",)
    excludes: tuple[str, ...] = ()
    strategy: str = setting_knob("strategy")
    resolution: int = setting_knob("resolution")
    shard_prefix: int = knob("shardPrefix", 16, lo=8, hi=28, desc="Shard size, as a prefix length.")
    samples: int = setting_knob("samples")
    registries: Mapping[str, Registry] = field(
        default_factory=lambda: {r: Registry(rate=rirs.BY_ID[r].default_rate) for r in rirs.REGISTRIES})
    workers: Workers = field(default_factory=Workers)
    scheduling: Scheduling = field(default_factory=Scheduling)
    egress: Egress = field(default_factory=Egress)
    sources: Sources = field(default_factory=Sources)
    deadline: datetime | None = None
    paused: bool = knob("paused", False, desc="Scale workers to 0 and keep everything else.")
    cleanup: Cleanup = field(default_factory=Cleanup)
    schedule: str | None = knob(
        "schedule", kind="string", pattern=SCHEDULE_PATTERN, check=schedule_problem,
        hint="five cron fields or a macro such as @daily",
        desc="Crawl again on this schedule (cron: five fields, or @hourly, @daily ...): when a "
             "finished generation's next time comes, the next generation starts; one still "
             "running is not doubled, and times missed run once.")
    time_zone: str | None = knob("timeZone", kind="string", pattern=TIME_ZONE_PATTERN,
                                 check=time_zone_problem,
                                 desc="The IANA time zone the schedule is read in; unset: UTC.")
    suspend: bool = knob("suspend", False,
                         desc="Start no new generation (the one running goes on).")
    starting_deadline_seconds: int | None = knob(
        "startingDeadlineSeconds", kind="integer", lo=0, hi=31_536_000,
        desc="A scheduled time missed by more than this many seconds (the operator down, the "
             "previous generation still running) is skipped with a Warning Event MissSchedule "
             "instead of run late, as a CronJob's; unset: run late, once. Keep it above the "
             "operator's interval (10 s).")
    history: History = field(default_factory=History)

    def schedule_of(self) -> Schedule | None:
        """The crawl's schedule, None when it runs once."""
        if self.schedule is None:
            return None
        return Schedule(self.schedule, self.time_zone, self.suspend, self.starting_deadline_seconds)

    def scratch_size(self) -> str:
        """The workers' scratch volume's size: as given, else by what the crawl reads
        (`SCRATCH_SIZES`: the sources as a worker chooses them; a schedule's refreshes)."""
        if self.workers.scratch.size is not None:
            return self.workers.scratch.size
        chosen = chosen_sources(self.sources.use, self.sources.files_base, self.workers.bootstrap_url)
        return SCRATCH_SIZES[("dumps" in chosen.split(","), self.schedule is not None)]

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


# The spec's keys that are objects or lists, parsed by hand below (the scalars are knobs).
STRUCTURED_KEYS = ("ranges", "excludes", "registries", "workers", "scheduling", "kafka", "redis",
                   "egress", "sources", "deadline", "cleanup", "history")


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

    def knobs(self, cls: type, raw: Mapping[str, Any], path: str,
              defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every declared scalar of `cls`, read from `raw` and checked: attribute -> value."""
        given = defaults or {}
        out = {}
        for attr, spec, default in knobs(cls):
            default = given.get(attr, default)
            value = raw.get(spec.key)
            if value is None:
                if spec.required and default is None:
                    self.fail(f"{path}.{spec.key}",
                              f"is required ({spec.desc})" if spec.desc else "is required")
                out[attr] = default
            elif (problem := spec.problem(value)) is not None:
                self.fail(f"{path}.{spec.key}", problem)
                out[attr] = default
            else:
                out[attr] = float(value) if spec.kind == "number" else value
        return out

    def cidrs(self, raw: Mapping[str, Any], key: str, path: str,
              default: tuple[str, ...]) -> tuple[str, ...]:
        value = raw.get(key)
        if value is None:
            return default
        if not isinstance(value, list):
            self.fail(f"{path}.{key}", "must be a list of IPv4 CIDRs")
            return default
        if len(value) > MAX_RANGES:
            self.fail(f"{path}.{key}", f"lists {len(value)} CIDRs; at most {MAX_RANGES} (merge "
                                       "adjacent ones)")
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
PERCENTAGE = re.compile(r"\d{1,3}%")


def _max_unavailable(r: _Reader, value: Any, path: str) -> int | str | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and PERCENTAGE.fullmatch(value)):
        return value
    r.fail(path, f"must be an integer or a percentage like '50%', got {value!r}")
    return None


def _parse_workers(r: _Reader, raw: Mapping[str, Any], image: str | None) -> Workers:
    p = "spec.workers"
    values = r.knobs(Workers, raw, p, {"image": image} if image else None)
    if values["min"] > values["max"]:
        r.fail(f"{p}.min", f"must be <= spec.workers.max ({values['max']}), got {values['min']}")
    if values["replicas"] is not None and values["mode"] != "manual":
        r.fail(f"{p}.replicas", MANUAL_ONLY)
    resources = r.obj(raw.get("resources", Workers().resources), f"{p}.resources")
    for key in resources:
        if key not in ("requests", "limits"):
            r.fail(f"{p}.resources.{key}", "only requests and limits are allowed")
    return Workers(
        **values,
        resources={k: dict(v) for k, v in resources.items() if isinstance(v, Mapping)},
        max_unavailable=_max_unavailable(r, raw.get("maxUnavailable"), f"{p}.maxUnavailable"),
        extra_env=_parse_env(r, raw, p),
        scratch=Scratch(**r.knobs(Scratch, r.obj(raw.get("scratch"), f"{p}.scratch"), f"{p}.scratch")),
    )


def _parse_env(r: _Reader, raw: Mapping[str, Any], path: str) -> dict[str, str]:
    env = r.str_map(raw, "env", path)
    if len(env) > MAX_ENV:
        r.fail(f"{path}.env", f"holds {len(env)} variables, at most {MAX_ENV}")
    for key in env:
        if key in OWNED_ENV:
            r.fail(f"{path}.env.{key}", "is set by the operator from the spec; set that field")
    return env


def _parse_scheduling(r: _Reader, raw: Mapping[str, Any]) -> Scheduling:
    p = "spec.scheduling"
    tolerations = raw.get("tolerations") or []
    if not isinstance(tolerations, list) or not all(isinstance(t, Mapping) for t in tolerations):
        r.fail(f"{p}.tolerations", "must be a list of toleration objects")
        tolerations = []
    return Scheduling(
        **r.knobs(Scheduling, raw, p),
        spot_labels=_parse_spot_labels(r, raw, p),
        node_selector=r.str_map(raw, "nodeSelector", p),
        tolerations=tuple(dict(t) for t in tolerations),
        affinity=_parse_affinity(r, raw.get("affinity"), f"{p}.affinity"),
    )


def _parse_spot_labels(r: _Reader, raw: Mapping[str, Any], path: str) -> dict[str, str]:
    if raw.get("spotLabels") is None:
        return dict(DEFAULT_SPOT_LABELS)
    labels = r.str_map(raw, "spotLabels", path)
    if not labels and isinstance(raw.get("spotLabels"), Mapping):
        r.fail(f"{path}.spotLabels", "must name at least one label (key: value) of spot nodes; "
                                     "omit it for the EKS, Karpenter, GKE and AKS ones")
    if len(labels) > MAX_SPOT_LABELS:
        r.fail(f"{path}.spotLabels", f"holds {len(labels)} labels, at most {MAX_SPOT_LABELS}")
    return labels


def _parse_affinity(r: _Reader, raw: Any, path: str) -> dict[str, Any]:
    """A core/v1 Affinity (the Kubernetes client's own model checks its shape), else nothing:
    a wrong shape would otherwise fail every pass when the pod template is built."""
    value = r.obj(raw, path)
    if not value:
        return {}
    try:
        V1Affinity.model_validate(value)
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(part) for part in err["loc"])
            r.fail(f"{path}.{where}", err["msg"])
        return {}
    return dict(value)


def _parse_registries(r: _Reader, raw: Mapping[str, Any]) -> dict[str, Registry]:
    out = {}
    for name in raw:
        if name not in rirs.REGISTRIES:
            r.fail(f"spec.registries.{name}", f"unknown registry; known: {', '.join(rirs.REGISTRIES)}")
    for name in rirs.REGISTRIES:
        p = f"spec.registries.{name}"
        values = r.knobs(Registry, r.obj(raw.get(name), p), p, {"rate": rirs.BY_ID[name].default_rate})
        out[name] = Registry(**values)
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


# Topic settings the crawl's topics need to work (whoiscrawl/queue.py sets them): not the user's.
OWNED_TOPIC_CONFIG = ("cleanup.policy", "retention.ms", "min.compaction.lag.ms")


def _parse_kafka(r: _Reader, raw: Mapping[str, Any]) -> Kafka:
    values = r.knobs(Kafka, raw, "spec.kafka")
    topic_config = r.str_map(raw, "topicConfig", "spec.kafka")
    for key in topic_config:
        if key in OWNED_TOPIC_CONFIG:
            r.fail(f"spec.kafka.topicConfig.{key}", "is set by whoiscrawl (the topics need it)")
    return Kafka(**values | {"bootstrap_servers": values["bootstrap_servers"] or ""},
                 topic_config=topic_config)


def _parse_redis(r: _Reader, raw: Mapping[str, Any]) -> Redis:
    values = r.knobs(Redis, raw, "spec.redis")
    secret = None
    if raw.get("urlSecretRef") is not None:
        path = "spec.redis.urlSecretRef"
        ref = r.knobs(SecretRef, r.obj(raw["urlSecretRef"], path), path)
        secret = SecretRef(**ref | {"name": ref["name"] or ""})
    if (raw.get("url") is None) == (secret is None):
        r.fail("spec.redis", "set exactly one of url or urlSecretRef")
    return Redis(**values, url_secret=secret)


def _parse_deadline(r: _Reader, value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_deadline(value)
    except ValueError:
        r.fail("spec.deadline", f"{value!r} is not an RFC 3339 date-time")
        return None


def _parse_space(r: _Reader, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Where and how densely to crawl: the ranges, excludes and the strategy's scalars."""
    values = r.knobs(CrawlSpec, spec, "spec")
    values["ranges"] = r.cidrs(spec, "ranges", "spec", ("0.0.0.0/0",))
    if not values["ranges"]:
        r.fail("spec.ranges", "must list at least one CIDR (omit it for all of IPv4)")
    values["excludes"] = r.cidrs(spec, "excludes", "spec", ())
    if values["strategy"] == "sample" and values["samples"] == 0:
        r.fail("spec.samples", "must be > 0 when strategy is sample")
    return values


def _check_disk(r: _Reader, spec: CrawlSpec) -> None:
    """An ephemeral-storage limit given in `workers.resources` below the scratch emptyDir it must
    hold (the kubelet would evict each worker as the loader fills it), or not a size."""
    p = "spec.workers.resources.limits.ephemeral-storage"
    given = (spec.workers.resources.get("limits") or {}).get("ephemeral-storage")
    if given is None or spec.workers.scratch.storage_class_name is not None:
        return
    try:
        limit = parse_quantity(given)
    except ValueError:
        r.fail(p, f"must be a size such as 8Gi, got {given!r}")
        return
    if limit < parse_quantity(size := spec.scratch_size()):
        r.fail(p, f"{given} is below the workers' scratch volume ({size}, spec.workers.scratch.size "
                  "or its default for the crawl's sources), which counts against it: the kubelet "
                  "would evict the worker loading the files; raise it or leave it unset")


def parse_spec(raw: Mapping[str, Any] | None, worker_image: str | None = None) -> CrawlSpec:
    """Validate and default a raw `spec`; raises SpecError naming every offending field.

    `worker_image`: the operator's default worker image (else DEFAULT_IMAGE).
    """
    r = _Reader()
    spec = r.obj(raw, "spec")
    known = {k.key for _, k, _ in knobs(CrawlSpec)} | set(STRUCTURED_KEYS)
    for key in spec:
        if key not in known:
            r.fail(f"spec.{key}", "unknown field")

    def section(key: str) -> Mapping[str, Any]:
        return r.obj(spec.get(key), f"spec.{key}")

    result = CrawlSpec(
        **_parse_space(r, spec),
        kafka=_parse_kafka(r, section("kafka")),
        redis=_parse_redis(r, section("redis")),
        registries=_parse_registries(r, section("registries")),
        workers=_parse_workers(r, section("workers"), worker_image),
        scheduling=_parse_scheduling(r, section("scheduling")),
        egress=Egress(**r.knobs(Egress, section("egress"), "spec.egress")),
        sources=Sources(**r.knobs(Sources, section("sources"), "spec.sources")),
        deadline=_parse_deadline(r, spec.get("deadline")),
        cleanup=Cleanup(**r.knobs(Cleanup, section("cleanup"), "spec.cleanup")),
        history=History(**r.knobs(History, section("history"), "spec.history")),
    )
    _check_disk(r, result)
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
