"""The settings contract: every crawl knob declared once, its CLI option, variable and CRD field derived.

A `Setting` is one knob: its name, type, default, bounds or choices and help. Everything else
derives from it: the CLI option (`--<name>`, built by `cli.py`), the environment variable
(`WHOISCRAWL_<NAME>`, which the fleet worker reads through its options and the operator writes
through `worker_env`), and the WhoisCrawl spec field it is written from (`crd`; the operator's
`knobs.setting_knob` gives a CRD field the setting's own bounds, choices, default and help).

`worker` marks what the fleet worker reads from its environment, `operator` what the operator
writes into each worker pod's environment (tests/unit/test_settings.py holds both sides to it).
`CrawlSettings` is how a crawl's knobs travel as one object (the local crawl, the benches).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ENV_PREFIX = "WHOISCRAWL_"
# librdkafka properties reach workers, `plan` and the operator as WHOISCRAWL_KAFKA_<PROPERTY>
# (queue.kafka_config_from), from the environment or the crawl's credentials Secret.
KAFKA_PROPERTY_PREFIX = ENV_PREFIX + "KAFKA_"
# Loggers a worker writes at DEBUG too, comma-separated (`whoiscrawl.crawl`: each block it kept, once
# the broker acknowledged it): what the chaos bench's workers log, for a lost block's trail.
DEBUG_LOGGERS_ENV = ENV_PREFIX + "DEBUG_LOGGERS"
STRATEGIES = ("sweep", "sample")


@dataclass(frozen=True)
class Setting:
    """One knob, as every layer reads it."""

    name: str  # the Python name; the option is --<name>, the variable WHOISCRAWL_<NAME>
    kind: type  # str, int, float, bool, or list (a repeated option)
    default: Any  # the CLI's default
    help: str
    env: bool = True  # read from the environment too
    flags: tuple[str, ...] = ()  # the CLI option's names, when not --<name> (a switch: --x/--no-x)
    cli: bool = True  # a CLI option (else only a variable)
    crd: str = ""  # the WhoisCrawl spec field it is written from, as a path ("" none)
    worker: bool = False  # the fleet worker reads it from its environment
    operator: bool = False  # the operator writes it into each worker's environment
    lo: float | None = None  # inclusive bounds
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    optional: bool = False  # None allowed (no value: the layer's own default)

    @property
    def env_name(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def option(self) -> tuple[str, ...]:
        """The CLI option's names."""
        if self.flags:
            return self.flags
        dashed = self.name.replace("_", "-")
        return (f"--{dashed}/--no-{dashed}",) if self.kind is bool else (f"--{dashed}",)

    def problem(self, value: Any) -> str | None:
        """What is wrong with a value (None: nothing), in the words a CLI or spec message uses."""
        if value is None:
            return None if self.optional else "must be set"
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}; got {value!r}"
        if self.lo is not None and value < self.lo:
            return f"must be >= {self.lo:g}, got {value}"
        if self.hi is not None and value > self.hi:
            return f"must be <= {self.hi:g}, got {value}"
        return None


def _s(name: str, kind: type, default: Any, help: str, **options: Any) -> Setting:
    return Setting(name, kind, default, help, **options)


