"""The Helm chart: strict values schema, RBAC that covers the operator, rendered manifests fresh."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from prometheus_client import REGISTRY
from whoiscrawl.operator import builders, crd
from whoiscrawl.operator import metrics as operator_metrics  # noqa: F401  (whoiscrawl_operator_*)
from whoiscrawl.operator.spec import parse_spec

from whoiscrawl import metrics as worker_metrics  # noqa: F401  (registers whoiscrawl_*)
from whoiscrawl.dev import tools

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts/whoiscrawl"
RENDERED = ROOT / "manifests/whoiscrawl.yaml"


def helm() -> str:
    return str(tools.ensure("helm"))


def docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(RENDERED.read_text()) if d]


def test_values_schema_is_strict() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"])
    for key, sub in schema["properties"].items():
        if sub.get("type") == "object" and "properties" in sub:
            assert sub.get("additionalProperties") is False, key


def test_rendered_manifests_are_valid_and_complete() -> None:
    kinds = {d["kind"] for d in docs()}
    assert {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service",
            "ConfigMap"} <= kinds
    for doc in docs():
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
    dep = next(d for d in docs() if d["kind"] == "Deployment")
    # One active operator: replicas wait on the Lease, so an upgrade's new pod may start first.
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["whoiscrawl", "operator"]
    # Namespaced by default (the release's own namespace): no cluster-wide Secret reads.
    assert "--namespace=whoiscrawl-system" in container["args"]
    role = next(d for d in docs() if d["kind"] == "Role")
    assert role["metadata"]["namespace"] == "whoiscrawl-system"
    assert not [r for d in docs() if d["kind"] == "ClusterRole" for r in d["rules"]
                if "secrets" in r["resources"]]
    dash = next(d for d in docs() if d["kind"] == "ConfigMap")
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dash["data"]["whoiscrawl.json"])["panels"]


def test_rbac_covers_what_the_operator_does() -> None:
    rules = [r for d in docs() if d["kind"] in ("ClusterRole", "Role") for r in d["rules"]]

    def allowed(group: str, resource: str, verb: str) -> bool:
        return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
                   for r in rules)

    needs = [("whoiscrawl.io", "whoiscrawls", v) for v in ("list", "watch", "patch")] + [
        ("whoiscrawl.io", "whoiscrawls/status", "patch"),
        ("whoiscrawl.io", "whoiscrawls/finalizers", "update"),
        ("apps", "deployments", "create"), ("apps", "deployments", "patch"),
        ("policy", "poddisruptionbudgets", "create"), ("", "configmaps", "patch"),
        ("", "serviceaccounts", "create"), ("", "pods", "list"), ("", "secrets", "get"),
        ("", "events", "create"), ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ]
    missing = [n for n in needs if not allowed(*n)]
    assert not missing


def test_manifests_are_rendered_from_the_chart() -> None:
    out = subprocess.run([str(helm()), "template", "whoiscrawl", str(CHART), "--namespace",
                          "whoiscrawl-system", "--set", "crds.install=false"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    namespace, *rendered = [d for d in yaml.safe_load_all(RENDERED.read_text()) if d]
    # Plain manifests carry the namespace helm install --create-namespace would make, enforcing the
    # restricted Pod Security Standard (tests/k8s/test_pod_security.py admits our pods there).
    assert namespace == {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": "whoiscrawl-system", "labels": {"app.kubernetes.io/part-of": "whoiscrawl",
                                                "pod-security.kubernetes.io/enforce": "restricted"}}}
    assert rendered == [d for d in yaml.safe_load_all(out) if d], "stale manifests: run charts/render.sh"
    typo = subprocess.run([str(helm()), "template", "x", str(CHART), "--set", "imag.tag=1"],
                          capture_output=True, text=True, timeout=60)
    assert typo.returncode != 0 and "imag" in typo.stderr


def test_the_maps_server_is_off_by_default_and_renders_valid_when_on() -> None:
    assert not [d for d in docs() if d["metadata"]["name"].endswith("-serve")]
    args = [str(helm()), "template", "w", str(CHART), "--namespace", "ns", "--set", "serve.enabled=true",
            "--set", "serve.crawl=c1", "--set", "serve.kafkaBootstrap=kafka:9092",
            "--set", "serve.kafkaCredentialsSecret=kafka-creds", "--set", "serve.replicas=3"]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
    served = [d for d in yaml.safe_load_all(out) if d and d["metadata"]["name"] == "w-whoiscrawl-serve"]
    assert sorted(d["kind"] for d in served) == ["Deployment", "Service"]
    for doc in served:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
    dep = next(d for d in served if d["kind"] == "Deployment")
    svc = next(d for d in served if d["kind"] == "Service")
    assert dep["spec"]["replicas"] == 3
    pod = dep["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["whoiscrawl", "serve"] and container["args"][0] == "topic:c1"
    assert {"name": "WHOISCRAWL_KAFKA_BOOTSTRAP", "value": "kafka:9092"} in container["env"]
    assert container["envFrom"] == [{"secretRef": {"name": "kafka-creds"}}]
    assert {p: container[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")} \
        == {"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    # Its own selector: the operator's Service and Deployment never pick its pods, nor it theirs.
    selector = svc["spec"]["selector"]
    assert selector == dep["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert selector["app.kubernetes.io/component"] == "serve"
    assert svc["spec"]["ports"][0]["targetPort"] == "rdap"
    for upto, named in ((8, "serve.crawl"), (10, "serve.kafkaBootstrap")):  # each required value named
        missing = subprocess.run(args[:upto], capture_output=True, text=True, timeout=60)
        assert missing.returncode != 0 and named in missing.stderr


def test_alert_rules_load_in_promtool_and_read_exported_metrics(tmp_path: Path) -> None:
    """The PrometheusRule (off by default) renders, promtool loads it, and every metric it reads exists."""
    assert not [d for d in docs() if d["kind"] == "PrometheusRule"]
    out = subprocess.run([helm(), "template", "w", str(CHART), "--namespace", "ns",
                          "--set", "metrics.prometheusRule.enabled=true"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    rendered = [d for d in yaml.safe_load_all(out) if d]
    rule = next(d for d in rendered if d["kind"] == "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    checked = subprocess.run([promtool(), "check", "rules", str(path)],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(rules) == {"WhoisCrawlOperatorDown", "WhoisCrawlReconcileErrors", "WhoisCrawlDegraded",
                          "WhoisCrawlStalled", "WhoisCrawlRateLimited"}
    exported = {m.name for m in REGISTRY.collect()} | {f"{m.name}_total" for m in REGISTRY.collect()}
    read = {name for expr in rules.values() for name in re.findall(r"\bwhoiscrawl_[a-z_]+", expr)}
    assert read and read <= exported, read - exported
    # The ServiceMonitor's job is the metrics Service's name.
    service = next(d for d in rendered
                   if d["kind"] == "Service" and d["metadata"]["name"].endswith("-metrics"))
    assert f'job="{service["metadata"]["name"]}"' in rules["WhoisCrawlOperatorDown"]


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool missing: apt-get install prometheus (Debian ships /usr/bin/promtool)"
    return found


# promtool unit tests of the rendered alerts: each fires on its story and stays quiet on a healthy
# crawl (c2). Series: one sample a minute.
COND = "whoiscrawl_operator_crawl_condition"
PROG = "whoiscrawl_operator_crawl_progress_ratio"
WANT = "whoiscrawl_operator_workers_desired"
LIMITED = "whoiscrawl_rate_limited_total"
ALERT_SERIES = [{"series": series, "values": values} for series, values in (
    ('up{job="w-whoiscrawl-metrics", namespace="ns"}', "0x120"),
    ('whoiscrawl_operator_reconciles_total{trigger="timer", result="error"}', "0+10x120"),
    (COND + '{namespace="a", crawl="c1", type="Degraded"}', "1x120"),
    (COND + '{namespace="a", crawl="c2", type="Degraded"}', "0x120"),
    (PROG + '{namespace="a", crawl="c1"}', "0.5x120"),
    (PROG + '{namespace="a", crawl="c2"}', "0+0.001x120"),
    (WANT + '{namespace="a", crawl="c1"}', "2x120"),
    (WANT + '{namespace="a", crawl="c2"}', "2x120"),
    (LIMITED + '{namespace="a", crawl="c1", registry="arin", pod="p1"}', "0+60x120"),
    (LIMITED + '{namespace="a", crawl="c2", registry="ripe", pod="p2"}', "0+1x120"),
)]
C1 = {"namespace": "a", "crawl": "c1"}
FIRING = {
    "WhoisCrawlOperatorDown": [{"severity": "critical"}],  # absent() of a comparison keeps no labels
    "WhoisCrawlReconcileErrors": [{"severity": "warning"}],
    "WhoisCrawlDegraded": [{"severity": "warning", "type": "Degraded", **C1}],
    "WhoisCrawlStalled": [{"severity": "warning", **C1}],
    "WhoisCrawlRateLimited": [{"severity": "warning", "registry": "arin", **C1}],
}


def test_each_alert_fires_on_its_story_and_not_on_a_healthy_crawl(tmp_path: Path) -> None:
    out = subprocess.run([helm(), "template", "w", str(CHART), "--namespace", "ns",
                          "--set", "metrics.prometheusRule.enabled=true"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    rule = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "PrometheusRule")
    for group in rule["spec"]["groups"]:  # promtool compares annotations too: checked above
        for r in group["rules"]:
            r.pop("annotations")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": ALERT_SERIES,
        "alert_rule_test": [{"eval_time": "100m", "alertname": name,
                             "exp_alerts": [{"exp_labels": labels} for labels in firing]}
                            for name, firing in FIRING.items()]
        + [{"eval_time": "3m", "alertname": name} for name in FIRING],  # nothing fires at once
    }]}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    ran = subprocess.run([promtool(), "test", "rules", "tests.yaml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stdout + ran.stderr


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and In expressions) against a pod's labels."""
    exprs = selector.get("matchExpressions", [])
    assert all(e["operator"] == "In" for e in exprs)
    return (selector.get("matchLabels", {}).items() <= labels.items()
            and all(labels.get(e["key"]) in e["values"] for e in exprs))


