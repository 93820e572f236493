"""Live spec edits (workers, limits, ranges, paused, kubectl scale) take effect at once."""

from __future__ import annotations

from typing import Any

import kopf
from whoiscrawl.operator import glue


@kopf.on.update(*glue.RESOURCE, field="spec")
def edited(memo: kopf.Memo, body: kopf.Body, **_: Any) -> None:
    glue.reconcile("update", memo, body)


@kopf.on.update(*glue.RESOURCE, field="spec.paused")
def paused(body: kopf.Body, new: Any, **_: Any) -> None:
    if new:
        glue.post(body, [("Normal", "Paused", "spec.paused is true: scaling workers to 0")])
    else:
        glue.post(body, [("Normal", "Resumed", "spec.paused is false: resuming the crawl")])
