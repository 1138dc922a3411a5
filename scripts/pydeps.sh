#!/usr/bin/env bash
# Installs the Python packages the integration tests use into target/pydeps
# (the tests put it on PYTHONPATH), unless they are already there:
#   standardwebhooks: the reference Standard Webhooks verifier (it/signing.rs);
#   selenium: drives Debian's headless Chromium through chromedriver (it/dashboard.rs).
# Needs python3 with pip, and PyPI the first time. Pinned, so every machine
# runs the same code.
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${IT_PYDEPS:-target/pydeps}"
# package==version:module, one per test dependency.
wants=(
  "standardwebhooks==1.1.0:standardwebhooks"
  "selenium==4.51.0:selenium"
)
if ! command -v python3 >/dev/null 2>&1; then
  echo "pydeps: python3 is required by the integration tests (it/signing.rs, it/dashboard.rs)" >&2
  exit 1
fi
missing=()
for w in "${wants[@]}"; do
  if ! PYTHONPATH="$dir" python3 -c "import ${w##*:}" >/dev/null 2>&1; then
    missing+=("${w%%:*}")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
mkdir -p "$dir"
python3 -m pip install --quiet --disable-pip-version-check --target "$dir" "${missing[@]}"
for w in "${wants[@]}"; do
  PYTHONPATH="$dir" python3 -c "import ${w##*:}"
done
echo "pydeps: installed ${missing[*]} into $dir"