_FLEET = {"worker": True, "operator": True}
SETTINGS: dict[str, Setting] = {s.name: s for s in (
    # The fleet worker's environment as the operator writes it (in this order: the CRD's list).
    _s("crawl", str, "", "Crawl name", crd="metadata.name", **_FLEET),
    _s("kafka_bootstrap", str, "", "Kafka bootstrap servers", crd="kafka.bootstrapServers", **_FLEET),
    _s("topic_prefix", str, "whoiscrawl.", "Prefix of the crawl's topic names", crd="kafka.topicPrefix",
       **_FLEET),
    _s("rate_limits", str, None, "Per-registry budgets per egress address, e.g. "
       "'arin=10/s,lacnic=10/m,ripencc=8/s:3'", optional=True, crd="registries", **_FLEET),
    _s("metrics_port", int, 9090, "/metrics, /healthz, /readyz; 0 = off", crd="workers.metricsPort",
       **_FLEET),
    _s("grace_seconds", float, 20.0, "Drain time after SIGTERM", crd="workers.gracePeriodSeconds", **_FLEET),
    _s("egress_share", float, 1.0, "Addresses behind the egress key", crd="egress.addresses", **_FLEET),
    _s("egress_key", str, None, "Name of the public address this worker egresses from (default: host name)",
       optional=True, crd="egress.mode", **_FLEET),
    _s("redis_url", str, "", "Redis URL", crd="redis.url", **_FLEET),
    _s("bootstrap_url", str, None, "RFC 9224 ipv4.json (URL or file); default: the bundled IANA snapshot "
       "(the real registries)", optional=True, crd="workers.bootstrapUrl", **_FLEET),
    _s("pod_name", str, None, "This worker's name in its group (default: the host name, a pod's own)",
       optional=True, crd="metadata.name", **_FLEET),
    _s("previous", str, None, "The previous generation's crawl, refreshed by difference instead of crawled "
       "anew (its load's manifest and results topic; the operator names generation N-1 for N > 1)",
       optional=True, crd="metadata.name", **_FLEET),
    # Read by the worker (and the local crawl), never written by the operator.
    _s("bind_address", list, None, "Local source address to send from; repeat (or space-separate) to use "
       "several egress addresses", optional=True, worker=True),
    _s("whois", str, None, "host:port of a port-43 WHOIS server to fall back to for every registry "
       "('real' for theirs)", optional=True, worker=True),
    _s("list_children", bool, True, "Ask registries that offer it (RFC 9910 rdap-down) for a parent's "
       "children instead of probing its gaps on the grid", worker=True),
    # How long one request may take before it is asked again (docs/rate-limits.md, Timeouts): a
    # listing answers up to a registry's 10,000 rows (RIPE NCC's relation search, ~40 MB), far more
    # than a lookup's one network, so it has its own.
    _s("lookup_timeout", float, 10.0, "Seconds one lookup (RDAP or WHOIS, an entity's too) may take before "
       "it is asked again", lo=0.1, hi=3600.0, worker=True),
    _s("listing_timeout", float, 120.0, "Seconds one listing request (an RFC 9910 relation search, WHOIS -m, "
       "ARIN's r >) may take before it is asked again: a registry's 10,000-row search takes far longer "
       "than a lookup", lo=0.1, hi=3600.0, worker=True),
    _s("delegated", str, None, "Delegation statistics (a directory of delegated-*-extended-latest files, "
       "or one file) giving a block's country where an answer names none", cli=False, optional=True,
       worker=True),
    # The crawl's topics, as `plan` creates them.
    _s("topic_replication_factor", int, None, "Replicas of the crawl's topics (default: the broker's "
       "default.replication.factor)", flags=("--replication-factor",), lo=1, optional=True,
       crd="kafka.replicationFactor"),
    # The crawl's shape.
    _s("strategy", str, "sweep", "sweep (complete) or sample (the 2016 method)", env=False,
       choices=STRATEGIES, crd="strategy"),
    _s("resolution", int, 24, "Gap-probe grid of the sweep, as a prefix length.", env=False, lo=8, hi=32,
       crd="resolution"),
    _s("samples", int, 0, "Probes per shard for the sample strategy.", env=False,
       lo=0, hi=65536, crd="samples"),
    _s("shard_prefix", int, None, "Shard size, as a prefix length (default: /16-/24, 256+ shards)",
       env=False, optional=True, crd="shardPrefix"),
    _s("exclude", list, None, "Ranges to leave out", env=False, optional=True, crd="excludes"),
    _s("concurrency", int, 64, "Shards walked at once", env=False),
    # What the registries publish (docs/sources.md).
    _s("sources", str, None, "What to read, comma-separated: stats (delegation statistics: free space "
       "skipped, each block's registry known), dumps (bulk RPSL dumps: RIPE NCC, APNIC, LACNIC, AFRINIC), "
       "live (RDAP/WHOIS for the rest). Default stats,dumps,live; live alone with --bootstrap-url and no "
       "--files-base (the real registries' files do not describe another RDAP service). docs/sources.md",
       optional=True, crd="sources.use", **_FLEET),
    _s("files_base", str, None, "A mirror of the registries' download trees (URL or directory, "
       "<base>/<host>/<path>); the simulator's is <sim root>/published/. Default: the registries' own "
       "servers", optional=True, crd="sources.filesBase", **_FLEET),
    _s("accept_dump_terms", str, None, "Registries whose dump terms you accept (ripencc: the RIPE Database "
       "Terms and Conditions / acceptable-use policy limit copying a significant part; afrinic: no "
       "redistribution), or 'all'. Without it their dumps are not read and their space is crawled live",
       optional=True, crd="sources.acceptDumpTerms", **_FLEET),
    _s("verify", float, 0.001, "Share of each registry's dumped networks asked again live (freshness)",
       lo=0.0, hi=1.0, crd="sources.verify", **_FLEET),
    _s("fill_redacted", bool, True, "Ask live for each dumped network lacking holder, country or abuse "
       "e-mail (LACNIC's dump carries no abuse addresses: one lookup a network at its 10 a minute)",
       crd="sources.fillRedacted", **_FLEET),
)}
# What the fleet worker reads from its environment, and what the operator writes there.
WORKER_ENV = tuple(s.env_name for s in SETTINGS.values() if s.worker)
OPERATOR_ENV = tuple(s.env_name for s in SETTINGS.values() if s.operator)


