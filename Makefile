# The two commands of the README, and a few more for developers. Each one sets up what it needs.
.PHONY: setup demo test lint unit bench services-up services-down clean

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/whoiscrawl demo

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy

test: setup
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/pytest

unit: setup
	.venv/bin/pytest tests/unit

bench: setup
	.venv/bin/whoiscrawl bench --scenario quick --strategy sweep --workers 2 --json

services-up: setup
	.venv/bin/whoiscrawl dev services up

services-down:
	.venv/bin/whoiscrawl dev services down

clean:
	rm -rf .venv build *.egg-info .mypy_cache .ruff_cache .pytest_cache
