"""The real-control-plane tier: etcd, kube-apiserver, controller-manager, scheduler and KWOK, per session."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SUPPORT = str(Path(__file__).parents[1] / "operator" / "support")
if SUPPORT not in sys.path:
    sys.path.insert(0, SUPPORT)

from opsupport_api import Api, until  # noqa: E402

from whoiscrawl.bench.common import Simulator, simulator  # noqa: E402
from whoiscrawl.dev import cluster as control_plane  # noqa: E402
from whoiscrawl.dev import tools  # noqa: E402
from whoiscrawl.dev.services import CACHE_DIR  # noqa: E402

ROOT = Path(__file__).parents[2]
CHART = ROOT / "charts" / "whoiscrawl"
CRD_FILE = ROOT / "manifests" / "crds" / "whoiscrawls.whoiscrawl.io.yaml"  # the plain copy
RUN_ROOT = CACHE_DIR / "test-cluster"
WC = ("whoiscrawl.io/v1alpha1", "whoiscrawls")


@dataclass
class K8s:
    """The running control plane, as admin, with kubectl and helm pointed at it."""

    cluster: control_plane.Cluster
    api: Api
    kubectl_bin: str
    helm_bin: str

    def _run(self, cmd: list[str], stdin: str | None, check: bool) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=180)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True,
                kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
        config = kubeconfig or self.cluster.kubeconfig
        return self._run([self.kubectl_bin, f"--kubeconfig={config}", *args], stdin, check)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run([self.helm_bin, f"--kubeconfig={self.cluster.kubeconfig}", *args], None, check)

    def apply(self, docs: list[dict[str, Any]] | dict[str, Any], check: bool = True,
              kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
        items = docs if isinstance(docs, list) else [docs]
        # JSON, not PyYAML: a string such as "8215e42" goes out bare and kubectl (YAML 1.2) reads a float.
        stream = "\n---\n".join(json.dumps(item) for item in items)
        return self.kubectl("apply", "-f", "-", stdin=stream, check=check, kubeconfig=kubeconfig)

    def namespace(self, name: str, labels: dict[str, str] | None = None) -> str:
        self.api.create("v1", "namespaces", None, {"metadata": {"name": name, "labels": labels or {}}})
        # Pods need the namespace's default ServiceAccount, which the controller-manager creates.
        until(lambda: self.api.get("v1", "serviceaccounts", name, "default"), 30, f"{name}/default SA")
        return name

    def kubeconfig_for(self, token: str, path: Path) -> Path:
        path.write_text(control_plane.kubeconfig(self.cluster.server, self.cluster.ca, token, "sa"))
        return path


@pytest.fixture(scope="session")
def k8s() -> Iterator[K8s]:
    """One control plane for the session (the binaries are built by `make test`'s setup)."""
    with control_plane.session(RUN_ROOT) as running:
        api = Api(running.server, running.token, running.ca)
        yield K8s(running, api, str(tools.ensure("kubectl")), str(tools.ensure("helm")))


@pytest.fixture(scope="session")
def crd(k8s: K8s) -> dict[str, Any]:
    """The chart's CRD, installed and established."""
    k8s.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
    # Polled, not `kubectl wait`: that fails at once while the CRD has no status conditions yet.
    until(lambda: any(c["type"] == "Established" and c["status"] == "True" for c in (
        (k8s.api.get("apiextensions.k8s.io/v1", "customresourcedefinitions", None,
                     "whoiscrawls.whoiscrawl.io") or {}).get("status") or {}).get("conditions") or []),
          60, "the CRD Established")
    return json.loads(k8s.kubectl("get", "crd", "whoiscrawls.whoiscrawl.io", "-o", "json").stdout)


@pytest.fixture
def namespace(k8s: K8s) -> Iterator[str]:
    """A fresh namespace per test, deleted after it."""
    name = k8s.namespace(f"t-{uuid.uuid4().hex[:8]}")
    yield name
    k8s.api.delete("v1", "namespaces", None, name)


POOL = "whoiscrawl.test/pool"  # each test's nodes carry its own pool, and its pods select it
ON_DEMAND: dict[str, str] = {"eks.amazonaws.com/capacityType": "ON_DEMAND"}
# Spot nodes as each platform labels (and taints) them.
SPOT_FLAVOURS: dict[str, tuple[dict[str, str], list[dict[str, str]]]] = {
    "eks": ({"eks.amazonaws.com/capacityType": "SPOT"}, []),
    "karpenter": ({"karpenter.sh/capacity-type": "spot"}, []),
    "gke": ({"cloud.google.com/gke-spot": "true"},
            [{"key": "cloud.google.com/gke-spot", "value": "true", "effect": "NoSchedule"}]),
    "aks": ({"kubernetes.azure.com/scalesetpriority": "spot"},
            [{"key": "kubernetes.azure.com/scalesetpriority", "value": "spot", "effect": "NoSchedule"}]),
}


def node(k8s: K8s, name: str, pool: str, zone: str, labels: dict[str, str],
         taints: list[dict[str, str]] | None = None, instance_type: str = "m5.large") -> str:
    """A KWOK node (it becomes Ready within a second): labels as a cloud would set them."""
    k8s.api.create("v1", "nodes", None, {
        "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                     "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                "type": "kwok", POOL: pool, "topology.kubernetes.io/zone": zone,
                                "node.kubernetes.io/instance-type": instance_type, **labels}},
        "spec": {"taints": taints or []}})
    return name


