"""Operator start: settings (storage, finalizer, posting), dependencies, login, liveness probe."""

from __future__ import annotations

import os
import time
from typing import Any

import kopf
from whoiscrawl.operator import control, glue, health
from whoiscrawl.operator.backend import LiveBackend
from whoiscrawl.operator.kube import KubeClient
from whoiscrawl.operator.spec import GROUP

SERVER_ENV = "WHOISCRAWL_KUBE_SERVER"  # talk to this API server (tests: kmock), no auth
# The image of workers whose crawl names none: the chart sets it from its values (workerImage,
# else the operator's own image), so `helm upgrade` to a new image rolls every such crawl's workers.
WORKER_IMAGE_ENV = "WHOISCRAWL_WORKER_IMAGE"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/cleanup"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    # Only kopf.event() calls become Events (not every INFO log, such as "Timer succeeded").
    settings.posting.loggers = False
    settings.posting.reporting_component = "whoiscrawl-operator"
    settings.posting.event_name_prefix = "whoiscrawl-"
    settings.execution.max_workers = int(os.environ.get("WHOISCRAWL_OPERATOR_THREADS", "8"))
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60  # kopf's own calls (patches, Events); not the watches
    settings.networking.connect_timeout = 10
    if getattr(memo, "deps", None) is None:
        server = getattr(memo, "kube_server", None) or os.environ.get(SERVER_ENV)
        memo.deps = control.Deps(kube=KubeClient(server), backend=LiveBackend(),
                                 worker_image=os.environ.get(WORKER_IMAGE_ENV) or None)


@kopf.on.login()
def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    server = getattr(memo, "kube_server", None) or os.environ.get(SERVER_ENV)
    if server:
        return kopf.ConnectionInfo(server=server, insecure=True, default_namespace="default")
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.probe(id="crawls")
def crawls(memo: kopf.Memo, **_: Any) -> int:
    """Liveness detail: the operator answers, and knows its dependencies."""
    return 1 if getattr(memo, "deps", None) is not None else 0


@kopf.on.probe(id="reconciles")
def reconciles(**_: Any) -> int:
    """Liveness fails (HTTP 500) while a crawl has had no pass finish for several intervals."""
    stuck = glue.stuck_crawls(time.monotonic())
    if stuck:
        raise kopf.PermanentError(f"no reconcile pass finished for {len(stuck)} crawl(s) in "
                                  f"{glue.INTERVAL * health.STALE_INTERVALS:g}s: {', '.join(stuck)}")
    return 0
