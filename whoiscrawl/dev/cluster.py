"""A real Kubernetes control plane on 127.0.0.1 (etcd, kube-apiserver, controller-manager, scheduler, KWOK).

The binaries are built once from the Go module proxy into a cache outside the repo (`ensure_binaries`);
`start` runs them on free loopback ports with generated certificates, a static admin token and a
kubeconfig, and records their PIDs like the other development services, so a killed run is reaped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from whoiscrawl.dev.services import (
    CACHE_DIR,
    Service,
    ServiceError,
    Services,
    alive,
    free_port,
    reap_stale,
    spawn,
    stop,
    wait_for_port,
)


def _harness() -> Path:
    """The Go modules that name the components to build (shipped as package data)."""
    return Path(str(resources.files("whoiscrawl.dev").joinpath("controlplane")))


def _required(gomod: Path, module: str) -> str:
    """The version a go.mod requires of a module: the go.mod files are where versions are pinned."""
    for line in gomod.read_text().splitlines():
        words = line.replace("require", "").split()
        if len(words) == 2 and words[0] == module:
            return words[1]
    raise ServiceError(f"{gomod} requires no {module}")


K8S_VERSION = _required(_harness() / "go.mod", "k8s.io/kubernetes")
ETCD_VERSION = _required(_harness() / "etcd" / "go.mod", "go.etcd.io/etcd/server/v3")
KWOK_VERSION = "v0.8.0"
BIN_DIR = CACHE_DIR / "controlplane" / f"k8s-{K8S_VERSION}-kwok-{KWOK_VERSION}-etcd-{ETCD_VERSION}"
K8S_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
SERVICE_CIDR = "10.96.0.0/16"
Say = Callable[[str], None]


def _stderr(message: str) -> None:
    print(f"cluster: {message}", file=sys.stderr, flush=True)


# --- binaries --------------------------------------------------------------------------------


def _version_ldflags() -> str:
    minor = K8S_VERSION.split(".")[1]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.gitVersion={K8S_VERSION}", f"-X {pkg}.gitMajor=1",
                  f"-X {pkg}.gitMinor={minor}", f"-X {pkg}.gitTreeState=clean",
                  f"-X {pkg}.buildDate=1970-01-01T00:00:00Z"]
    return " ".join(["-s", "-w", *flags])


def go_binary() -> str | None:
    """The Go toolchain: on PATH, or where the official tarball installs it."""
    return shutil.which("go") or next(
        (str(p) for p in (Path("/usr/local/go/bin/go"), Path.home() / "go" / "bin" / "go") if p.exists()),
        None)


def _go(args: list[str], cwd: Path | None, env: dict[str, str], what: str) -> None:
    go = go_binary()
    assert go is not None
    done = subprocess.run([go, *args], cwd=cwd, env={**os.environ, "CGO_ENABLED": "0", **env},
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise ServiceError(f"building {what} failed:\n{(done.stdout + done.stderr)[-3000:]}")


def _build_one(name: str, target: Path, say: Say) -> None:
    started = time.monotonic()
    say(f"building {name} (a cold build takes minutes; cached after)")
    tmp = target.with_suffix(".tmp")
    if name == "kwok":
        gobin = target.parent / ".gobin-kwok"
        shutil.rmtree(gobin, ignore_errors=True)
        _go(["install", "-trimpath", "-ldflags", "-s -w", f"sigs.k8s.io/kwok/cmd/kwok@{KWOK_VERSION}"],
            None, {"GOBIN": str(gobin)}, name)
        (gobin / "kwok").rename(tmp)
        gobin.rmdir()
    else:
        # The Kubernetes components share one harness module; etcd has one of its own.
        cwd, package = (_harness() / "etcd", ".") if name == "etcd" else (_harness(), f"./cmd/{name}")
        flags = _version_ldflags() if name in K8S_COMPONENTS else "-s -w"
        _go(["build", "-trimpath", "-ldflags", flags, "-o", str(tmp), package], cwd, {}, name)
    tmp.rename(target)
    say(f"built {name} in {time.monotonic() - started:.0f} s")


def ensure_binaries(say: Say = _stderr) -> Path:
    """Build whatever is missing (idempotent) and return the folder holding all five binaries."""
    if missing_binaries() and go_binary() is None:
        raise ServiceError("the test control plane is built from the Go module proxy with Go >= 1.26: "
                           "install it from go.dev/dl (Debian's golang-go is too old), or put `go` on PATH")
    BIN_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("etcd", *K8S_COMPONENTS, "kwok"):
        target = BIN_DIR / name
        if not target.exists():
            _build_one(name, target, say)
    return BIN_DIR


def missing_binaries() -> list[str]:
    return [n for n in ORDER if not (BIN_DIR / n).exists()]


# --- certificates and credentials ---------------------------------------------------------------


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise ServiceError(f"openssl {args[0]} failed: {done.stderr[-1000:]}")


def make_credentials(pki: Path) -> str:
    """A CA, the API server's serving certificate, the service-account key pair, and an admin token."""
    if shutil.which("openssl") is None:
        raise ServiceError("openssl not found: apt-get install openssl")
    pki.mkdir(parents=True, exist_ok=True)
    ca, key = str(pki / "ca.crt"), str(pki / "ca.key")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", ca,
             "-days", "30", "-subj", "/CN=whoiscrawl-test-ca")
    (pki / "san.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(pki / "apiserver.key"),
             "-out", str(pki / "apiserver.csr"), "-subj", "/CN=kube-apiserver")
    _openssl("x509", "-req", "-in", str(pki / "apiserver.csr"), "-CA", ca, "-CAkey", key,
             "-CAcreateserial", "-out", str(pki / "apiserver.crt"), "-days", "30",
             "-extfile", str(pki / "san.cnf"))
    _openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
    _openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
    token = uuid.uuid4().hex
    (pki / "tokens.csv").write_text(f'{token},whoiscrawl-admin,whoiscrawl-admin,"system:masters"\n')
    return token


