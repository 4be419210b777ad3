"""``python -m research collect|study|needle`` (from the repository root)."""

from research.cli import main

raise SystemExit(main())
