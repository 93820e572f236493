# The two commands of the README, and a few more for developers. Each one sets up what it needs.
.PHONY: setup control-plane demo docs-map dashboards test lint unit bench services-up services-down cluster-up cluster-down clean

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/whoiscrawl demo

# The README's map and summary: a local crawl of the simulator's `standard` scenario, drawn and summed up.
STANDARD = .whoiscrawl/standard/results.jsonl
docs-map: setup
	.venv/bin/whoiscrawl demo --scenario standard --out $(STANDARD)
	.venv/bin/whoiscrawl map $(STANDARD) --size 1024 --out docs/map-standard.png \
		--title "A crawl of the simulator's standard scenario, by registry"
	.venv/bin/whoiscrawl summary $(STANDARD) --top 8

# The Grafana dashboards of the chart, from whoiscrawl/dashboards.py (a test fails when they drift).
dashboards: setup
	.venv/bin/whoiscrawl dashboards

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy

# The real Kubernetes control plane the tests run against: built once from the Go module proxy
# (a cold build takes ~15 minutes on 2 cores), then cached in ~/.cache/whoiscrawl/controlplane.
control-plane: setup
	.venv/bin/whoiscrawl dev cluster build

# --durations=30: the slowest tests in CI's output, so the suite's time budget stays in view.
test: setup control-plane
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/pytest --durations=30

unit: setup
	.venv/bin/pytest tests/unit

bench: setup
	.venv/bin/whoiscrawl bench --scenario quick --strategy sweep --workers 2 --json

services-up: setup
	.venv/bin/whoiscrawl dev services up

services-down:
	.venv/bin/whoiscrawl dev services down

cluster-up: control-plane
	.venv/bin/whoiscrawl dev cluster up

cluster-down:
	.venv/bin/whoiscrawl dev cluster down

clean:
	rm -rf .venv build *.egg-info .mypy_cache .ruff_cache .pytest_cache
