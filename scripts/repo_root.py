"""``import repo_root`` first in a script: puts the repository root on ``sys.path``, so that ``python
scripts/X.py`` can import the research package (``research/``: repository-only, not installed)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
