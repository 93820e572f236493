"""What a kubelet would put in a container's environment, from the pod and its ConfigMaps/Secrets."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

# (plural, name) -> the object's data, decoded; raises LookupError when the object is missing.
DataOf = Callable[[str, str], dict[str, str]]


def decoded(plural: str, obj: Mapping[str, Any]) -> dict[str, str]:
    data = dict(obj.get("data") or {})
    if plural == "secrets":
        data = {k: base64.b64decode(v).decode() for k, v in data.items()}
    return data


def dotted(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj[part]
    return obj


def container_env(container: Mapping[str, Any], pod: Mapping[str, Any], data: DataOf) -> dict[str, str]:
    """envFrom ConfigMaps/Secrets, then literal values, ConfigMap/Secret keys and downward-API fields."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            env.update(data("configmaps", source["configMapRef"]["name"]))
        if "secretRef" in source:
            env.update(data("secrets", source["secretRef"]["name"]))
    for var in container.get("env") or []:
        ref = var.get("valueFrom") or {}
        if "fieldRef" in ref:
            env[var["name"]] = str(dotted(pod, ref["fieldRef"]["fieldPath"]))
        elif "configMapKeyRef" in ref:
            key = ref["configMapKeyRef"]
            env[var["name"]] = data("configmaps", key["name"])[key["key"]]
        elif "secretKeyRef" in ref:
            key = ref["secretKeyRef"]
            env[var["name"]] = data("secrets", key["name"])[key["key"]]
        else:
            env[var["name"]] = str(var.get("value", ""))
    return env
