"""kopf running in-process against the kmock realism shim, with a toy Deployment controller."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import kmock
import kopf
from opsupport_crd import apply_defaults, openapi, validator
from opsupport_fakes import FakeBackend
from opsupport_kmock import RealisticKube, make
from whoiscrawl.operator import control, handlers
from whoiscrawl.operator.crd import build_crd
from whoiscrawl.operator.kube import KubeClient

assert handlers.MODULES
NS = "crawls"
TOY_OWNER = "toy.test/deployment"  # the toy controller's pod -> Deployment link
CAPACITY = "whoiscrawl.io/capacity"  # the pod template annotation naming its capacity
CRAWLS = "/apis/whoiscrawl.io/v1alpha1/namespaces/crawls/whoiscrawls"
# The fewest fields a crawl needs (the backend is a fake: the addresses are never dialled).
MINIMAL_SPEC: dict[str, Any] = {"ranges": ["41.0.0.0/8"], "kafka": {"bootstrapServers": "127.0.0.1:9092"},
                                "redis": {"url": "redis://127.0.0.1:6379/0"}}


def crawls_path(ns: str = NS) -> str:
    return f"/apis/whoiscrawl.io/v1alpha1/namespaces/{ns}/whoiscrawls"


def _validate(obj: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in validator().iter_errors(obj)]


def _default(obj: dict[str, Any]) -> dict[str, Any]:
    if isinstance(obj.get("spec"), dict):
        apply_defaults(openapi()["properties"]["spec"], obj["spec"])
    return obj


@dataclass
class Cluster:
    kube: RealisticKube
    url: str
    backend: Any  # a FakeBackend, or whoiscrawl.operator.backend.LiveBackend (end-to-end)
    pending_pods: bool = False  # no spot capacity: the toy controller leaves spot pods Unschedulable
    ready: bool = True  # the toy controller marks pods Ready
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def request(self, method: str, path: str, body: Any = None,
                      content_type: str = "application/merge-patch+json") -> tuple[int, Any]:
        async with self.kube.request(method, path, json=body,
                                     headers={"Content-Type": content_type}) as resp:
            return resp.status, await resp.json()

    async def create(self, name: str, spec: dict[str, Any], ns: str = NS) -> tuple[int, Any]:
        body = {"apiVersion": "whoiscrawl.io/v1alpha1", "kind": "WhoisCrawl",
                "metadata": {"name": name, "namespace": ns}, "spec": spec}
        return await self.request("POST", crawls_path(ns), body, "application/json")

    async def patch_spec(self, name: str, spec: dict[str, Any], ns: str = NS) -> tuple[int, Any]:
        return await self.request("PATCH", f"{crawls_path(ns)}/{name}", {"spec": spec})

    async def delete(self, name: str, ns: str = NS) -> int:
        code, _ = await self.request("DELETE", f"{crawls_path(ns)}/{name}")
        return code

    def get(self, api: str, plural: str, name: str, ns: str = NS) -> dict[str, Any] | None:
        key = (f"{api}/{plural}", ns, name)
        try:
            obj = self.kube.objects[key]
        except KeyError:
            return None
        return None if obj.deleted else dict(obj.raw)

    def crawl(self, name: str, ns: str = NS) -> dict[str, Any]:
        obj = self.get("whoiscrawl.io/v1alpha1", "whoiscrawls", name, ns)
        assert obj is not None, f"{name} is gone"
        return obj

    def condition(self, name: str, ctype: str, ns: str = NS) -> tuple[str, str] | None:
        for c in (self.crawl(name, ns).get("status") or {}).get("conditions") or []:
            if c["type"] == ctype:
                return c["status"], c["reason"]
        return None

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        out = []
        for (res, _ns, _name), obj in self.kube.objects.items():
            if res.plural == "events" and res.group == "" and not obj.deleted:
                raw = dict(obj.raw)
                if reason is None or raw.get("reason") == reason:
                    out.append(raw)
        return out

    def replicas(self, name: str, ns: str = NS) -> int | None:
        dep = self.get("apps/v1", "deployments", f"{name}-worker", ns)
        return None if dep is None else int(dep["spec"].get("replicas", 0))

    async def until(self, what: Callable[[], Any], timeout: float = 8.0, label: str = "") -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = what()
            except (AssertionError, KeyError, TypeError):
                last = None
            if last:
                return last
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {label or what}: last={last!r}")

    async def controller(self) -> None:
        """A toy Deployment controller: pods and status follow spec.replicas."""
        while True:
            await asyncio.sleep(0.1)
            for (res, ns, name), obj in list(self.kube.objects.items()):
                if res.plural != "deployments" or obj.deleted:
                    continue
                dep = dict(obj.raw)
                want = int(dep["spec"].get("replicas") or 0)
                stuck = await self._pods(ns, name, dep, want)
                ready = 0 if (stuck or not self.ready) else want
                status = {"replicas": want, "readyReplicas": ready}
                if (dep.get("status") or {}) != status:
                    await self.request("PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/"
                                       f"{name}/status", {"status": status})

    async def _pods(self, ns: str, name: str, dep: dict[str, Any], want: int) -> bool:
        """Pods follow `want`; spot pods stay Unschedulable while `pending_pods`. True: stuck."""
        template = dep["spec"]["template"]["metadata"]
        stuck = self.pending_pods and (template.get("annotations") or {}).get(CAPACITY) == "spot"
        labels = {**template["labels"], TOY_OWNER: name}
        mine = [(key, o) for key, o in self.kube.objects.items()
                if key[0].plural == "pods" and not o.deleted and key[1] == ns
                and (o.raw.get("metadata") or {}).get("labels", {}).get(TOY_OWNER) == name]
        for idx in range(len(mine), want):
            pod = {"metadata": {"name": f"{name}-{idx}", "namespace": ns, "labels": labels},
                   "spec": {} if stuck else {"nodeName": f"node-{idx}"}}
            await self.request("POST", f"/api/v1/namespaces/{ns}/pods", pod, "application/json")
            await self.request("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}-{idx}/status",
                               {"status": _pod_status(stuck)})
        for (_r, _n, pod_name), _o in mine[want:]:
            await self.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{pod_name}")
        return stuck

    def pods(self, ns: str = NS) -> list[str]:
        """Names of the live pods in a namespace."""
        return [key[2] for key, obj in list(self.kube.objects.items())
                if key[0].plural == "pods" and key[1] == ns and not obj.deleted]

    def unschedulable_pods(self, ns: str = NS) -> list[str]:
        """Names of the live pods whose status says Unschedulable (the toy controller creates a pod,
        then writes its status: a separate request)."""
        return [key[2] for key, obj in list(self.kube.objects.items())
                if key[0].plural == "pods" and key[1] == ns and not obj.deleted
                and any(c.get("reason") == "Unschedulable"
                        for c in (obj.raw.get("status") or {}).get("conditions") or [])]

    def age_pods(self, seconds: float) -> None:
        """Backdate every pod's creation and condition times (Unschedulable "for a long time")."""
        stamp = (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()
        for key, obj in list(self.kube.objects.items()):
            if key[0].plural == "pods" and not obj.deleted:
                raw = copy.deepcopy(obj.raw)
                raw["metadata"]["creationTimestamp"] = stamp
                for cond in (raw.get("status") or {}).get("conditions") or []:
                    cond["lastTransitionTime"] = stamp
                obj["metadata"] = raw["metadata"]
                if "status" in raw:
                    obj["status"] = raw["status"]


def _pod_status(stuck: bool) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    if stuck:
        return {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "lastTransitionTime": now, "message": "0/3 nodes are available: no spot capacity"}]}
    return {"phase": "Running", "conditions": [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        {"type": "Ready", "status": "True", "lastTransitionTime": now}]}


