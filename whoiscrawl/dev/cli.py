"""`whoiscrawl dev`: the development services (Kafka, Redis, Prometheus) and a real control plane."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from whoiscrawl.dev import cluster, services, tools

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
def up(brokers: Annotated[int, typer.Option(
        min=1, help="Kafka's nodes: 1, or 3 or more for a KRaft cluster (one controller quorum, "
        "min.insync.replicas=2) that keeps replicated topics writable with a node lost")] = 1) -> None:
    """Start Kafka, Redis and Prometheus (if not running) and print their addresses as JSON."""
    try:
        running = services.start(STATE, brokers=brokers)
    except services.ServiceError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
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
        alive = "up" if services.alive(svc) else "down"
        typer.echo(f"{name:<11} {alive:<5} pid={svc.pid:<7} {svc.address}")
    if not running.services:
        typer.echo("no services started (whoiscrawl dev services up)")


cluster_app = typer.Typer(help="A real Kubernetes control plane (with KWOK nodes) on 127.0.0.1.")
app.add_typer(cluster_app, name="cluster")
CLUSTER_STATE = Path(os.environ.get("WHOISCRAWL_DEV_CLUSTER", services.CACHE_DIR / "dev-cluster"))


@cluster_app.command("build")
def cluster_build() -> None:
    """Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK (once)."""
    try:
        typer.echo(cluster.ensure_binaries())
    except services.ServiceError as exc:
        typer.echo(f"cluster: {exc}", err=True)
        raise typer.Exit(1) from exc


@cluster_app.command("up")
def cluster_up() -> None:
    """Build what is missing, start the control plane in the background, print where it is (JSON)."""
    try:
        _, running = cluster.start(CLUSTER_STATE)
    except services.ServiceError as exc:
        typer.echo(f"cluster: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"export KUBECONFIG={running.kubeconfig}", err=True)
    typer.echo(running.as_json(str(tools.ensure("kubectl"))))


@cluster_app.command("down")
def cluster_down() -> None:
    """Stop the control plane and forget its state."""
    services.stop(services.Services.load(CLUSTER_STATE))
    typer.echo("stopped")


@cluster_app.command("status")
def cluster_status() -> None:
    """Show which components run, and where the API server answers."""
    running = services.Services.load(CLUSTER_STATE)
    if not running.services:
        typer.echo("no control plane started (whoiscrawl dev cluster up)")
    for name, svc in running.services.items():
        alive = "up" if services.alive(svc) else "down"
        typer.echo(f"{name:<24} {alive:<5} pid={svc.pid:<7} {svc.address}")
    missing = cluster.missing_binaries()
    if missing:
        typer.echo(f"not built yet: {', '.join(missing)} (whoiscrawl dev cluster build)")