def test_the_pod_monitor_scrapes_spot_and_overflow_workers_keeping_their_labels() -> None:
    out = subprocess.run([helm(), "template", "w", str(CHART), "--namespace", "ns",
                          "--set", "metrics.podMonitor.enabled=true",
                          "--set", "metrics.serviceMonitor.enabled=true"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    monitors = {d["kind"]: d for d in yaml.safe_load_all(out) if d and d["kind"].endswith("Monitor")}
    pm = monitors["PodMonitor"]
    owner = builders.Owner("c1", "ns", "uid-1", "0.1.0")
    spec = parse_spec({"kafka": {"bootstrapServers": "k:9092"}, "redis": {"url": "redis://r"}})
    for overflow in (False, True):
        template = builders.deployment(owner, spec, 1, "spot", overflow=overflow)["spec"]["template"]
        assert selects(pm["spec"]["selector"], template["metadata"]["labels"]), overflow
        ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        assert {e["port"] for e in pm["spec"]["podMetricsEndpoints"]} <= ports
    # Every worker sample gets its crawl's name as `crawl` (the operator's label, the dashboards'
    # $crawl), from the pod label Prometheus exposes with non-alphanumerics as underscores.
    meta = "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", builders.CRAWL_LABEL)
    assert template["metadata"]["labels"][builders.CRAWL_LABEL] == "c1"
    for endpoint in pm["spec"]["podMetricsEndpoints"]:
        assert {"sourceLabels": [meta], "targetLabel": "crawl"} in endpoint["relabelings"]
    # The operator's namespace label (the crawl's) wins over the target's.
    assert all(e["honorLabels"] for e in pm["spec"]["podMetricsEndpoints"])
    assert all(e["honorLabels"] for e in monitors["ServiceMonitor"]["spec"]["endpoints"])


def test_the_chart_templates_the_crd_so_helm_upgrade_upgrades_it() -> None:
    """crds.install (on by default): the generated CRD is a release object, kept on uninstall; off,
    no CRD. Nothing in crds/, which Helm installs once and never upgrades."""
    assert not (CHART / "crds").exists()

    def crds(*sets: str) -> list[dict[str, Any]]:
        args = [helm(), "template", "w", str(CHART), "--namespace", "ns"]
        out = subprocess.run(args + [a for s in sets for a in ("--set", s)], capture_output=True,
                             text=True, check=True, timeout=60).stdout
        return [d for d in yaml.safe_load_all(out) if d and d["kind"] == "CustomResourceDefinition"]

    [templated] = crds()
    want = crd.build_crd()
    meta = templated.pop("metadata")
    assert templated == {k: v for k, v in want.items() if k != "metadata"}
    assert meta["name"] == want["metadata"]["name"]
    assert want["metadata"]["labels"].items() <= meta["labels"].items()
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert meta["annotations"] == {"helm.sh/resource-policy": "keep"}
    kubernetes_validate.validate({**templated, "metadata": meta}, "1.37.0", strict=True)
    assert "annotations" not in crds("crds.keep=false")[0]["metadata"]
    assert crds("crds.install=false") == []
    # The plain manifests leave the CRD to manifests/crds/ (deleting them must not delete crawls).
    assert not [d for d in docs() if d["kind"] == "CustomResourceDefinition"]


def _worker_image_env(*sets: str) -> str:
    args = [helm(), "template", "w", str(CHART), "--namespace", "ns"]
    for item in sets:
        args += ["--set", item]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
    dep = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment"
               and d["metadata"]["name"] == "w-whoiscrawl")
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    return str(env["WHOISCRAWL_WORKER_IMAGE"])


