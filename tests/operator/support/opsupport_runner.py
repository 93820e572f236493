"""A process runner: a worker Deployment in kmock becomes real `whoiscrawl worker` processes here."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from opsupport_cluster import NS, Cluster
from opsupport_podenv import container_env, decoded

# Many "pods" share this host: no fixed metrics port (nothing probes it; a live process is Ready).
LOCAL_ENV = {"WHOISCRAWL_METRICS_PORT": "0"}


@dataclass
class Pod:
    """One worker process standing in for a pod; its slot is its node and its source address."""

    name: str
    slot: int
    template: str  # the pod template it started from: a changed template rolls it
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    kill_at: float | None = None  # once SIGTERMed: when terminationGracePeriodSeconds runs out


def address(slot: int) -> str:
    """Slot i sends from 127.0.10.(i+1): its own egress address, like a node's public one."""
    return f"127.0.10.{slot + 1}"


@dataclass
class ProcessRunner:
    """ReplicaSet and kubelet in one: keeps `spec.replicas` processes alive and reports status.

    Starts a process per missing replica with the environment the pod template declares
    (envFrom ConfigMaps/Secrets, literal values, ConfigMap/Secret keys, downward-API fields),
    overriding only what must be local: metrics port 0 and a `--bind-address` per process.
    Surplus (or outdated) processes get SIGTERM, and SIGKILL after the pod's grace period; a
    process that dies is replaced. Pod objects are created in kmock so the operator sees nodes.
    """

    cluster: Cluster
    deployment: str
    logdir: Path
    namespace: str = NS
    slot_base: int = 0  # slots (nodes, source addresses) start here: runners side by side share none
    pods: list[Pod] = field(default_factory=list)  # running, not terminating
    terminating: list[Pod] = field(default_factory=list)
    replicas_seen: list[tuple[float, int]] = field(default_factory=list)  # (s, spec.replicas)
    born: float = field(default_factory=time.monotonic)
    started: int = 0
    backoff_until: float = 0.0  # after a process died on its own: no crash loop at full speed
    exits: list[tuple[str, int]] = field(default_factory=list)  # (pod, exit code), in order

    async def run(self) -> None:
        while True:
            await self.sync()
            await asyncio.sleep(0.2)

    async def sync(self) -> None:
        dep = self.cluster.get("apps/v1", "deployments", self.deployment, self.namespace)
        want = int(dep["spec"].get("replicas") or 0) if dep else 0
        if dep and (not self.replicas_seen or self.replicas_seen[-1][1] != want):
            self.replicas_seen.append((round(time.monotonic() - self.born, 1), want))
        for pod in self.pods + self.terminating:
            if pod.proc.poll() is not None:
                await self._reap(pod)
            elif pod.kill_at is not None and time.monotonic() > pod.kill_at:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pod.proc.pid, signal.SIGKILL)
        template = json.dumps(dep["spec"]["template"], sort_keys=True) if dep else ""
        grace = dep["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30) if dep else 30
        for pod in [p for p in self.pods if p.template != template]:
            self._terminate(pod, grace)  # the template changed: roll (all at once, like Recreate)
        while len(self.pods) > want:
            self._terminate(self.pods[-1], grace)  # the newest goes first, as a ReplicaSet does
        while dep and len(self.pods) < want and time.monotonic() >= self.backoff_until:
            await self._start(dep, template)
        if dep:
            await self._report(dep)

    def kill(self) -> str:
        """SIGKILL the oldest running process, like a spot node vanishing; returns its pod name."""
        pod = self.pods[0]
        os.killpg(pod.proc.pid, signal.SIGKILL)
        return pod.name

    async def _start(self, dep: dict[str, Any], template: str) -> None:
        spec = dep["spec"]["template"]["spec"]
        container = spec["containers"][0]
        used = {p.slot for p in self.pods + self.terminating}
        slot = min(set(range(self.slot_base, self.slot_base + len(used) + 1)) - used)
        name = f"{self.deployment}-{uuid.uuid4().hex[:5]}"
        labels = dep["spec"]["template"]["metadata"]["labels"]
        obj = {
            "metadata": {"name": name, "namespace": self.namespace, "labels": labels},
            "spec": {"nodeName": f"node-{slot}", "containers": [container]},
        }
        pods = f"/api/v1/namespaces/{self.namespace}/pods"
        await self.cluster.request("POST", pods, obj, "application/json")
        running = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        await self.cluster.request(
            "PATCH", f"/api/v1/namespaces/{self.namespace}/pods/{name}/status", {"status": running}
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("WHOISCRAWL_")}
        env.update(container_env(container, obj, self._data))
        env.update(LOCAL_ENV)
        command = list(container["command"]) + list(container.get("args") or [])
        if command[0] == "whoiscrawl":  # the image's entry point is this checkout's module
            command[:1] = [sys.executable, "-m", "whoiscrawl"]
        log = (self.logdir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [*command, "--bind-address", address(slot)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pods.append(Pod(name, slot, template, proc, log))
        self.started += 1

    def _data(self, plural: str, name: str) -> dict[str, str]:
        obj = self.cluster.get("v1", plural, name, self.namespace)
        if obj is None:  # a kubelet would report CreateContainerConfigError
            raise LookupError(f"the pod template refers to {plural}/{name}, which does not exist")
        return decoded(plural, obj)

    def _terminate(self, pod: Pod, grace: float) -> None:
        with contextlib.suppress(ProcessLookupError):
            pod.proc.send_signal(signal.SIGTERM)
        pod.kill_at = time.monotonic() + grace
        self.pods.remove(pod)
        self.terminating.append(pod)

    async def _reap(self, pod: Pod) -> None:
        code = int(pod.proc.wait())
        self.exits.append((pod.name, code))
        if pod in self.pods:  # it was not asked to stop: its replacement waits a moment
            self.backoff_until = time.monotonic() + 1.0
        pod.log.close()
        for group in (self.pods, self.terminating):
            if pod in group:
                group.remove(pod)
        await self.cluster.request("DELETE", f"/api/v1/namespaces/{self.namespace}/pods/{pod.name}")

    async def _report(self, dep: dict[str, Any]) -> None:
        n = len(self.pods)
        status = {
            "observedGeneration": dep["metadata"].get("generation"),
            "replicas": n,
            "updatedReplicas": n,
            "readyReplicas": n,
            "availableReplicas": n,
        }
        if dep.get("status") != status:
            await self.cluster.request(
                "PATCH",
                f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{self.deployment}/status",
                {"status": status},
            )

    def stop_all(self, timeout: float = 30) -> None:
        """SIGTERM every process, wait, SIGKILL what is left (teardown; blocking)."""
        everyone = self.pods + self.terminating
        for pod in everyone:
            with contextlib.suppress(ProcessLookupError):
                pod.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for pod in everyone:
            try:
                pod.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pod.proc.pid, signal.SIGKILL)
                pod.proc.wait()
            self.exits.append((pod.name, int(pod.proc.returncode)))
            pod.log.close()
        self.pods.clear()
        self.terminating.clear()

    def tail(self, lines: int = 15) -> str:
        """The last lines of every process log (for assertion messages)."""
        out = []
        for path in sorted(self.logdir.glob(f"{self.deployment}-*.log")):
            out.append(f"--- {path.name}")
            out += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out)


@contextlib.asynccontextmanager
async def process_runner(
    cluster: Cluster, deployment: str, logdir: Path, namespace: str = NS, slot_base: int = 0
) -> AsyncIterator[ProcessRunner]:
    """Run a ProcessRunner on the test's loop; on exit no process of it is left."""
    runner = ProcessRunner(cluster, deployment, logdir, namespace, slot_base)
    task = asyncio.create_task(runner.run())
    try:
        yield runner
        if task.done():
            task.result()  # a runner that crashed fails the test with its own error
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.to_thread(runner.stop_all)
