"""Delete: scale the workers to 0, wait until their pods are gone, then delete the crawl's data.

Deletion always ends: after spec.cleanup.timeoutSeconds of retries a Warning Event says what was
left behind and the handler returns, so kopf drops the finalizer.
"""

from __future__ import annotations

import datetime
from typing import Any

import kopf
from whoiscrawl.operator import control, glue, metrics
from whoiscrawl.operator.backend import BackendError
from whoiscrawl.operator.kube import KubeError

RETRY_SECONDS = 10.0


@kopf.on.delete(*glue.RESOURCE, backoff=RETRY_SECONDS)
def cleanup(memo: kopf.Memo, body: kopf.Body, runtime: datetime.timedelta, **_: Any) -> None:
    crawl = control.crawl_of(body)
    timeout = control.cleanup_timeout(crawl)
    try:
        done = control.cleanup(glue.deps(memo), crawl)
    except Exception as exc:  # any failure is retried, then given up on: deletion must end
        problem = str(exc) if isinstance(exc, (BackendError, KubeError)) else (
            f"{type(exc).__name__}: {exc}")
        if runtime.total_seconds() < timeout:
            glue.post(body, [("Warning", "CleanupFailed", problem)])
            raise kopf.TemporaryError(f"cleanup failed: {problem}", delay=RETRY_SECONDS) from exc
        abandon(body, crawl, f"its topics and Redis keys may be left: {problem}", timeout)
        return
    if done is None:
        if runtime.total_seconds() < timeout:
            raise kopf.TemporaryError("waiting for the worker pods to stop before deleting data",
                                      delay=max(1.0, glue.INTERVAL / 2))
        abandon(body, crawl, "worker pods were still running: topics and Redis keys left",
                timeout)
        return
    glue.post(body, [("Normal", "CleanedUp", done)])
    finished(crawl)


def abandon(body: kopf.Body, crawl: control.Crawl, what: str, timeout: float) -> None:
    """Give up after the timeout: say so on the crawl, and let kopf drop the finalizer."""
    glue.post(body, [("Warning", "CleanupAbandoned",
                      f"gave up after cleanup.timeoutSeconds ({timeout:g}s); {what}")])
    finished(crawl)


def finished(crawl: control.Crawl) -> None:
    metrics.forget(crawl.namespace, crawl.name)
    glue.forget(crawl.uid)
