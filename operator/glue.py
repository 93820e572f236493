"""Shared plumbing of the kopf handlers: deps from memo, one reconcile pass, Events, metrics."""

from __future__ import annotations

import os
import time
from typing import Any

import kopf
from whoiscrawl.operator import control, health, metrics
from whoiscrawl.operator.spec import GROUP, PLURAL, VERSION

RESOURCE = (GROUP, VERSION, PLURAL)
# The timer's interval, and the delay before a pass the API refused is tried again.
INTERVAL = float(os.environ.get("WHOISCRAWL_OPERATOR_INTERVAL", "10"))


def stuck_crawls(now: float) -> list[str]:
    """Crawls with no pass finished for health.STALE_INTERVALS intervals (the liveness probe)."""
    return health.LIVENESS.stuck(now, health.STALE_INTERVALS * INTERVAL)


def forget(uid: str) -> None:
    """A deleted crawl: drop its lock and its liveness record."""
    control.forget(uid)
    health.LIVENESS.finished(uid)


def deps(memo: Any) -> control.Deps:
    """The Deps the startup handler put in memo (tests put fakes there first)."""
    found = getattr(memo, "deps", None)
    if found is None:
        raise kopf.TemporaryError("operator not started yet: no deps in memo", delay=5)
    return found


def post(body: Any, events: list[control.Event]) -> None:
    for kind, reason, message in events:
        metrics.EVENTS.labels(kind, reason).inc()
        kopf.event(body, type=kind, reason=reason, message=message)


def reconcile(trigger: str, memo: Any, body: Any) -> control.Result | None:
    """Run one pass (it re-reads the crawl and writes its status), post Events, count it.

    A pass the API refused (a 403, a 422) or that raised is reported on the crawl and retried
    after INTERVAL. Only a pass that hangs leaves its start in health.LIVENESS, which the probe
    reads: one crawl's failure never restarts the operator.
    """
    crawl = control.crawl_of(body)
    started = time.monotonic()
    health.LIVENESS.started(crawl.uid, started)
    try:
        result = control.run(deps(memo), crawl)
    except kopf.TemporaryError:
        raise  # not started yet (no deps): kopf retries
    except Exception as exc:
        # Reading or writing this crawl failed (control.run reports what reconcile raises on the
        # crawl itself): say so on it and retry; the operator's liveness is not this crawl's.
        metrics.RECONCILES.labels(trigger, "error").inc()
        health.LIVENESS.finished(crawl.uid)
        post(body, [("Warning", "ReconcileError", f"{type(exc).__name__}: {exc}")])
        raise kopf.TemporaryError(f"ReconcileError: {exc}", delay=INTERVAL) from exc
    finally:
        metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
    health.LIVENESS.finished(crawl.uid)
    if result is None:  # gone, replaced or being deleted: nothing to do
        return None
    metrics.RECONCILES.labels(trigger, "error" if result.api_error else "ok").inc()
    metrics.observe(crawl.namespace, crawl.name, result.status)
    post(body, result.events)
    if result.api_error is not None:
        reason, message = result.api_error
        raise kopf.TemporaryError(f"{reason}: {message}", delay=INTERVAL)
    return result
