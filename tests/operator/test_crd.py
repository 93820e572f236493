"""The CRD: one generated source of truth, checked-in copies, schema defaults == Python defaults."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from opsupport_crd import apply_defaults, openapi, validator
from whoiscrawl.operator.crd import TARGETS, build_crd, render
from whoiscrawl.operator.spec import SpecError, parse_spec

from whoiscrawl.rates import LimitError, parse_rate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "manifests/examples/crawl.yaml"


@pytest.mark.parametrize("rel", TARGETS, ids=str)
def test_checked_in_copies_match_the_generator(rel: Path) -> None:
    assert (ROOT / rel).read_text() == render(), \
        "stale CRD: run `python -m whoiscrawl.operator.crd --write`"


def test_crd_is_a_valid_kubernetes_object() -> None:
    kubernetes_validate.validate(build_crd(), "1.37.0", strict=True)


def test_subresources_and_columns() -> None:
    version = build_crd()["spec"]["versions"][0]
    scale = version["subresources"]["scale"]
    assert scale == {"specReplicasPath": ".spec.workers.replicas",
                     "statusReplicasPath": ".status.replicas",
                     "labelSelectorPath": ".status.selector"}
    assert "status" in version["subresources"]
    columns = version["additionalPrinterColumns"]
    assert [c["name"] for c in columns if not c.get("priority")] == [
        "Ready", "Progress %", "Blocks", "Workers", "Age"]
    assert any(c.get("priority") == 1 for c in columns)
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True


def test_schema_defaults_agree_with_python_defaults() -> None:
    minimal = {"kafka": {"bootstrapServers": "k:9092"}, "redis": {"url": "redis://r"}}
    defaulted = apply_defaults(openapi()["properties"]["spec"], copy.deepcopy(minimal))
    assert defaulted["workers"]["max"] == 10 and defaulted["registries"]["lacnic"]["rate"] == "10/m"
    assert parse_spec(defaulted) == parse_spec(minimal)


def test_example_is_valid_against_schema_and_parser() -> None:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    validator().validate(doc)
    spec = parse_spec(apply_defaults(openapi()["properties"]["spec"], doc["spec"]))
    assert spec.scheduling.capacity_type == "any"


@pytest.mark.parametrize(("patch", "where"), [
    ({"strategy": "random"}, "strategy"),
    ({"resolution": 33}, "resolution"),
    ({"ranges": ["10.0.0.0/33"]}, "ranges"),
    ({"registries": {"arin": {"rate": "fast"}}}, "rate"),
    ({"scheduling": {"capacityType": "cheap"}}, "capacityType"),
])
def test_schema_rejects_bad_values(patch: dict[str, Any], where: str) -> None:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    for key, value in patch.items():
        if isinstance(value, dict):
            doc["spec"].setdefault(key, {}).update(value)
        else:
            doc["spec"][key] = value
    errors = list(validator().iter_errors(doc))
    assert errors and any(where in "/".join(map(str, e.absolute_path)) for e in errors)


# One rate syntax: what the CRD's pattern admits is exactly what the workers' parser reads.
RATE_TABLE = [
    ("10/s", True), ("10/m", True), ("600/h", True), ("5000/d", True), ("0", True), ("2.5", True),
    ("8:3", True), ("10/s:3", True), ("0.5/m:1", True),
    ("fast", False), ("10/x", False), ("-1/s", False), ("", False), ("/s", False), ("10/", False),
    ("10/s:", False), ("1e3/s", False), (".5/s", False), ("10 /s", False), ("10/s:3:4", False),
]


@pytest.mark.parametrize(("text", "valid"), RATE_TABLE)
def test_crd_rate_pattern_and_parser_agree(text: str, valid: bool) -> None:
    schema = openapi()["properties"]["spec"]["properties"]["registries"]["properties"]["arin"]
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    doc["spec"]["registries"] = {"arin": {"rate": text}}
    admitted = not list(validator().iter_errors(doc))
    try:
        parse_rate(text)
        parsed = True
    except LimitError:
        parsed = False
    assert (admitted, parsed) == (valid, valid), schema["properties"]["rate"]["pattern"]


def _constrained_leaves(schema: dict[str, Any], path: tuple[str, ...] = ()
                        ) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every bounded or enumerated scalar of the spec schema, by its path under spec."""
    out = []
    for key, sub in schema.get("properties", {}).items():
        if sub.get("type") == "object":
            out += _constrained_leaves(sub, (*path, key))
        elif {"minimum", "maximum", "enum"} & set(sub):
            out.append(((*path, key), sub))
    return out


def _probes(sub: dict[str, Any]) -> list[Any]:
    if "enum" in sub:
        return [*sub["enum"], "bogus"]
    values: list[Any] = []
    for bound, step in (("minimum", 1), ("maximum", -1)):
        if bound in sub:
            edge = sub[bound]
            values += [edge, edge - step] if sub["type"] == "integer" else [edge, edge + 0.5,
                                                                          edge - 0.5]
    return values


SPEC_LEAVES = _constrained_leaves(openapi()["properties"]["spec"])


@pytest.mark.parametrize(("path", "sub"), SPEC_LEAVES, ids=[".".join(p) for p, _ in SPEC_LEAVES])
def test_the_schema_and_the_parser_agree_on_every_bound_and_choice(path: tuple[str, ...],
                                                                    sub: dict[str, Any]) -> None:
    """Each field's bounds and choices are declared once: the CRD and the parser cannot differ."""
    for value in _probes(sub):
        doc: dict[str, Any] = {"apiVersion": "whoiscrawl.io/v1alpha1", "kind": "WhoisCrawl",
                               "metadata": {"name": "c"},
                               "spec": {"kafka": {"bootstrapServers": "k:9092"},
                                        "redis": {"url": "redis://r"},
                                        "workers": {"mode": "manual", "max": 1000},
                                        "samples": 1}}
        node = doc["spec"]
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
        where = "spec." + ".".join(path)
        schema_refuses = any(list(e.absolute_path)[1:] == list(path)
                             for e in validator().iter_errors(doc))
        try:
            parse_spec(doc["spec"])
            parser_refuses = False
        except SpecError as err:
            parser_refuses = any(p == where for p, _ in err.problems)
        assert schema_refuses == parser_refuses, (where, value, schema_refuses, parser_refuses)
