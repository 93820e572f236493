"""The level-based loop: every few seconds read progress and lag, scale, and write status."""

from __future__ import annotations

from typing import Any

import kopf
from whoiscrawl.operator import glue


@kopf.timer(*glue.RESOURCE, interval=glue.INTERVAL, initial_delay=glue.INTERVAL / 2,
            backoff=glue.INTERVAL)
def tick(memo: kopf.Memo, body: kopf.Body, **_: Any) -> None:
    glue.reconcile("timer", memo, body)
