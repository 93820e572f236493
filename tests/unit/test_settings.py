"""The settings contract (whoiscrawl/settings.py) holds every layer to one declaration of each knob:
what the operator writes into a worker's environment is what the worker reads, and back."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import typer
from typer.core import TyperOption
from whoiscrawl.operator import builders, crd
from whoiscrawl.operator.knobs import KNOB
from whoiscrawl.operator.spec import OWNED_ENV, CrawlSpec, parse_spec

from whoiscrawl import cli
from whoiscrawl.settings import OPERATOR_ENV, SETTINGS, WORKER_ENV, CrawlSettings, env_name, worker_env
from whoiscrawl.sources import stats

OWNER = builders.Owner("demo", "crawls", "uid-1", "0.1.0")
BASE: dict[str, Any] = {"kafka": {"bootstrapServers": "k:9092"}}
# Specs that between them make the operator write every variable it ever writes.
SPECS = [
    {**BASE, "redis": {"url": "redis://r"}, "egress": {"mode": "nat", "addresses": 3},
     "workers": {"bootstrapUrl": "http://127.0.0.1:1/ipv4.json", "gracePeriodSeconds": 7,
                 "metricsPort": 9100},
     "sources": {"use": "stats,dumps,live", "filesBase": "http://127.0.0.1:1/published",
                 "acceptDumpTerms": "all", "verify": 0.01, "fillRedacted": False}},
    {**BASE, "redis": {"urlSecretRef": {"name": "r", "key": "u"}}, "egress": {"mode": "node"}},
]


def command(name: str) -> Any:
    """A command of `whoiscrawl` as its CLI parses it."""
    return typer.main.get_command(cli.app).commands[name]  # type: ignore[attr-defined]


def operator_writes(spec: CrawlSpec) -> dict[str, Any]:
    """Every variable the operator gives a worker pod: its ConfigMap and the pod's own env."""
    deployment = builders.deployment(OWNER, spec, 1, "spot")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    per_pod = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    later = builders.config_data("demo.g2", spec, builders.previous_crawl(replace(OWNER, generation=2)))
    return {**builders.config_data("demo", spec), **later, **per_pod}


def worker_reads() -> set[str]:
    """Every variable the worker reads: its options' and the statistics' ($WHOISCRAWL_DELEGATED)."""
    envvars = {p.envvar for p in command("worker").params if isinstance(p, TyperOption) and p.envvar}
    return {str(e) for e in envvars} | {stats.ENV}


def test_the_operator_writes_exactly_what_the_contract_says_it_writes() -> None:
    written = set().union(*(operator_writes(parse_spec(raw)) for raw in SPECS))
    assert written == set(OPERATOR_ENV)
    assert set(OWNED_ENV) == set(OPERATOR_ENV)  # and workers.env may override none of it


def test_every_variable_the_operator_writes_is_one_the_worker_reads_and_back() -> None:
    assert worker_reads() == set(WORKER_ENV)
    assert set(OPERATOR_ENV) <= set(WORKER_ENV)
    # What the worker reads and the operator does not write is the user's, through workers.env.
    assert set(WORKER_ENV) - set(OPERATOR_ENV) == {env_name(n) for n in (
        "bind_address", "whois", "list_children", "delegated", "lookup_timeout", "listing_timeout")}


def test_the_worker_parses_what_the_operator_wrote(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = parse_spec(SPECS[0])
    for name, value in builders.config_data("crawls.demo", spec).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(env_name("pod_name"), "demo-worker-abc")
    given = command("worker").make_context("worker", []).params
    assert given["crawl"] == "crawls.demo"
    assert given["kafka_bootstrap"] == "k:9092" and given["redis_url"] == "redis://r"
    assert given["topic_prefix"] == spec.kafka.queue_prefix == "whoiscrawl."
    assert given["grace_seconds"] == 7.0 and given["metrics_port"] == 9100
    assert given["egress_key"] == "nat" and given["egress_share"] == 3.0
    assert given["bootstrap_url"] == "http://127.0.0.1:1/ipv4.json"
    assert given["rate_limits"] == spec.rate_limits_env()
    assert given["pod_name"] == "demo-worker-abc"


def test_the_operator_may_write_only_what_the_worker_reads() -> None:
    with pytest.raises(KeyError, match="whois"):
        worker_env(whois="real")
    assert worker_env(crawl="c", redis_url=None) == {"WHOISCRAWL_CRAWL": "c"}


@pytest.mark.parametrize("name", ["crawl", "plan", "worker"])
def test_each_command_option_of_a_setting_is_the_settings(name: str) -> None:
    """Names, variable, default and help of every option named after a setting come from it."""
    checked = 0
    for param in command(name).params:
        setting = SETTINGS.get(str(param.name))
        if setting is None or not isinstance(param, TyperOption):
            continue
        checked += 1
        assert param.envvar == (setting.env_name if setting.env else None), param.name
        assert param.help == setting.help, param.name
        if not param.required:
            assert param.default == setting.default, param.name
        flags = [f for pair in setting.option for f in pair.split("/")]
        assert set(param.opts + param.secondary_opts) == set(flags), param.name
    assert checked >= 8


def test_every_crd_field_a_setting_names_is_in_the_crd() -> None:
    spec = crd.spec_schema()
    for setting in SETTINGS.values():
        if not setting.crd or setting.crd.startswith("metadata."):
            continue
        node = spec
        for part in setting.crd.split("."):
            assert part in node["properties"], f"{setting.name}: spec.{setting.crd} is not in the CRD"
            node = node["properties"][part]


@pytest.mark.parametrize("name", ["strategy", "resolution", "samples"])
def test_a_crawl_knob_of_the_crd_has_the_settings_default_bounds_and_help(name: str) -> None:
    setting = SETTINGS[name]
    knob = next(f.metadata[KNOB] for f in CrawlSpec.__dataclass_fields__.values()
                if f.name == name and KNOB in f.metadata)
    schema = crd.spec_schema()["properties"][knob.key]
    assert schema.get("default") == setting.default
    assert schema.get("minimum") == setting.lo and schema.get("maximum") == setting.hi
    assert schema.get("enum") == (list(setting.choices) if setting.choices else None)
    assert schema["description"] == setting.help
    assert getattr(CrawlSpec(kafka=None, redis=None), name) == setting.default  # type: ignore[arg-type]


@pytest.mark.parametrize(("setting", "value", "problem"), [
    ("resolution", 24, None), ("resolution", 7, "must be >= 8, got 7"), ("resolution", 33, "must be <= 32"),
    ("strategy", "walk", "must be one of sweep, sample"), ("verify", 1.5, "must be <= 1"),
    ("bootstrap_url", None, None), ("crawl", None, "must be set"),
])
def test_a_setting_checks_a_value(setting: str, value: Any, problem: str | None) -> None:
    found = SETTINGS[setting].problem(value)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_crawl_settings_defaults_are_the_contracts_where_the_library_keeps_the_clis() -> None:
    chosen = CrawlSettings()
    for name in ("strategy", "resolution", "samples", "shard_prefix", "concurrency", "list_children",
                 "files_base"):
        assert getattr(chosen, name) == SETTINGS[name].default, name
    # Asked from code, nothing published is read unless told: live alone, nothing verified.
    assert (chosen.sources, chosen.verify, chosen.fill_redacted) == (frozenset({"live"}), 0.0, False)

