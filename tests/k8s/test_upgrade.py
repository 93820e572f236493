"""`helm upgrade` to a chart whose CRD has a new field and whose image is new, on a real API server.

Helm never upgrades a chart's `crds/`; this chart templates its CRD, so the upgrade carries the new
field (a value the old CRD pruned is kept after it), and the operator passes the chart's image to
the workers, so their Deployment rolls to the new image. The session's CRD was applied with kubectl
(the `crd` fixture, as a user of manifests/crds/ would), so the release adopts it the way
docs/operator.md says: `--take-ownership` at install, `--force-conflicts` at the upgrade (kubectl
co-owns the CRD's fields; helm 4's server-side apply refuses to change them without it).
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from opsupport_api import until
from opsupport_kubelet import kubelet
from whoiscrawl.operator.builders import crawl_id, worker_name
from whoiscrawl.operator.crd import CRD_FILE, CRD_NAME

from whoiscrawl.bench.common import Simulator
from whoiscrawl.dev.services import free_port

from .conftest import CHART, POOL, WC, K8s
from .conftest import CRD_FILE as CRD_COPY
from .test_operator import crawl_doc, drop_data

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow, pytest.mark.services]
RELEASE = "up"


def _chart_with_a_new_field(tmp: Path) -> Path:
    """The chart, its CRD given `spec.workers.note` (a field the installed CRD does not know)."""
    chart = tmp / "chart"
    shutil.copytree(CHART, chart)
    path = chart / "files" / CRD_FILE
    crd = yaml.safe_load(path.read_text())
    workers = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]["workers"]
    workers["properties"]["note"] = {"type": "string", "description": "new in this release"}
    path.write_text(yaml.safe_dump(crd, sort_keys=False))
    return chart


def _note(k8s: K8s, namespace: str, crawl: str) -> Any:
    # Through the API (no fieldValidation: the server's default warns and prunes what the CRD
    # does not know); `kubectl patch` asks for Strict and has no --validate.
    k8s.api.patch(*WC, namespace, crawl, {"spec": {"workers": {"note": "kept"}}})
    return ((k8s.api.get(*WC, namespace, crawl) or {})["spec"]["workers"]).get("note")


def _image(k8s: K8s, namespace: str, crawl: str) -> str:
    dep = k8s.api.get("apps/v1", "deployments", namespace, worker_name(crawl)) or {}
    containers = (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers") or [{}]
    return str(containers[0].get("image", ""))


def _versions_owners(k8s: K8s) -> list[str]:
    """The field managers that own the CRD's `.spec.versions`."""
    crd = k8s.api.get("apiextensions.k8s.io/v1", "customresourcedefinitions", None, CRD_NAME) or {}
    return sorted(m["manager"] for m in crd["metadata"].get("managedFields") or []
                  if "f:versions" in ((m.get("fieldsV1") or {}).get("f:spec") or {}))


def test_helm_upgrade_keeps_a_new_crd_field_and_rolls_the_workers_to_the_new_image(
        k8s: K8s, crd: dict, shared_pool: str, services: Any, quick_sim: Simulator,
        namespace: str, tmp_path: Path) -> None:
    ns = k8s.namespace(f"up-{uuid.uuid4().hex[:6]}")
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({
        "watch": {"namespaces": [namespace]}, "reconcileIntervalSeconds": 1,
        "livenessPort": free_port(), "metrics": {"port": free_port()},
        "nodeSelector": {POOL: shared_pool}, "crds": {"install": True, "keep": True}}))
    crawl = f"u{uuid.uuid4().hex[:6]}"
    doc = crawl_doc(crawl, services, quick_sim, shared_pool)
    doc["spec"]["ranges"] = doc["spec"]["ranges"][:1]
    try:
        k8s.helm("install", RELEASE, str(CHART), "-n", ns, "-f", str(values), "--take-ownership")
        with kubelet(k8s.api, tmp_path / "pods", {ns, namespace}):
            k8s.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(doc))
            old = until(lambda: _image(k8s, namespace, crawl), 90, "the worker Deployment")
            pruned = _note(k8s, namespace, crawl)  # the old CRD drops what it does not know

            k8s.helm("upgrade", RELEASE, str(_chart_with_a_new_field(tmp_path)), "-n", ns,
                     "-f", str(values), "--set", "image.tag=9.9.9", "--force-conflicts")
            owners = _versions_owners(k8s)
            kept = until(lambda: _note(k8s, namespace, crawl), 60, "the new field kept")
            new = until(lambda: (got := _image(k8s, namespace, crawl)).endswith(":9.9.9") and got,
                        120, "the workers on the new image")
            k8s.kubectl("delete", "wc", crawl, "-n", namespace, "--timeout=120s")
    finally:
        k8s.helm("uninstall", RELEASE, "-n", ns, check=False)
        # The session's CRD as the `crd` fixture applied it, for the tests after this one.
        k8s.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_COPY))
        k8s.api.delete("v1", "namespaces", None, ns)
        with contextlib.suppress(Exception):
            drop_data(services, "whoiscrawl.", crawl_id(namespace, crawl))
    assert old == "ghcr.io/whoiscrawl/whoiscrawl:0.1.0", old  # the chart's appVersion
    assert pruned is None and kept == "kept"
    assert new == "ghcr.io/whoiscrawl/whoiscrawl:9.9.9"
    assert owners == ["helm"], owners  # the next upgrade needs no force
    assert k8s.api.get("apiextensions.k8s.io/v1", "customresourcedefinitions", None, CRD_NAME), \
        "crds.keep: helm uninstall left the CRD"
