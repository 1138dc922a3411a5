#!/usr/bin/env bash
# Runs the integration suite (it/) against a real local Kafka: starts it,
# runs the tests, stops it again whatever the outcome. A Kafka that cannot be
# started fails the run; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Python packages of it/signing.rs (standardwebhooks) and it/dashboard.rs (selenium),
# installed once into target/pydeps; before Kafka starts, so a missing python3 or pip fails fast.
scripts/pydeps.sh

# openssl makes the certificates of the broker's secured listeners (it/security.rs)
if ! command -v openssl >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq openssl >/dev/null
  else
    echo "it.sh: openssl is missing (it makes the test broker's certificates): install it" >&2
    exit 1
  fi
fi

# Debian's Prometheus (prometheus + promtool 2.42) for it/metrics.rs, which scrapes a live
# bigpipe and checks the shipped rules; the test fails (never skips) without it.
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  else
    echo "it.sh: prometheus/promtool are missing (it/metrics.rs needs them): apt-get install prometheus" >&2
    exit 1
  fi
fi

# Debian's Chromium and its chromedriver for it/dashboard.rs, which drives the live page in a
# headless browser (selenium, from scripts/pydeps.sh); the test fails (never skips) without them.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "it.sh: chromium/chromedriver are missing (it/dashboard.rs needs them): apt-get install chromium chromium-driver" >&2
    exit 1
  fi
fi

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
# the secured listeners and their certificates, as `kafka.sh up` wrote them (it/security.rs
# fails, saying how to start the broker, when they are not there)
secure_env="${BIGPIPE_KAFKA_RUN:-.kafka}/secure/it.env"
if [ -z "${IT_KAFKA_SECURE_DIR:-}" ] && [ -f "$secure_env" ]; then
  set -a
  . "$secure_env"
  set +a
fi
cargo test --test it -- "$@"
