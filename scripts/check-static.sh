#!/usr/bin/env bash
# Builds the release binary for x86_64-unknown-linux-musl and checks that it
# is fully static and that nothing in its dependency graph compiles C (no `cc`,
# `cmake`, `pkg-config` or `bindgen`, which every C-building `-sys` crate uses),
# so it builds on a machine without a C toolchain. Exits non-zero otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl

rustup target add "$target" >/dev/null 2>&1 || true
c_crates=$(cargo tree --target "$target" -e normal,build --prefix none 2>/dev/null |
  grep -E '^(cc|cmake|pkg-config|bindgen) v' | sort -u || true)
if [ -n "$c_crates" ]; then
  echo "check-static: crates that compile C are in the graph:" >&2
  echo "$c_crates" >&2
  exit 1
fi
cargo build --release --target "$target"
bin=target/$target/release/bigpipe
desc=$(file "$bin")
echo "$desc"
case "$desc" in
  *"statically linked"* | *"static-pie linked"*) ;;
  *) echo "check-static: $bin is not statically linked" >&2; exit 1 ;;
esac
"$bin" --version
echo "check-static: ok ($(du -h "$bin" | cut -f1))"
