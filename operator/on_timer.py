"""The level-based loop: every few seconds read progress and lag, scale, and write status."""

from __future__ import annotations

import os
from typing import Any

import kopf
from whoiscrawl.operator import glue

INTERVAL = float(os.environ.get("WHOISCRAWL_OPERATOR_INTERVAL", "10"))


@kopf.timer(*glue.RESOURCE, interval=INTERVAL, initial_delay=INTERVAL / 2, backoff=INTERVAL)
def tick(memo: kopf.Memo, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    glue.reconcile("timer", memo, body, patch)
