"""Test helpers: the CRD's schema as JSON Schema, and structural defaulting like an API server."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
from whoiscrawl.operator.crd import build_crd


def openapi() -> dict[str, Any]:
    schema: dict[str, Any] = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def to_jsonschema(node: Any) -> Any:
    """OpenAPI v3.0 (as Kubernetes uses it) -> draft 4 JSON Schema."""
    if isinstance(node, list):
        return [to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_jsonschema(v) for k, v in node.items()
           if not k.startswith("x-kubernetes") and k != "nullable"}
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
    return out


def validator() -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(to_jsonschema(openapi()))


def apply_defaults(schema: dict[str, Any], obj: Any) -> Any:
    """Fill defaults the way the API server does: only inside objects that exist."""
    if isinstance(obj, dict) and "properties" in schema:
        for key, sub in schema["properties"].items():
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
            if key in obj:
                obj[key] = apply_defaults(sub, obj[key])
    elif isinstance(obj, list) and "items" in schema:
        return [apply_defaults(schema["items"], item) for item in obj]
    return obj
