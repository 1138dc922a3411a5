#!/usr/bin/env bash
# Runs the integration suite (it/) against a real local Kafka: starts it,
# runs the tests, stops it again whatever the outcome. A Kafka that cannot be
# started fails the run; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Python verifier of it/signing.rs (standardwebhooks), installed once into
# target/pydeps; before Kafka starts, so a missing python3 or pip fails fast.
scripts/pydeps.sh

started=0
if ! scripts/kafka.sh status >/dev/null 2>&1; then
  scripts/kafka.sh up
  started=1
fi
cleanup() {
  if [ "$started" = 1 ]; then scripts/kafka.sh down || true; fi
}
trap cleanup EXIT

# the broker kafka.sh runs (BIGPIPE_KAFKA_PORT), unless told otherwise
export IT_KAFKA_BOOTSTRAP="${IT_KAFKA_BOOTSTRAP:-127.0.0.1:${BIGPIPE_KAFKA_PORT:-9092}}"
cargo test --test it -- "$@"