DEFAULT_SOURCES = "stats,dumps,live"  # what a crawl reads when none are named (`chosen_sources`)


def chosen_sources(sources: str | None, files_base: str | None, bootstrap_url: str | None) -> str:
    """The sources a crawl reads (the CLI's, a worker's, the operator's sizing of its scratch
    volume): as asked, else all; live alone against another RDAP service (`bootstrap_url`) with no
    mirror of its files (`files_base`): the real registries' files do not describe it."""
    return sources or ("live" if bootstrap_url and not files_base else DEFAULT_SOURCES)


def env_name(name: str) -> str:
    """The variable of a declared setting (a KeyError names an undeclared one)."""
    return SETTINGS[name].env_name


def worker_env(**values: Any) -> dict[str, str]:
    """A worker's environment from settings by name, as the operator writes it (None: left unset).
    Only what the worker reads may be written (the operator -> worker contract)."""
    out = {}
    for name, value in values.items():
        setting = SETTINGS[name]
        if not setting.operator:
            raise KeyError(f"{name}: the operator does not write it into a worker's environment")
        if value is not None:
            out[setting.env_name] = str(value)
    return out


@dataclass(frozen=True)
class CrawlSettings:
    """A crawl's knobs as one object (the local crawl, the benches), defaults from the contract.

    Where the library's default differs from the CLI's it says why: asked from code, a crawl reads
    nothing published unless told (sources live alone), so it never downloads the registries' files
    unasked."""

    strategy: str = SETTINGS["strategy"].default
    resolution: int = SETTINGS["resolution"].default
    samples: int = SETTINGS["samples"].default
    shard_prefix: int | None = SETTINGS["shard_prefix"].default  # automatic
    excludes: tuple[str, ...] = ()
    concurrency: int = SETTINGS["concurrency"].default
    list_children: bool = SETTINGS["list_children"].default  # follow rdap-down links (RFC 9910)
    whois_servers: Mapping[str, str] = field(default_factory=dict)  # registry -> host:port
    lookup_timeout: float = SETTINGS["lookup_timeout"].default  # seconds a lookup may take
    listing_timeout: float = SETTINGS["listing_timeout"].default  # ... and a listing request
    # What the registries publish, used before anything is asked live (docs/sources.md).
    sources: frozenset[str] = frozenset({"live"})  # stats, dumps, live
    files_base: str | None = SETTINGS["files_base"].default  # a mirror of their trees (None: theirs)
    accept_dump_terms: frozenset[str] = frozenset()  # registries whose dump terms the user accepted
    verify: float = 0.0  # share of each registry's dumped networks asked again live (freshness)
    fill_redacted: bool = False  # ask live for each dumped network lacking holder, country or abuse
    failure_pauses: tuple[float, ...] | None = None  # before an address is asked again (None: the crawler's)
    # A fleet's topics (the benches publish the plan): None, the broker's default.replication.factor.
    topic_replication_factor: int | None = SETTINGS["topic_replication_factor"].default