@contextlib.asynccontextmanager
async def running_cluster(backend: Any = None, toy_controller: bool = True,
                          now: Callable[[], datetime] | None = None) -> AsyncIterator[Cluster]:
    """kmock serves on the test's loop; kopf runs on its own loop in a thread, like in a pod.

    `backend` replaces the FakeBackend; without `toy_controller` nothing acts on Deployments
    (the end-to-end test brings its own process runner); `now` is the operator's clock (a
    schedule's slots come when the test says).
    """
    kube = make(build_crd(), _validate, _default)
    async with kube, kmock.Server(kube) as server:
        url = str(server.url).rstrip("/")
        cluster = Cluster(kube, url, FakeBackend() if backend is None else backend)
        deps = control.Deps(kube=KubeClient(url), backend=cluster.backend)
        if now is not None:
            deps.now = now
        memo = kopf.Memo(deps=deps, kube_server=url)
        stop, ready = threading.Event(), threading.Event()

        def run() -> None:
            asyncio.run(kopf.operator(clusterwide=True, memo=memo, stop_flag=stop,
                                      ready_flag=ready, standalone=True))

        thread = threading.Thread(target=run, name="kopf", daemon=True)
        toy = asyncio.create_task(cluster.controller() if toy_controller else asyncio.sleep(0))
        thread.start()
        try:
            assert await asyncio.to_thread(ready.wait, 10), "kopf did not start"
            yield cluster
        finally:
            toy.cancel()
            stop.set()
            await asyncio.to_thread(thread.join, 10)
            with contextlib.suppress(asyncio.CancelledError):
                await toy
