"""``uv run python -m example``: start everything and submit one run of every scenario."""

from __future__ import annotations

import sys

from example.runner.main import main

if __name__ == "__main__":
    sys.exit(main())