def test_the_worker_image_comes_from_the_charts_values() -> None:
    """The operator's own image by default (so `helm upgrade` to a new tag rolls the workers),
    a mirror when workerImage names one; never the CRD's (it has no default for it)."""
    app = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert _worker_image_env() == f"ghcr.io/whoiscrawl/whoiscrawl:{app}"
    assert _worker_image_env("image.repository=mirror.local/wc", "image.tag=2.0.0") == \
        "mirror.local/wc:2.0.0"
    assert _worker_image_env("workerImage=airgap.local/whoiscrawl@sha256:" + "a" * 64) == \
        "airgap.local/whoiscrawl@sha256:" + "a" * 64
    workers = crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"]["properties"]["workers"]
    assert "default" not in workers["properties"]["image"] and "image" not in workers["default"]
    minimal = {"kafka": {"bootstrapServers": "k:9092"}, "redis": {"url": "redis://r"}}
    owner = builders.Owner("c", "ns", "uid")

    def image(raw: dict[str, Any]) -> str:
        spec = parse_spec(raw, "mirror.local/wc:2.0.0")
        pod = builders.deployment(owner, spec, 1, "spot")["spec"]["template"]["spec"]
        return str(pod["containers"][0]["image"])

    assert image(minimal) == "mirror.local/wc:2.0.0"
    assert image({**minimal, "workers": {"image": "mine:1"}}) == "mine:1"  # the spec's own wins


