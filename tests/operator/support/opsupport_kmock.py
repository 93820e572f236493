"""A realism shim over kmock's KubernetesEmulator: what a real API server does that kmock does not.

Adds: uid, resourceVersion (optimistic concurrency: 409 on a stale merge-patch precondition, 422
when a JSON-patch `test` fails), generation bumped on spec changes only, kind/apiVersion,
creationTimestamp, generateName, status and scale subresources split from the main resource,
PUT, schema validation (422) and defaulting for registered resources, finalizers with
deletionTimestamp, background garbage collection of owned objects, and injected API errors
(`faults`: a 403 or 422 for one verb on one resource) and stalls (`stalls`: a slow answer).
Everything else (lists, watches, discovery) is kmock's own.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import itertools
import json
import random
import string
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
from kmock._internal import dicts, enums, k8s, references, rendering

Validator = Callable[[dict[str, Any]], list[str]]
Defaulter = Callable[[dict[str, Any]], dict[str, Any]]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace(
        "+00:00", "Z")


def _get_path(obj: Mapping[str, Any], dotted: str) -> Any:
    cur: Any = obj
    for part in dotted.strip(".").split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(dotted.strip(".").split(".")):
        out = {part: out}
    result: dict[str, Any] = out
    return result


def _verb(request: rendering.Request) -> str:
    return str(getattr(request.method, "value", request.method)).upper()


def _spec_part(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


@attrs.define(kw_only=True)
class RealisticKube(k8s.KubernetesEmulator):
    """KubernetesEmulator plus the API-server behaviours the operator relies on."""

    validators: dict[str, Validator] = attrs.field(factory=dict)  # plural -> errors
    defaulters: dict[str, Defaulter] = attrs.field(factory=dict)  # plural -> defaulted object
    scale_paths: dict[str, tuple[str, str]] = attrs.field(factory=dict)  # plural -> (spec, status)
    # (METHOD, plural) -> (HTTP status, message): an injected API error (admission, RBAC);
    # a subresource as "plural/sub" (e.g. ("PATCH", "whoiscrawls/status"): a status write refused)
    faults: dict[tuple[str, str], tuple[int, str]] = attrs.field(factory=dict)
    # (METHOD, plural or plural/sub) -> (HTTP status, message): the change is made, then this error
    # answered (etcd's "request timed out" after a commit: the caller cannot tell it landed)
    lost_replies: dict[tuple[str, str], tuple[int, str]] = attrs.field(factory=dict)
    answered: list[tuple[str, str]] = attrs.field(factory=list)  # each fault or lost reply given
    # (METHOD, plural) -> seconds the answer takes (a half-open connection, a stuck server)
    stalls: dict[tuple[str, str], float] = attrs.field(factory=dict)
    _rv: Any = attrs.field(factory=lambda: itertools.count(1000), init=False)

    # ------------------------------------------------------------------ routing
    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is not None:
            await asyncio.sleep(self.stalls.get((_verb(request), str(request.resource.plural)), 0))
        fault = self._fault(request)
        if fault is not None:
            return await self._render_error(fault)
        mutating = request.method in (enums.method.POST, enums.method.PATCH, enums.method.PUT,
                                      enums.method.DELETE)
        if request.resource is None or not (mutating or request.subresource == "scale"):
            return await super()._handle(request)
        try:
            async with self._lock:
                status, body, events = self._mutate(request)
                for resource, event in events:
                    await self._buses[resource].put(event)
        except k8s.KubernetesError as exc:
            return await self._render_error(exc)
        lost = self._fault(request, self.lost_replies)
        if lost is not None:
            return await self._render_error(lost)
        return aiohttp.web.json_response(body, status=status)

    def _mutate(self, request: rendering.Request) -> tuple[int, Any, list[tuple[Any, Any]]]:
        assert request.resource is not None
        if request.subresource == "scale":
            return self._scale(request)
        if request.method == enums.method.POST and request.name is None:
            return self._create(request)
        if request.method in (enums.method.PATCH, enums.method.PUT) and request.name:
            return self._update(request)
        if request.method == enums.method.DELETE and request.name:
            return self._delete(request)
        raise k8s.KubernetesError(405, "MethodNotAllowed", f"{request.method} not supported")

    def _fault(self, request: rendering.Request,
               table: dict[tuple[str, str], tuple[int, str]] | None = None) -> k8s.KubernetesError | None:
        if request.resource is None or request.subresource == "scale":
            return None
        plural = str(request.resource.plural)
        if request.subresource:
            plural = f"{plural}/{request.subresource}"
        found = (self.faults if table is None else table).get((_verb(request), plural))
        if found is None:
            return None
        self.answered.append((_verb(request), plural))
        status, message = found
        reason = {403: "Forbidden", 422: "Invalid"}.get(status, "InternalError")
        return k8s.KubernetesError(status, reason, message)

    # ------------------------------------------------------------------ helpers
    def _info(self, resource: references.resource) -> references.ResourceInfo:
        for res in self._resources:
            if res == resource:
                return self._resources[res]
        return references.ResourceInfo()

    def _has_status(self, resource: references.resource) -> bool:
        return "status" in self._info(resource).subresources

    def _key(self, request: rendering.Request, name: str | None = None) -> Any:
        return (request.resource, request.namespace, name or request.name)

    def _live(self, key: Any) -> dict[str, Any] | None:
        if key not in self._objects or self._objects[key].deleted:
            return None
        return copy.deepcopy(self._objects[key].raw)

    def _store(self, key: Any, obj: dict[str, Any]) -> None:
        if key not in self._objects:
            self._objects[key] = obj
        else:
            self._objects[key].create(obj)

    def _check(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        if plural in self.defaulters:
            obj = self.defaulters[plural](obj)
        problems = self.validators[plural](obj) if plural in self.validators else []
        if problems:
            raise k8s.KubernetesError(422, "Invalid", "; ".join(problems),
                                      {"causes": [{"message": p} for p in problems]})
        return obj

    # ------------------------------------------------------------------ verbs
    def _create(self, request: rendering.Request) -> tuple[int, Any, list[tuple[Any, Any]]]:
        assert request.resource is not None
        obj = copy.deepcopy(request.data or {})
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = meta["generateName"] + "".join(random.choices(string.ascii_lowercase, k=5))
        if not name:
            raise k8s.KubernetesError(422, "Invalid", "metadata.name: Required value")
        namespace = request.namespace or meta.get("namespace")
        key = (request.resource, namespace, name)
        if self._live(key) is not None:
            raise k8s.KubernetesError(409, "AlreadyExists", f"{name!r} already exists")
        info = self._info(request.resource)
        group, version = request.resource.group, request.resource.version
        obj["apiVersion"] = f"{group}/{version}" if group else str(version)
        obj["kind"] = obj.get("kind") or info.kind or ""
        meta.update({"name": name, "uid": str(uuid.uuid4()), "resourceVersion": str(next(self._rv)),
                     "generation": 1, "creationTimestamp": _now()})
        if namespace:
            meta["namespace"] = namespace
        meta.pop("deletionTimestamp", None)
        if self._has_status(request.resource):
            obj.pop("status", None)  # status is written through its subresource only
        obj = self._check(str(request.resource.plural), obj)
        self._store(key, obj)
        return 201, obj, [(request.resource, {"type": "ADDED", "object": copy.deepcopy(obj)})]

    def _apply_patch(self, request: rendering.Request, old: dict[str, Any]) -> dict[str, Any]:
        data = request.data
        ctype = request.headers.get("Content-Type", "")
        if request.method == enums.method.PUT:
            new = copy.deepcopy(data or {})
            sent_rv = (new.get("metadata") or {}).get("resourceVersion")
            if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
                raise k8s.KubernetesError(409, "Conflict", "the object has been modified")
            return dict(new)
        if isinstance(data, list) or "json-patch" in ctype:
            try:
                return dict(jsonpatch.apply_patch(old, data or [], in_place=False))
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise k8s.KubernetesError(422, "Invalid", f"JSON patch failed: {exc}") from exc
        if not isinstance(data, Mapping):
            raise k8s.KubernetesError(400, "BadRequest", "patch body must be a JSON object")
        sent_rv = (data.get("metadata") or {}).get("resourceVersion")
        if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
            raise k8s.KubernetesError(409, "Conflict", "the object has been modified; "
                                                       "please apply your changes to the latest version")
        return dict(dicts.merge_patch_dict(old, data))

    def _update(self, request: rendering.Request) -> tuple[int, Any, list[tuple[Any, Any]]]:
        assert request.resource is not None
        key = self._key(request)
        old = self._live(key)
        if old is None:
            raise k8s.KubernetesObjectNotFoundError()
        patched = self._apply_patch(request, old)
        sub = request.subresource
        if self._has_status(request.resource):
            if sub == "status":
                new = {**copy.deepcopy(old), "status": patched.get("status")}
                if new["status"] is None:
                    new.pop("status")
            else:
                new = {k: v for k, v in patched.items() if k != "status"}
                if "status" in old:
                    new["status"] = old["status"]
        else:
            new = patched
        meta = new.setdefault("metadata", {})
        for fixed in ("name", "namespace", "uid", "creationTimestamp", "generation",
                      "resourceVersion", "deletionTimestamp"):
            if fixed in old["metadata"]:
                meta[fixed] = old["metadata"][fixed]
            else:
                meta.pop(fixed, None)
        new["apiVersion"], new["kind"] = old.get("apiVersion"), old.get("kind")
        new = self._check(str(request.resource.plural), new)
        if new == old:
            return 200, new, []
        if _spec_part(new) != _spec_part(old):
            meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        meta["resourceVersion"] = str(next(self._rv))
        events: list[tuple[Any, Any]] = []
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._objects[key].create(new)
            self._objects[key].delete()
            events.append((request.resource, {"type": "DELETED", "object": new}))
            events += self._collect_garbage(meta["uid"])
        else:
            self._objects[key].create(new)
            events.append((request.resource, {"type": "MODIFIED", "object": new}))
        return 200, new, events

    def _delete(self, request: rendering.Request) -> tuple[int, Any, list[tuple[Any, Any]]]:
        assert request.resource is not None
        key = self._key(request)
        old = self._live(key)
        if old is None:
            raise k8s.KubernetesObjectNotFoundError()
        meta = old["metadata"]
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = _now()
                meta["resourceVersion"] = str(next(self._rv))
                self._objects[key].create(old)
                return 200, old, [(request.resource, {"type": "MODIFIED", "object": old})]
            return 200, old, []
        self._objects[key].delete()
        events = [(request.resource, {"type": "DELETED", "object": old})]
        return 200, old, events + self._collect_garbage(meta["uid"])

    def _collect_garbage(self, owner_uid: str) -> list[tuple[Any, Any]]:
        """Background cascading deletion: whatever the deleted object owned goes too."""
        events: list[tuple[Any, Any]] = []
        for (resource, _namespace, _name), obj in list(self._objects.items()):
            if obj.deleted:
                continue
            raw = obj.raw
            refs = (raw.get("metadata") or {}).get("ownerReferences") or []
            if any(r.get("uid") == owner_uid for r in refs):
                obj.delete()
                events.append((resource, {"type": "DELETED", "object": raw}))
                events += self._collect_garbage(str(raw["metadata"].get("uid")))
        return events

    def _scale(self, request: rendering.Request) -> tuple[int, Any, list[tuple[Any, Any]]]:
        assert request.resource is not None
        plural = str(request.resource.plural)
        if plural not in self.scale_paths:
            raise k8s.KubernetesNotFoundError()
        spec_path, status_path = self.scale_paths[plural]
        events: list[tuple[Any, Any]] = []
        if request.method in (enums.method.PATCH, enums.method.PUT):
            replicas = ((request.data or {}).get("spec") or {}).get("replicas")
            if not isinstance(replicas, int):
                raise k8s.KubernetesError(422, "Invalid", "spec.replicas must be an integer")
            inner = rendering.Request(method="PATCH", resource=request.resource,
                                      namespace=request.namespace, name=request.name,
                                      data=_nest(spec_path, replicas),
                                      headers={"Content-Type": "application/merge-patch+json"})
            _, _, events = self._update(inner)
        obj = self._live(self._key(request))
        if obj is None:
            raise k8s.KubernetesObjectNotFoundError()
        scale = {"apiVersion": "autoscaling/v1", "kind": "Scale",
                 "metadata": {k: obj["metadata"][k] for k in ("name", "namespace", "uid",
                                                               "resourceVersion")},
                 "spec": {"replicas": _get_path(obj, spec_path) or 0},
                 "status": {"replicas": _get_path(obj, status_path) or 0,
                            "selector": _get_path(obj, ".status.selector") or ""}}
        return 200, scale, events


def make(crd: Mapping[str, Any], validator: Validator | None = None,
         defaulter: Defaulter | None = None) -> RealisticKube:
    """A shim serving the bundled builtins plus one CRD (with its subresources)."""
    kube = RealisticKube()
    kube.resources.load_bundled()
    names = crd["spec"]["names"]
    version = crd["spec"]["versions"][0]
    key = f"{crd['spec']['group']}/{version['name']}/{names['plural']}"
    kube.resources[key] = kmock.ResourceInfo(
        namespaced=crd["spec"]["scope"] == "Namespaced", kind=names["kind"],
        singular=names["singular"], shortnames=set(names.get("shortNames", [])),
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
        subresources=set(version.get("subresources", {})))
    scale = version.get("subresources", {}).get("scale")
    if scale:
        kube.scale_paths[names["plural"]] = (scale["specReplicasPath"],
                                             scale["statusReplicasPath"])
    if validator:
        kube.validators[names["plural"]] = validator
    if defaulter:
        kube.defaulters[names["plural"]] = defaulter
    return kube


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, default=str)
