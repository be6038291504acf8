"""`python -m reid_pipeline` runs the CLI (the same as the `reid` script). Started this
way, worker processes (face embedding) do not import the CLI again when they start."""

import sys

from reid_pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main())