def test_leader_election_lease_env_and_rbac() -> None:
    """On by default: the Lease named in the env, a Role for it alone; off: one replica, Recreate,
    and more replicas refused."""
    def render(*sets: str) -> subprocess.CompletedProcess[str]:
        args = [helm(), "template", "w", str(CHART), "--namespace", "ns"]
        for item in sets:
            args += ["--set", item]
        return subprocess.run(args, capture_output=True, text=True, timeout=60)

    out = [d for d in yaml.safe_load_all(render("replicas=2").stdout) if d]
    dep = next(d for d in out if d["kind"] == "Deployment" and d["metadata"]["name"] == "w-whoiscrawl")
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert dep["spec"]["replicas"] == 2
    assert env["WHOISCRAWL_LEADER_LEASE"]["value"] == "ns/w-whoiscrawl-leader"
    role = next(d for d in out if d["kind"] == "Role" and d["metadata"]["name"] == "w-whoiscrawl-leader")
    assert role["metadata"]["namespace"] == "ns"
    assert {(tuple(r["verbs"]), tuple(r.get("resourceNames", ()))) for r in role["rules"]} == {
        (("create",), ()), (("get", "patch"), ("w-whoiscrawl-leader",))}
    off = [d for d in yaml.safe_load_all(render("leaderElection.enabled=false").stdout) if d]
    dep = next(d for d in off if d["kind"] == "Deployment" and d["metadata"]["name"] == "w-whoiscrawl")
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    assert "WHOISCRAWL_LEADER_LEASE" not in {e["name"] for e in dep["spec"]["template"]["spec"][
        "containers"][0]["env"]}
    assert not [d for d in off if d["kind"] == "Role" and d["metadata"]["name"].endswith("-leader")]
    refused = render("leaderElection.enabled=false", "replicas=2")
    assert refused.returncode != 0 and "needs leaderElection.enabled" in refused.stderr