def kubeconfig(server: str, ca: Path, token: str, user: str = "admin") -> str:
    """A kubeconfig (JSON is YAML) for one user and one cluster."""
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "whoiscrawl-test",
        "clusters": [{"name": "whoiscrawl-test",
                      "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "whoiscrawl-test",
                      "context": {"cluster": "whoiscrawl-test", "user": user,
                                  "namespace": "default"}}],
    }, indent=2)


# --- the components ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where one control plane keeps its files."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.log"


# Every request a service account makes (operators, workers), as JSON lines: what tests check RBAC by.
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  userGroups: ["system:serviceaccounts"]
- level: None
"""


def _start_etcd(lay: Layout) -> Service:
    client, peer = free_port(), free_port()
    cmd = [str(BIN_DIR / "etcd"), "--name", "default", "--data-dir", str(lay.root / "etcd"),
           "--listen-client-urls", f"http://127.0.0.1:{client}",
           "--advertise-client-urls", f"http://127.0.0.1:{client}",
           "--listen-peer-urls", f"http://127.0.0.1:{peer}",
           "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
           "--initial-cluster", f"default=http://127.0.0.1:{peer}",
           "--unsafe-no-fsync", "--log-level", "warn"]
    proc = spawn(cmd, lay.log("etcd"))
    wait_for_port("127.0.0.1", client, 30, proc)
    return Service("etcd", proc.pid, f"http://127.0.0.1:{client}", str(lay.root), str(lay.root / "etcd"))


def _start_apiserver(lay: Layout, etcd: str) -> Service:
    port, pki = free_port(), lay.pki
    policy = lay.root / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    cmd = [str(BIN_DIR / "kube-apiserver"), f"--etcd-servers={etcd}",
           "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={port}",
           f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
           f"--client-ca-file={pki / 'ca.crt'}", f"--token-auth-file={pki / 'tokens.csv'}",
           "--authorization-mode=RBAC", "--anonymous-auth=false",
           "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
           f"--service-account-key-file={pki / 'sa.pub'}",
           f"--service-account-signing-key-file={pki / 'sa.key'}",
           f"--service-cluster-ip-range={SERVICE_CIDR}", "--endpoint-reconciler-type=none",
           "--allow-privileged=true",
           # As on EKS/GKE/OpenShift: setting ownerReferences with blockOwnerDeletion needs
           # `update` on the owner's finalizers, so the chart's RBAC is checked for it.
           "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
           f"--audit-policy-file={policy}", f"--audit-log-path={lay.audit_log}",
           "--audit-log-maxsize=500", "--profiling=false", "-v=1"]
    proc = spawn(cmd, lay.log("kube-apiserver"))
    server = f"https://127.0.0.1:{port}"
    return Service("kube-apiserver", proc.pid, server, str(lay.root), f"--secure-port={port}")


def wait_ready(server: str, ca: Path, token: str, timeout: float = 90,
               path: str = "/readyz") -> None:
    """Until the API server answers 200 on /readyz (all its post-start hooks have run)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        req = urllib.request.Request(server + path, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=3) as resp:
                if resp.status == 200:
                    return
        except Exception as exc:  # connection refused while it starts, 500 while hooks run
            last = str(exc)
        time.sleep(0.25)
    raise ServiceError(f"{server}{path} not ready within {timeout:.0f}s ({last})")


