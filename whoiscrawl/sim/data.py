"""Simulator data (placeholder)."""


def ensure_data() -> str:
    return "not yet"
