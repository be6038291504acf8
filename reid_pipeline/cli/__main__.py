"""`python -m reid_pipeline.cli`: the `reid` command (as `python -m reid_pipeline`)."""

import sys

from reid_pipeline.cli import entry

if __name__ == "__main__":
    sys.exit(entry())