def _start_client(lay: Layout, name: str, args: list[str]) -> Service:
    cmd = [str(BIN_DIR / name), f"--kubeconfig={lay.kubeconfig}", *args]
    proc = spawn(cmd, lay.log(name))
    time.sleep(0.2)
    if proc.poll() is not None:
        raise ServiceError(f"{name} exited with {proc.returncode}: {lay.log(name).read_text()[-1500:]}")
    return Service(name, proc.pid, "", str(lay.root), f"--kubeconfig={lay.kubeconfig}")


def _start_controller_manager(lay: Layout) -> Service:
    return _start_client(lay, "kube-controller-manager", [
        "--leader-elect=false", "--secure-port=0", "--use-service-account-credentials=false",
        f"--root-ca-file={lay.pki / 'ca.crt'}",
        f"--service-account-private-key-file={lay.pki / 'sa.key'}",
        # Quick garbage collection and node-lifecycle reactions for tests.
        "--concurrent-gc-syncs=5", "--node-monitor-grace-period=40s", "-v=1"])


def _start_scheduler(lay: Layout) -> Service:
    return _start_client(lay, "kube-scheduler", ["--leader-elect=false", "--secure-port=0", "-v=1"])


def _start_kwok(lay: Layout) -> Service:
    stages = resources.files("whoiscrawl.dev").joinpath("controlplane", "kwok-stages.yaml")
    config = lay.root / "kwok-stages.yaml"
    config.write_text(stages.read_text())
    return _start_client(lay, "kwok", [
        "--manage-all-nodes=true", f"--config={config}", f"--server-address=127.0.0.1:{free_port()}",
        "--cidr=10.244.0.1/16", "--node-ip=10.0.0.1"])


@dataclass(frozen=True)
class Cluster:
    """A running control plane: where it answers and how to reach it as admin."""

    server: str
    kubeconfig: Path
    ca: Path
    token: str
    workdir: Path

    @property
    def audit_log(self) -> Path:
        return Layout(self.workdir).audit_log

    def as_json(self, kubectl: str | None) -> str:
        return json.dumps({"kubeconfig": str(self.kubeconfig), "server": self.server,
                           "kubectl": kubectl})


def _cluster_of(root: Path, running: Services) -> Cluster:
    lay = Layout(root)
    token = (lay.pki / "admin.token").read_text().strip()
    return Cluster(running.services["kube-apiserver"].address, lay.kubeconfig,
                   lay.pki / "ca.crt", token, root)


def start(root: Path, say: Say = _stderr) -> tuple[Services, Cluster]:
    """Start (or find running) the five components under root; ready when this returns."""
    ensure_binaries(say)
    lay = Layout(root)
    root.mkdir(parents=True, exist_ok=True)
    running = Services.load(root)
    if running.services and all(alive(s) for s in running.services.values()):
        return running, _cluster_of(root, running)
    stop(running)
    shutil.rmtree(lay.pki, ignore_errors=True)
    shutil.rmtree(root / "etcd", ignore_errors=True)
    token = make_credentials(lay.pki)
    (lay.pki / "admin.token").write_text(token)
    try:
        running.services["etcd"] = _start_etcd(lay)
        running.save()
        api = _start_apiserver(lay, running.services["etcd"].address)
        running.services["kube-apiserver"] = api
        running.save()
        lay.kubeconfig.write_text(kubeconfig(api.address, lay.pki / "ca.crt", token))
        wait_ready(api.address, lay.pki / "ca.crt", token)
        for name, starter in (("kube-controller-manager", _start_controller_manager),
                              ("kube-scheduler", _start_scheduler), ("kwok", _start_kwok)):
            running.services[name] = starter(lay)
            running.save()
    except BaseException as exc:
        stop(running)
        if isinstance(exc, ServiceError):
            tail = lay.log("kube-apiserver")
            detail = tail.read_text(errors="replace")[-1500:] if tail.exists() else ""
            raise ServiceError(f"{exc}\n{detail}") from exc
        raise
    return running, _cluster_of(root, running)


@contextlib.contextmanager
def session(root: Path, say: Say = _stderr) -> Iterator[Cluster]:
    """A control plane in a fresh folder under root, owned by this process; stopped after."""
    root.mkdir(parents=True, exist_ok=True)
    reap_stale(root)
    workdir = root / f"run-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    workdir.mkdir()
    (workdir / "owner.pid").write_text(str(os.getpid()))
    running, cluster = start(workdir, say)
    try:
        yield cluster
    finally:
        stop(running)
        shutil.rmtree(workdir, ignore_errors=True)
