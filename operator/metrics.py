"""The operator's own Prometheus metrics (names whoiscrawl_operator_*, base units)."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram
from whoiscrawl.operator.status import CONDITION_TYPES

RECONCILES = Counter("whoiscrawl_operator_reconciles_total",
                     "Reconcile passes, by trigger and result", ["trigger", "result"])
RECONCILE_SECONDS = Histogram("whoiscrawl_operator_reconcile_duration_seconds",
                              "Time one reconcile pass takes",
                              buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
WORKERS_DESIRED = Gauge("whoiscrawl_operator_workers_desired",
                        "Workers the operator wants for a crawl", ["namespace", "crawl"])
WORKERS_READY = Gauge("whoiscrawl_operator_workers_ready",
                      "Ready workers of a crawl", ["namespace", "crawl"])
PROGRESS = Gauge("whoiscrawl_operator_crawl_progress_ratio",
                 "Share of a crawl's addresses covered (0..1)", ["namespace", "crawl"])
LAG = Gauge("whoiscrawl_operator_work_lag_messages",
            "Work messages not yet committed by a crawl's workers", ["namespace", "crawl"])
CONDITION = Gauge("whoiscrawl_operator_crawl_condition",
                  "1 while a crawl's condition of this type is True, else 0 (alerts read Degraded)",
                  ["namespace", "crawl", "type"])
EVENTS = Counter("whoiscrawl_operator_events_total",
                 "Kubernetes Events posted, by type and reason", ["type", "reason"])


def observe(namespace: str, crawl: str, status: dict[str, object]) -> None:
    """Copy the headline numbers of a freshly computed status into the gauges."""
    workers = status.get("workers")
    if isinstance(workers, dict):
        WORKERS_DESIRED.labels(namespace, crawl).set(float(workers.get("desired") or 0))
        WORKERS_READY.labels(namespace, crawl).set(float(workers.get("ready") or 0))
    progress = status.get("progress")
    if isinstance(progress, int | float):
        PROGRESS.labels(namespace, crawl).set(float(progress) / 100.0)
    for cond in status.get("conditions") or []:  # type: ignore[attr-defined]
        if isinstance(cond, dict) and cond.get("type"):
            CONDITION.labels(namespace, crawl, cond["type"]).set(1.0 if cond.get("status") == "True" else 0.0)
    lag = status.get("lag")
    if isinstance(lag, int):
        LAG.labels(namespace, crawl).set(lag)


def forget(namespace: str, crawl: str) -> None:
    for gauge in (WORKERS_DESIRED, WORKERS_READY, PROGRESS, LAG):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, crawl)
    for ctype in CONDITION_TYPES:
        with contextlib.suppress(KeyError):
            CONDITION.remove(namespace, crawl, ctype)
