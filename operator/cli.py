"""`whoiscrawl operator`: run the kopf operator for one namespace, several, or all of them."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Annotated

import typer

app = typer.Typer(add_completion=False, help="Run the WhoisCrawl operator (kopf).")


@app.callback(invoke_without_command=True)
def run(
    namespace: Annotated[list[str] | None, typer.Option(
        "--namespace", "-n", help="Watch this namespace (repeatable; globs allowed).")] = None,
    all_namespaces: Annotated[bool, typer.Option(
        "--all-namespaces", "-A", help="Watch every namespace.")] = False,
    liveness_port: Annotated[int, typer.Option(help="kopf liveness endpoint port (0: off).")]
    = 8080,
    metrics_port: Annotated[int, typer.Option(help="Prometheus /metrics port (0: off).")] = 9090,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    leader_lease: Annotated[str, typer.Option(
        envvar="WHOISCRAWL_LEADER_LEASE",
        help="NAMESPACE/NAME of a coordination.k8s.io Lease: reconcile only while holding it "
             "(several replicas, one active). Empty: no election.")] = "",
) -> None:
    """Watch WhoisCrawl objects and run, scale and finish their crawls."""
    if bool(namespace) == all_namespaces:
        raise typer.BadParameter("give --namespace NS (one or more) or --all-namespaces")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import kopf
    from prometheus_client import start_http_server
    from whoiscrawl.operator import handlers

    assert handlers.MODULES  # importing registered the handlers
    if metrics_port:
        start_http_server(metrics_port)
    if leader_lease:
        from whoiscrawl.operator import leader
        from whoiscrawl.operator.kube import KubeClient

        leader.lead(leader_lease, liveness_port, KubeClient(os.environ.get("WHOISCRAWL_KUBE_SERVER")))
    liveness = f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None
    # One active operator: the Lease above, or one replica (Recreate); no kopf peering CRD.
    asyncio.run(kopf.operator(clusterwide=all_namespaces, namespaces=namespace or (),
                              liveness_endpoint=liveness, standalone=True))
