"""A plain JSON client for the test cluster's API server (the tests' own, apart from the code under test)."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode


class ApiError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")


def resource_path(api: str, plural: str, namespace: str | None = None, name: str | None = None,
                  sub: str | None = None) -> str:
    base = "/api/v1" if api == "v1" else f"/apis/{api}"
    out = f"{base}/namespaces/{quote(namespace)}/{plural}" if namespace else f"{base}/{plural}"
    if name:
        out += f"/{quote(name)}"
    return f"{out}/{sub}" if sub else out


@dataclass(frozen=True)
class Api:
    """Who talks (a bearer token) to which server, trusting the cluster's CA."""

    server: str
    token: str
    ca: Path

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json", query: dict[str, str] | None = None) -> Any:
        url = self.server + path + (f"?{urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Accept": "application/json",
            "Content-Type": content_type})
        ctx = ssl.create_default_context(cafile=str(self.ca))
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                parsed: Any = json.loads(raw)
            except ValueError:
                parsed = raw.decode(errors="replace")
            raise ApiError(exc.code, parsed) from None
        return json.loads(raw) if raw else None

    def get(self, api: str, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", resource_path(api, plural, namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, api: str, plural: str, namespace: str | None = None,
             selector: str = "") -> list[dict[str, Any]]:
        query = {"labelSelector": selector} if selector else None
        return list(self.request("GET", resource_path(api, plural, namespace), query=query)["items"])

    def create(self, api: str, plural: str, namespace: str | None, body: dict[str, Any]) -> Any:
        return self.request("POST", resource_path(api, plural, namespace), body)

    def patch(self, api: str, plural: str, namespace: str | None, name: str, body: dict[str, Any],
              sub: str | None = None) -> Any:
        return self.request("PATCH", resource_path(api, plural, namespace, name, sub), body,
                            "application/merge-patch+json")

    def delete(self, api: str, plural: str, namespace: str | None, name: str,
               grace: int | None = None) -> Any:
        body = {"gracePeriodSeconds": grace} if grace is not None else None
        try:
            return self.request("DELETE", resource_path(api, plural, namespace, name), body)
        except ApiError as exc:
            if exc.status != 404:
                raise
            return None

    def token_for(self, namespace: str, service_account: str, pod: dict[str, Any] | None = None,
                  seconds: int = 3600) -> str:
        """A TokenRequest for a service account (bound to a pod, as a kubelet asks for one)."""
        spec: dict[str, Any] = {"expirationSeconds": seconds}
        if pod is not None:
            meta = pod["metadata"]
            spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": meta["name"],
                                      "uid": meta["uid"]}
        out = self.create("v1", f"serviceaccounts/{service_account}/token", namespace,
                          {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                           "spec": spec})
        return str(out["status"]["token"])

    def as_token(self, token: str) -> Api:
        return Api(self.server, token, self.ca)


def until(check: Callable[[], Any], timeout: float, label: str, every: float = 0.25) -> Any:
    """Poll until check() is truthy; the last value is in the error when it never is."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {label}: last={last!r}")
