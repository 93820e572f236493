"""A kubelet for KWOK nodes: each Running whoiscrawl pod on the real API server becomes a local process.

KWOK makes pods Running but runs no code. This runner, like a kubelet, starts the pod's container
command with the environment the pod declares and the pod's service-account token (a TokenRequest
bound to the pod, in a kubeconfig), restarts it when it dies, and on deletion sends SIGTERM,
SIGKILLs after the grace period, and removes the pod only once the process has exited. Each node
is one egress address (127.0.20.N), as a node's public address would be.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from opsupport_api import Api, ApiError
from opsupport_podenv import container_env, decoded

RUNNER_LABEL = "whoiscrawl-runner"  # KWOK leaves the deletion of pods carrying it to this runner
# Many pods share this host: no fixed metrics port (nothing probes it; a live process is Ready).
LOCAL_ENV = {"WHOISCRAWL_METRICS_PORT": "0"}


@dataclass
class Process:
    """The one container of a pod, as a process."""

    namespace: str
    pod: str
    uid: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    kill_at: float | None = None  # once SIGTERMed: when the grace period runs out
    restarts: int = 0


@dataclass
class Kubelet:
    """Runs the pods that match `selector` in every namespace, until stopped."""

    api: Api
    logdir: Path
    namespaces: frozenset[str]  # the namespaces it is the kubelet of
    selector: str = "app.kubernetes.io/part-of=whoiscrawl"
    processes: dict[str, Process] = field(default_factory=dict)  # by pod uid
    nodes: dict[str, str] = field(default_factory=dict)  # node name -> egress address
    exits: list[tuple[str, int]] = field(default_factory=list)  # (pod, exit code)
    started: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception as exc:  # keep going (the API server may be slow); report at the end
                self.errors.append(repr(exc))
            self._stop.wait(0.25)

    def sync(self) -> None:
        pods = {p["metadata"]["uid"]: p for p in self.api.list("v1", "pods", None, self.selector)
                if p["metadata"]["namespace"] in self.namespaces}
        for uid, pod in pods.items():
            running = self.processes.get(uid)
            if pod["metadata"].get("deletionTimestamp"):
                self._deleting(pod, running)
            elif running is None and self._ready_to_run(pod):
                self._start(pod)
            elif running is not None and running.proc.poll() is not None:
                self._restart(pod, running)
        for uid in [u for u in self.processes if u not in pods]:
            self._gone(self.processes[uid])

    @staticmethod
    def _ready_to_run(pod: dict[str, Any]) -> bool:
        return bool(pod["spec"].get("nodeName")) and (pod.get("status") or {}).get("phase") == "Running"

    def address(self, node: str) -> str:
        if node not in self.nodes:
            self.nodes[node] = f"127.0.20.{len(self.nodes) + 1}"
        return self.nodes[node]

    def _data(self, namespace: str) -> Any:
        def data(plural: str, name: str) -> dict[str, str]:
            obj = self.api.get("v1", plural, namespace, name)
            if obj is None:  # a kubelet would report CreateContainerConfigError
                raise LookupError(f"the pod refers to {plural}/{name}, which does not exist")
            return decoded(plural, obj)
        return data

    def _kubeconfig(self, pod: dict[str, Any]) -> Path:
        meta = pod["metadata"]
        token = self.api.token_for(meta["namespace"], pod["spec"].get("serviceAccountName", "default"),
                                   pod)
        path = self.logdir / f"{meta['namespace']}.{meta['name']}.kubeconfig"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "pod",
            "clusters": [{"name": "c", "cluster": {"server": self.api.server,
                                                   "certificate-authority": str(self.api.ca)}}],
            "users": [{"name": "sa", "user": {"token": token}}],
            "contexts": [{"name": "pod", "context": {"cluster": "c", "user": "sa",
                                                     "namespace": meta["namespace"]}}]}))
        return path

    def _spawn(self, pod: dict[str, Any]) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
        meta, container = pod["metadata"], pod["spec"]["containers"][0]
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("WHOISCRAWL_", "KUBERNETES_")) and k != "KUBECONFIG"}
        env.update(container_env(container, pod, self._data(meta["namespace"])))
        env.update(LOCAL_ENV)
        env.update({"HOSTNAME": meta["name"], "KUBECONFIG": str(self._kubeconfig(pod)),
                    "WHOISCRAWL_BIND_ADDRESS": self.address(pod["spec"]["nodeName"])})
        command = list(container.get("command") or []) + list(container.get("args") or [])
        if command[0] == "whoiscrawl":  # the image's entry point is this checkout's module
            command[:1] = [sys.executable, "-m", "whoiscrawl"]
        log = (self.logdir / f"{meta['namespace']}.{meta['name']}.log").open("ab")
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        return proc, log

    def _start(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        try:
            self.api.patch("v1", "pods", meta["namespace"], meta["name"],
                           {"metadata": {"labels": {RUNNER_LABEL: "process"}}})
        except ApiError as exc:
            if exc.status == 404:
                return  # deleted meanwhile
            raise
        proc, log = self._spawn(pod)
        self.processes[meta["uid"]] = Process(meta["namespace"], meta["name"], meta["uid"], proc, log)
        self.started += 1

    def _restart(self, pod: dict[str, Any], running: Process) -> None:
        """A container that died is started again in the same pod (restartPolicy: Always)."""
        self.exits.append((running.pod, int(running.proc.returncode)))
        running.log.close()
        running.proc, running.log = self._spawn(pod)
        running.restarts += 1
        self.started += 1

    def _deleting(self, pod: dict[str, Any], running: Process | None) -> None:
        meta = pod["metadata"]
        if running is not None and running.proc.poll() is None:
            if running.kill_at is None:
                with contextlib.suppress(ProcessLookupError):
                    running.proc.send_signal(signal.SIGTERM)
                grace = meta.get("deletionGracePeriodSeconds")
                running.kill_at = time.monotonic() + (30 if grace is None else grace)
            elif time.monotonic() > running.kill_at:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(running.proc.pid, signal.SIGKILL)
            return
        if running is not None:
            self._reap(running)
        self.api.delete("v1", "pods", meta["namespace"], meta["name"], grace=0)

    def _gone(self, running: Process) -> None:
        """The pod vanished (force-deleted, or its node removed): its process goes too."""
        if running.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(running.proc.pid, signal.SIGKILL)
        self._reap(running)

    def _reap(self, running: Process) -> None:
        self.exits.append((running.pod, int(running.proc.wait())))
        running.log.close()
        self.processes.pop(running.uid, None)

    def kill(self, match: str) -> str:
        """SIGKILL the first process whose pod name contains `match`; returns the pod's name."""
        running = next(p for p in list(self.processes.values())
                       if match in p.pod and p.proc.poll() is None)
        os.killpg(running.proc.pid, signal.SIGKILL)
        return running.pod

    def running(self, match: str = "", namespace: str | None = None) -> list[str]:
        """Pods (of a namespace) whose process runs; `alive` counts the draining ones too."""
        return [p.pod for p in list(self.processes.values())
                if match in p.pod and p.proc.poll() is None and p.kill_at is None
                and namespace in (None, p.namespace)]

    def alive(self, match: str = "", namespace: str | None = None) -> list[str]:
        return [p.pod for p in list(self.processes.values())
                if match in p.pod and p.proc.poll() is None and namespace in (None, p.namespace)]

    def stop(self) -> None:
        """SIGTERM every process, wait, SIGKILL what is left (after the sync thread has ended)."""
        for running in list(self.processes.values()):
            with contextlib.suppress(ProcessLookupError):
                running.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for running in list(self.processes.values()):
            try:
                running.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(running.proc.pid, signal.SIGKILL)
            self._reap(running)

    def tail(self, lines: int = 20) -> str:
        out = []
        for path in sorted(self.logdir.glob("*.log")):
            out.append(f"--- {path.name}")
            out += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out)


@contextlib.contextmanager
def kubelet(api: Api, logdir: Path, namespaces: set[str]) -> Iterator[Kubelet]:
    """A Kubelet for these namespaces, on a thread; on exit no process of it is left."""
    logdir.mkdir(parents=True, exist_ok=True)
    runner = Kubelet(api, logdir, frozenset(namespaces))
    thread = threading.Thread(target=runner.run, name="kubelet", daemon=True)
    thread.start()
    try:
        yield runner
    finally:
        runner._stop.set()
        thread.join(30)
        runner.stop()
