#!/usr/bin/env bash
# The compose deployment, run for real on this machine and left as found: see deploy/smoke.py.
#   deploy/smoke.sh [--profile shared|s3] [--cold] [--base local] [--json numbers.json] [--remove-images]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/reid" --help >/dev/null  # creates or refreshes the project's .venv (clips are made with it)
exec "$root/.venv/bin/python" "$root/deploy/smoke.py" "$@"
