"""Delete: scale the workers to 0, wait until their pods are gone, then delete the crawl's data."""

from __future__ import annotations

from typing import Any

import kopf
from whoiscrawl.operator import control, glue, metrics
from whoiscrawl.operator.backend import BackendError
from whoiscrawl.operator.kube import KubeError
from whoiscrawl.operator.spec import SpecError


@kopf.on.delete(*glue.RESOURCE, backoff=10)
def cleanup(memo: kopf.Memo, body: kopf.Body, **_: Any) -> None:
    crawl = control.crawl_of(body)
    try:
        done = control.cleanup(glue.deps(memo), crawl)
    except SpecError:
        done = "spec invalid: nothing to clean up"
    except (BackendError, KubeError) as exc:
        glue.post(body, [("Warning", "CleanupFailed", str(exc))])
        raise kopf.TemporaryError(f"cleanup failed: {exc}", delay=10) from exc
    if done is None:
        raise kopf.TemporaryError("waiting for the worker pods to stop before deleting data",
                                  delay=max(1.0, glue.INTERVAL / 2))
    glue.post(body, [("Normal", "CleanedUp", done)])
    metrics.forget(crawl.namespace, crawl.name)
    glue.forget(crawl.uid)
