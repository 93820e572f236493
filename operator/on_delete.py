"""Delete: the finalizer removes Redis keys and (per cleanup policy) topics; GC takes the rest."""

from __future__ import annotations

from typing import Any

import kopf
from whoiscrawl.operator import control, glue, metrics
from whoiscrawl.operator.backend import BackendError
from whoiscrawl.operator.kube import KubeError
from whoiscrawl.operator.spec import SpecError


@kopf.on.delete(*glue.RESOURCE, retries=6, backoff=10)
def cleanup(memo: kopf.Memo, body: kopf.Body, **_: Any) -> None:
    crawl = glue.crawl_of(body)
    try:
        done = control.cleanup(glue.deps(memo), crawl)
    except SpecError:
        done = "spec invalid: nothing to clean up"
    except (BackendError, KubeError) as exc:
        glue.post(body, [("Warning", "CleanupFailed", str(exc))])
        raise kopf.TemporaryError(f"cleanup failed: {exc}", delay=10) from exc
    glue.post(body, [("Normal", "CleanedUp", done)])
    metrics.forget(crawl.namespace, crawl.name)
    control.forget(crawl.uid)
