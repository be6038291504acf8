"""`python -m reid_pipeline` runs the CLI (the same as the `reid` script)."""

import sys

from reid_pipeline.cli import entry

if __name__ == "__main__":
    sys.exit(entry())
