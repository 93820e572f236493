"""Create and resume: validate, create topics, publish the plan, create the worker objects."""

from __future__ import annotations

from typing import Any

import kopf
from whoiscrawl.operator import glue


@kopf.on.resume(*glue.RESOURCE)
@kopf.on.create(*glue.RESOURCE)
def start(memo: kopf.Memo, body: kopf.Body, **_: Any) -> None:
    glue.reconcile("create", memo, body)
