#!/usr/bin/env bash
# Render manifests/ from the chart (and write the generated CRD to the chart's files/ and manifests/crds/); helm comes from charts/fetch-helm.sh.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
helm="$("$root/charts/fetch-helm.sh")"
python="${PYTHON:-$root/.venv/bin/python}"
(cd "$root" && "$python" -m whoiscrawl.operator.crd --write)
"$helm" lint "$root/charts/whoiscrawl"
{
  echo "# Rendered by charts/render.sh from charts/whoiscrawl (helm template, default values but crds.install=false)."
  echo "# Apply crds/ first: kubectl apply -f manifests/crds/ && kubectl apply -f manifests/whoiscrawl.yaml"
  echo "# No CRD here: deleting these manifests must not delete it, and every crawl with it."
  # helm install --create-namespace makes the release namespace; plain manifests must carry it.
  printf -- '---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: whoiscrawl-system\n'
  # The restricted Pod Security Standard enforced: the operator's pod meets it (tests/k8s/test_pod_security.py).
  printf '  labels:\n    app.kubernetes.io/part-of: whoiscrawl\n    pod-security.kubernetes.io/enforce: restricted\n'
  "$helm" template whoiscrawl "$root/charts/whoiscrawl" --namespace whoiscrawl-system --set crds.install=false
} > "$root/manifests/whoiscrawl.yaml"
echo "rendered manifests/whoiscrawl.yaml"
