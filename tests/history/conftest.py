"""History test setup: the helper modules beside these tests (history_support) and the serve tests'
(serve_support: an RDAP GET) become importable."""

from __future__ import annotations

import sys
from pathlib import Path

for folder in (Path(__file__).parent, Path(__file__).parents[1] / "serve"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
