#!/usr/bin/env bash
# Installs the Python packages the integration tests use into target/pydeps
# (the tests put it on PYTHONPATH), unless they are already there:
#   standardwebhooks: the reference Standard Webhooks verifier (it/signing.rs).
# Needs python3 with pip, and PyPI the first time. Pinned, so every machine
# verifies with the same code.
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${IT_PYDEPS:-target/pydeps}"
want="standardwebhooks==1.1.0"
if ! command -v python3 >/dev/null 2>&1; then
  echo "pydeps: python3 is required by the integration tests (it/signing.rs)" >&2
  exit 1
fi
if PYTHONPATH="$dir" python3 -c 'import standardwebhooks' >/dev/null 2>&1; then
  exit 0
fi
mkdir -p "$dir"
python3 -m pip install --quiet --disable-pip-version-check --target "$dir" "$want"
PYTHONPATH="$dir" python3 -c 'import standardwebhooks'
echo "pydeps: installed $want into $dir"
