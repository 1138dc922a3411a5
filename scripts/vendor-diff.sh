#!/usr/bin/env bash
# scripts/vendor-diff.sh - show how vendor/rskafka differs from the rskafka 0.6.0 release.
#
# Downloads the published crate from crates.io (cached under target/), unpacks it and prints a
# unified diff of the files bigpipe keeps (src/, Cargo.toml). `--check` exits non-zero when a
# changed file is not one of those vendor/rskafka/PATCHES.md lists, so the patch cannot grow
# unnoticed.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.6.0
CACHE=target/vendor-upstream
CRATE=$CACHE/rskafka-$VERSION.crate
UPSTREAM=$CACHE/rskafka-$VERSION
mkdir -p "$CACHE"
if [[ ! -d $UPSTREAM ]]; then
  curl -fsSL --retry 3 -o "$CRATE" "https://static.crates.io/crates/rskafka/rskafka-$VERSION.crate"
  tar -xzf "$CRATE" -C "$CACHE"
fi
changed=$({ diff -rq "$UPSTREAM/src" vendor/rskafka/src || true; } | sed -E 's/^Files [^ ]+ and ([^ ]+) differ$/\1/')
if [[ ${1:-} == --check ]]; then
  bad=0
  for f in $changed vendor/rskafka/Cargo.toml; do
    rel=${f#vendor/rskafka/}
    if ! grep -qF "\`$rel\`" vendor/rskafka/PATCHES.md; then
      echo "vendor-diff: $f differs from rskafka $VERSION but PATCHES.md does not list it" >&2
      bad=1
    fi
  done
  lines=$(diff -ru "$UPSTREAM/src" vendor/rskafka/src | grep -c '^[+-][^+-]' || true)
  echo "vendor-diff: $(wc -w <<<"$changed") source files changed, $lines lines added or removed"
  exit $bad
fi
diff -ru "$UPSTREAM/src" vendor/rskafka/src || true
diff -u "$UPSTREAM/Cargo.toml" vendor/rskafka/Cargo.toml || true
