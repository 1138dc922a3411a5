#!/usr/bin/env bash
# Runs bigpipe with the given config. When the configured Kafka does not
# answer and it is on this machine, the local Kafka is started first.
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-conf/bigpipe.toml}"

bootstrap="${BIGPIPE_KAFKA_BOOTSTRAP_SERVERS:-}"
if [ -z "$bootstrap" ]; then
  # First `bootstrap.servers` value of the config (TOML `bootstrap.servers = "..."`
  # or the Go JSON `"kafka.bootstrap.servers": "..."`).
  bootstrap=$(grep -Eo 'bootstrap\.servers"?[[:space:]]*[:=][[:space:]]*"[^"]*"' "$config" | sed -n 1p | sed -E 's/.*"([^"]*)"$/\1/' || true)
fi
first="${bootstrap%%,*}"
first="${first:-127.0.0.1:9092}"
host="${first%:*}"
port="${first##*:}"

if ! (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
  case "$host" in
    127.*|localhost)
      echo "run.sh: no Kafka at $first, starting the local one" >&2
      # Its TLS/SASL test listeners need openssl for their certificates; bigpipe's own
      # config uses the plaintext port, so without openssl the broker starts without them.
      # Passed to kafka.sh alone: bigpipe would name a BIGPIPE_* variable that is no
      # setting in a start-up warning.
      secure="${BIGPIPE_KAFKA_SECURE:-}"
      if [ -z "$secure" ] && ! command -v openssl >/dev/null 2>&1; then
        echo "run.sh: openssl is missing, so the local Kafka starts without its TLS/SASL test listeners" >&2
        secure=0
      fi
      BIGPIPE_KAFKA_SECURE="$secure" BIGPIPE_KAFKA_PORT="$port" scripts/kafka.sh up
      ;;
    *)
      echo "run.sh: Kafka at $first does not answer (bigpipe starts anyway and waits for it)" >&2
      ;;
  esac
fi

# The shipped configs read their ACL secrets from the environment: generate
# them on first use (run/system-N.secret) and export them.
. scripts/demo-secrets.sh
echo "run.sh: ACL secrets: system-1 in run/system-1.secret, system-2 in run/system-2.secret (the README's Quick start has a curl that reads it)" >&2

# glibc keeps freed memory per thread arena; two arenas keep RSS near what is
# really in use after bursts of calls (see README, Benchmarks).
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
exec cargo run --release -- --config "$config"
