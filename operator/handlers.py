"""Importing this module registers every kopf handler of the operator (one idiom per module)."""

from __future__ import annotations

from whoiscrawl.operator import on_create, on_delete, on_startup, on_timer, on_update

MODULES = (on_startup, on_create, on_timer, on_update, on_delete)
