"""Secrets kept out of what is shown: credentials in URLs redacted before any log, error or status."""

from __future__ import annotations

import re

# `scheme://user:password@` or `scheme://:password@` (Redis's own form); the user stays visible.
_USERINFO = re.compile(r"(\w+://[^\s/@:]*:)[^\s@]*@")


def redact(text: str) -> str:
    """`scheme://user:password@` -> `scheme://user:***@`: a URL from a Secret may be echoed in
    an error (redis-py's parse errors do), and errors go to status, Events, logs and the terminal."""
    return _USERINFO.sub(r"\1***@", text)