def test_an_operator_not_given_its_own_service_account_must_name_one() -> None:
    """create: false with no name would run the operator as the namespace's `default` account."""
    refused = subprocess.run([helm(), "template", "r", str(CHART), "--set", "serviceAccount.create=false"],
                             capture_output=True, text=True)
    assert refused.returncode != 0 and "/serviceAccount/name" in refused.stderr, refused.stderr
    named = subprocess.run([helm(), "template", "r", str(CHART), "--set", "serviceAccount.create=false",
                            "--set", "serviceAccount.name=ops"], capture_output=True, text=True, check=True)
    pods = [d for d in yaml.safe_load_all(named.stdout) if d and d["kind"] == "Deployment"]
    assert pods[0]["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


def _allowed_images(*sets: str) -> list[list[str]]:
    args = [a for s in sets for a in ("--set", s)]
    out = subprocess.run([helm(), "template", "r", str(CHART), "-n", "sys", *args], capture_output=True,
                         text=True, check=True).stdout
    policies = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "ValidatingAdmissionPolicy"]
    return [yaml.safe_load(next(v["expression"] for v in p["spec"]["variables"] if v["name"] == "allowed")
                           .replace("'", '"')) for p in policies]


def test_the_admission_policies_allow_the_charts_own_images_unless_told_otherwise() -> None:
    """Both policies (crawl images; the operator's worker Deployments) allow the chart's image
    repository and workerImage's (a registry port and a digest are not taken for a tag)."""
    repo = "ghcr.io/whoiscrawl/whoiscrawl"
    assert _allowed_images() == [[f"{repo}:", f"{repo}@"]] * 2
    mirror = "mirror.local:5000/wc/whoiscrawl"
    assert _allowed_images(f"workerImage={mirror}@sha256:{'a' * 64}")[0] == \
        [f"{repo}:", f"{repo}@", f"{mirror}:", f"{mirror}@"]
    assert _allowed_images("admissionPolicy.imagePrefixes={registry.example/team/}") == \
        [["registry.example/team/"]] * 2
    assert _allowed_images("admissionPolicy.enabled=false") == []
