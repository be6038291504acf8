#!/usr/bin/env bash
# Wheels for the project image, made on the host from constraints.txt, into deploy/wheelhouse/.
# The image then installs with `pip install --no-index --find-links` (see Dockerfile): the build
# needs neither PyPI nor the host's certificates, and nothing of them enters a layer.
#   deploy/wheelhouse.sh [VARIANT]      # VARIANT: insightface (default) or gpu
# It also holds moto[server]'s wheels, for the S3 service of the compose `s3` profile
# (deploy/s3.Dockerfile); the project image installs only what it needs from it.
# The wheels must fit the image's Python (CPython 3.11, glibc x86_64): the default builder is
# the project's .venv (REID_WHEEL_PYTHON to choose another 3.11 interpreter).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
variant="${1:-insightface}"
python="${REID_WHEEL_PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || { echo "wheelhouse: no $python (run ./reid --help once to create .venv)" >&2; exit 1; }
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "wheelhouse: $python is not Python 3.11, the image's" >&2; exit 1; }
out="$root/deploy/wheelhouse"
mkdir -p "$out"
had_build=0; [ -e "$root/build" ] && had_build=1
# setuptools >= 70.1 (builds wheels without the `wheel` package): the image installs the project
# itself from source with --no-build-isolation, offline
"$python" -m pip wheel --quiet --wheel-dir "$out" -c "$root/constraints.txt" \
  "$root[$variant]" "dagster-docker>=0.29" "setuptools>=70.1,<81" "moto[server]>=5.0"
# the project is installed from the build context, never from a stale wheel
rm -f "$out"/reid_pipeline-*.whl
[ "$had_build" = 1 ] || rm -rf "$root/build"  # setuptools' leftovers from building it
echo "wheelhouse: $(ls "$out"/*.whl | wc -l) wheels, $(du -sh "$out" | cut -f1) in $out"