def node_ready(k8s: K8s, name: str) -> bool:
    """Ready, and schedulable: the node-lifecycle controller has lifted its not-ready taint."""
    got = k8s.api.get("v1", "nodes", None, name) or {}
    ready = any(c["type"] == "Ready" and c["status"] == "True"
                for c in (got.get("status") or {}).get("conditions") or [])
    lifecycle = [t for t in (got.get("spec") or {}).get("taints") or []
                 if t["key"].startswith("node.kubernetes.io/")]
    return ready and not lifecycle


def pool_of(k8s: K8s, pool: str, spot: dict[str, str], on_demand: int = 0) -> list[str]:
    """Nodes for one test: {name suffix: flavour} spot nodes over zones a/b/c, plus on-demand ones."""
    names = []
    for i, (suffix, flavour) in enumerate(spot.items()):
        labels, taints = SPOT_FLAVOURS[flavour]
        names.append(node(k8s, f"{pool}-{suffix}", pool, f"zone-{'abc'[i % 3]}", labels, taints))
    for i in range(on_demand):
        names.append(node(k8s, f"{pool}-od{i}", pool, f"zone-{'abc'[i % 3]}", ON_DEMAND))
    for name in names:
        until(lambda n=name: node_ready(k8s, n), 30, f"node {name} Ready")
    return names


@pytest.fixture(scope="session")
def shared_pool(k8s: K8s) -> str:
    """Nodes the operator and crawl tests share: one spot node per platform and two on-demand."""
    pool_of(k8s, "shared", {"eks": "eks", "karpenter": "karpenter", "gke": "gke", "aks": "aks"},
            on_demand=2)
    return "shared"


@pytest.fixture(scope="session")
def quick_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """The registry simulator's `quick` scenario, time-scaled 100x, for the crawls on this tier."""
    with simulator("quick", 100.0, tmp_path_factory.mktemp("sim") / "requests.jsonl") as sim:
        yield sim


def blocks_of(results: Path) -> set[tuple[str, str]]:
    """The (first, last address) of every network in a results file."""
    return {(r["start_address"], r["end_address"]) for r in map(json.loads, results.open())}


@pytest.fixture(scope="session")
def uninterrupted_blocks(calm_quick: Any) -> set[tuple[str, str]]:
    """What the session's calm local crawl of `quick` found (tests/conftest.py): a crawl without
    faults, on this tier's simulator or any other of the same scenario, finds exactly these."""
    return set(calm_quick.blocks)
