"""`whoiscrawl dev`: install and run the development services (Kafka, Redis, Prometheus)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from whoiscrawl.dev import services

app = typer.Typer(help="Development services: a real Kafka, Redis and Prometheus on 127.0.0.1.")
services_app = typer.Typer(help="Start, stop and show the development services.")
app.add_typer(services_app, name="services")

STATE = Path(os.environ.get("WHOISCRAWL_DEV_STATE", services.CACHE_DIR / "dev-services"))


@app.command()
def install() -> None:
    """Fetch what the services and the simulator need (Kafka jars, allocation data); idempotent."""
    libs = services.ensure_kafka_jars()
    typer.echo(f"kafka {services.KAFKA_VERSION}: {libs}")
    try:
        from whoiscrawl.sim import data
    except ImportError:  # the simulator is optional for a services-only install
        return
    typer.echo(f"simulator data: {data.ensure_data()}")


@services_app.command("up")
def up() -> None:
    """Start Kafka, Redis and Prometheus (if not running) and print their addresses as JSON."""
    running = services.start(STATE)
    typer.echo(
        json.dumps(
            {
                "kafka": running.kafka_bootstrap,
                "redis": running.redis_url,
                "prometheus": running.prometheus_url,
                "state": str(STATE),
            }
        )
    )
    typer.echo(
        f"export WHOISCRAWL_KAFKA_BOOTSTRAP={running.kafka_bootstrap} "
        f"WHOISCRAWL_REDIS_URL={running.redis_url}",
        err=True,
    )


@services_app.command("down")
def down() -> None:
    """Stop the development services."""
    services.stop(services.Services.load(STATE))
    typer.echo("stopped")


@services_app.command("status")
def status() -> None:
    """Show which services are running and where."""
    running = services.Services.load(STATE)
    for name, svc in running.services.items():
        alive = "up" if services._alive(svc) else "down"
        typer.echo(f"{name:<11} {alive:<5} pid={svc.pid:<7} {svc.address}")
    if not running.services:
        typer.echo("no services started (whoiscrawl dev services up)")
