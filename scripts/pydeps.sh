#!/usr/bin/env bash
# Installs the Python packages the integration tests use into target/pydeps
# (the tests put it on PYTHONPATH), unless they are already there:
#   standardwebhooks: the reference Standard Webhooks verifier (it/signing.rs);
#   schemathesis: the OpenAPI fuzzer run against a live bigpipe (it/openapi.rs);
#     4.32.5 runs on python 3.9+ (checked with 3.11);
#   selenium: drives Debian's headless Chromium through chromedriver (it/dashboard.rs);
#     4.51.0 (4.52.0 needs a certifi newer than the registry has).
# Needs python3 with pip, and PyPI the first time. Pinned, so every machine
# runs the same code.
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${IT_PYDEPS:-target/pydeps}"
# "requirement import-name" pairs.
wants=(
  "standardwebhooks==1.1.0 standardwebhooks"
  "schemathesis==4.32.5 schemathesis"
  "selenium==4.51.0 selenium"
)
if ! command -v python3 >/dev/null 2>&1; then
  echo "pydeps: python3 is required by the integration tests (it/signing.rs, it/openapi.rs, it/dashboard.rs)" >&2
  exit 1
fi
mkdir -p "$dir"
for pair in "${wants[@]}"; do
  read -r want module <<<"$pair"
  if PYTHONPATH="$dir" python3 -c "import $module" >/dev/null 2>&1; then
    continue
  fi
  python3 -m pip install --quiet --disable-pip-version-check --target "$dir" "$want"
  PYTHONPATH="$dir" python3 -c "import $module"
  echo "pydeps: installed $want into $dir"
done
