"""A small JSON client for the Kubernetes API (owned objects, pods, secrets) and an apply helper."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from whoiscrawl.operator.builders import desired_hash


class KubeError(RuntimeError):
    """An API call failed; `status` is the HTTP status (0 when the server was not reached)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = api_message(message)
        super().__init__(f"HTTP {status}: {self.message}" if status else message)


def api_message(body: str) -> str:
    """The `message` of a Kubernetes Status body (what kubectl shows), else the body itself."""
    try:
        found = json.loads(body)
    except ValueError:
        return body
    return str(found["message"]) if isinstance(found, dict) and found.get("message") else body


class Kube(Protocol):
    """The API calls the reconciler makes; tests may fake this Protocol."""

    def get(self, api: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    def create(self, api: str, plural: str, namespace: str,
               body: Mapping[str, Any]) -> dict[str, Any]: ...

    def patch(self, api: str, plural: str, namespace: str, name: str,
              body: Mapping[str, Any]) -> dict[str, Any]: ...

    def list(self, api: str, plural: str, namespace: str,
             selector: Mapping[str, str]) -> list[dict[str, Any]]: ...

    def patch_status(self, api: str, plural: str, namespace: str, name: str,
                     status: Mapping[str, Any]) -> dict[str, Any]: ...

    def delete(self, api: str, plural: str, namespace: str, name: str) -> bool: ...


def path(api: str, plural: str, namespace: str, name: str | None = None) -> str:
    base = "/api/v1" if api == "v1" else f"/apis/{api}"
    out = f"{base}/namespaces/{quote(namespace)}/{plural}"
    return f"{out}/{quote(name)}" if name else out


def matches(labels: Mapping[str, str] | None, selector: Mapping[str, str]) -> bool:
    have = labels or {}
    return all(have.get(k) == v for k, v in selector.items())


REQUEST_TIMEOUT_SECONDS = 30.0  # connect and read, per call: a half-open connection fails the pass


class KubeClient:
    """Kube over the official client's transport: kubeconfig / in-cluster auth, raw JSON bodies.

    Every call carries a request timeout, so a stuck connection fails the pass (and frees the
    crawl's lock) instead of freezing it.
    """

    def __init__(self, server: str | None = None,
                 timeout: float = REQUEST_TIMEOUT_SECONDS, kubeconfig: str | None = None) -> None:
        """`server`: an unauthenticated URL (tests); `kubeconfig`: that file; neither: in-cluster
        credentials, else $KUBECONFIG or ~/.kube/config."""
        self.timeout = timeout
        from kubernetes import client, config

        cfg = client.Configuration()
        if server:
            cfg.host = server.rstrip("/")
            cfg.verify_ssl = False
        elif kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        else:
            try:
                config.load_incluster_config(client_configuration=cfg)
            except config.ConfigException:
                # read $KUBECONFIG now: the client's own default was fixed when it was imported
                config.load_kube_config(config_file=os.environ.get("KUBECONFIG"),
                                        client_configuration=cfg)
        self._api = client.ApiClient(cfg)

    def _request(self, method: str, url: str, body: Any = None,
                 content_type: str = "application/json",
                 query: Mapping[str, str] | None = None) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        if query:
            url = f"{url}?{urlencode(query)}"
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            req = self._api.param_serialize(method, url, header_params=headers, body=body,
                                            auth_settings=["BearerToken"])
            resp = self._api.call_api(*req, _request_timeout=(self.timeout, self.timeout))
            raw = resp.read()
        except ApiException as exc:
            raise KubeError(int(exc.status or 0), str(exc.body or exc.reason)) from exc
        except Exception as exc:  # urllib3 connection errors and the like
            raise KubeError(0, f"{method} {url}: {exc}") from exc
        if resp.status == 404:
            return None
        if not 200 <= resp.status < 300:
            raise KubeError(resp.status, api_message(raw.decode(errors="replace"))[:500])
        return json.loads(raw) if raw else {}

    def get(self, api: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._request("GET", path(api, plural, namespace, name))

    def create(self, api: str, plural: str, namespace: str,
               body: Mapping[str, Any]) -> dict[str, Any]:
        out = self._request("POST", path(api, plural, namespace), dict(body))
        if out is None:
            raise KubeError(404, f"cannot create {plural} in {namespace}")
        return out

    def patch(self, api: str, plural: str, namespace: str, name: str,
              body: Mapping[str, Any]) -> dict[str, Any]:
        out = self._request("PATCH", path(api, plural, namespace, name), dict(body),
                            "application/merge-patch+json")
        if out is None:
            raise KubeError(404, f"{plural}/{name} not found in {namespace}")
        return out

    def patch_status(self, api: str, plural: str, namespace: str, name: str,
                     status: Mapping[str, Any]) -> dict[str, Any]:
        out = self._request("PATCH", path(api, plural, namespace, name) + "/status",
                            {"status": dict(status)}, "application/merge-patch+json")
        if out is None:
            raise KubeError(404, f"{plural}/{name} not found in {namespace}")
        return out

    def delete(self, api: str, plural: str, namespace: str, name: str) -> bool:
        """Delete one object; False if it was not there."""
        return self._request("DELETE", path(api, plural, namespace, name)) is not None

    def list(self, api: str, plural: str, namespace: str,
             selector: Mapping[str, str]) -> list[dict[str, Any]]:
        query = {"labelSelector": ",".join(f"{k}={v}" for k, v in selector.items())}
        out = self._request("GET", path(api, plural, namespace), query=query) or {}
        # Filter again: not every server (or mock) honours label selectors.
        return [i for i in out.get("items", [])
                if matches((i.get("metadata") or {}).get("labels"), selector)]


API_OF_KIND = {"Deployment": ("apps/v1", "deployments"),
               "PodDisruptionBudget": ("policy/v1", "poddisruptionbudgets"),
               "ServiceAccount": ("v1", "serviceaccounts"),
               "ConfigMap": ("v1", "configmaps")}


def apply(kube: Kube, obj: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Create, or merge-patch when the desired hash (or the Deployment's replicas) changed.

    Returns (what happened: created | updated | scaled | unchanged, the live object).
    """
    api, plural = API_OF_KIND[str(obj["kind"])]
    meta = obj["metadata"]
    live = kube.get(api, plural, meta["namespace"], meta["name"])
    if live is None:
        try:
            return "created", kube.create(api, plural, meta["namespace"], obj)
        except KubeError as exc:
            if exc.status != 409:
                raise
            live = kube.get(api, plural, meta["namespace"], meta["name"])
            if live is None:
                raise
    if desired_hash(live) != desired_hash(obj):
        body = update_patch(live, obj)
        return "updated", kube.patch(api, plural, meta["namespace"], meta["name"], body)
    want = (obj.get("spec") or {}).get("replicas")
    if want is not None and (live.get("spec") or {}).get("replicas") != want:
        return "scaled", kube.patch(api, plural, meta["namespace"], meta["name"],
                                    {"spec": {"replicas": want}})
    return "unchanged", live


def merge_diff(live: Any, want: Any) -> Any:
    """RFC 7386 merge patch turning `live` into `want` (None removes what we no longer want)."""
    if not isinstance(live, Mapping) or not isinstance(want, Mapping):
        return want
    out: dict[str, Any] = {}
    for key, value in want.items():
        if key not in live:
            out[key] = value
        elif live[key] != value:
            out[key] = merge_diff(live[key], value)
    for key in live:
        if key not in want:
            out[key] = None
    return out


def merge_patched(target: Any, patch: Any) -> Any:
    """RFC 7386: `target` with the merge patch `patch` applied (what the API server makes of it)."""
    if not isinstance(patch, Mapping):
        return patch
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patched(out.get(key), value)
    return out


def update_patch(live: Mapping[str, Any], want: Mapping[str, Any]) -> dict[str, Any]:
    """Our fields only: the whole body below metadata, and our own labels/annotations/owners.

    Metadata keys set by others (annotations of controllers, kubectl) are left alone.
    """
    body: dict[str, Any] = {}
    for key, value in want.items():
        if key in ("apiVersion", "kind", "metadata"):
            continue
        diff = merge_diff(live.get(key), value)
        if diff != {} or key not in live:
            body[key] = diff
    meta = want.get("metadata") or {}
    body["metadata"] = {k: meta[k] for k in ("labels", "annotations", "ownerReferences")
                        if k in meta}
    return body


def secret_data(kube: Kube, namespace: str, name: str) -> dict[str, str]:
    """Every text key of a Secret, decoded.

    Keys whose value is not UTF-8 (a keystore such as Strimzi's `user.p12`) are left out: no
    setting the operator reads can be one, and they must not fail the crawl's pass.
    """
    secret = kube.get("v1", "secrets", namespace, name)
    if secret is None:
        raise KubeError(404, f"secret {namespace}/{name} not found")
    decoded = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            decoded[key] = base64.b64decode(value).decode()
        except (ValueError, UnicodeDecodeError):
            continue
    return {**decoded, **{k: str(v) for k, v in (secret.get("stringData") or {}).items()}}


def secret_value(kube: Kube, namespace: str, name: str, key: str) -> str:
    secret = kube.get("v1", "secrets", namespace, name)
    if secret is None:
        raise KubeError(404, f"secret {namespace}/{name} not found")
    data = secret.get("data") or {}
    if key in data:
        try:
            return base64.b64decode(data[key]).decode()
        except (ValueError, UnicodeDecodeError) as exc:
            raise KubeError(422, f"secret {namespace}/{name} key {key!r} is not UTF-8 text") from exc
    if key in (secret.get("stringData") or {}):
        return str(secret["stringData"][key])
    raise KubeError(404, f"secret {namespace}/{name} has no key {key!r}")
