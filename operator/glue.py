"""Shared plumbing of the kopf handlers: deps from memo, the crawl from the body, status + Events."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import kopf
from whoiscrawl.operator import control, metrics
from whoiscrawl.operator.spec import GROUP, PLURAL, VERSION

RESOURCE = (GROUP, VERSION, PLURAL)


def deps(memo: Any) -> control.Deps:
    """The Deps the startup handler put in memo (tests put fakes there first)."""
    found = getattr(memo, "deps", None)
    if found is None:
        raise kopf.TemporaryError("operator not started yet: no deps in memo", delay=5)
    return found


def crawl_of(body: Mapping[str, Any]) -> control.Crawl:
    meta = body.get("metadata") or {}
    return control.Crawl(name=str(meta.get("name")), namespace=str(meta.get("namespace")),
                         uid=str(meta.get("uid")), generation=int(meta.get("generation") or 0),
                         spec=dict(body.get("spec") or {}), status=dict(body.get("status") or {}))


def post(body: Any, events: list[control.Event]) -> None:
    for kind, reason, message in events:
        metrics.EVENTS.labels(kind, reason).inc()
        kopf.event(body, type=kind, reason=reason, message=message)


def reconcile(trigger: str, memo: Any, body: Any, patch: kopf.Patch) -> control.Result:
    """Run one pass and record it: status into the patch (if changed), Events, metrics."""
    crawl = crawl_of(body)
    started = time.monotonic()
    try:
        result = control.reconcile(deps(memo), crawl)
    except Exception:
        metrics.RECONCILES.labels(trigger, "error").inc()
        raise
    finally:
        metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
    metrics.RECONCILES.labels(trigger, "ok").inc()
    metrics.observe(crawl.namespace, crawl.name, result.status)
    if control.status_changed(crawl.status, result.status):
        patch.status.update(result.status)
    post(body, result.events)
    return result
