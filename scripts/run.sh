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
      BIGPIPE_KAFKA_PORT="$port" scripts/kafka.sh up
      ;;
    *)
      echo "run.sh: Kafka at $first does not answer (bigpipe starts anyway and waits for it)" >&2
      ;;
  esac
fi

# The shipped configs carry no ACL secret: they read ACL_SYSTEM_1_SECRET and
# ACL_SYSTEM_2_SECRET. Generate a random one per caller on first use, kept in
# run/ (not in git), and export them unless they are already set.
mkdir -p run
for n in 1 2; do
  file="run/system-$n.secret"
  if [ ! -s "$file" ]; then
    (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > "$file")
    echo "run.sh: generated a secret for ACL system-$n in $file" >&2
  fi
  var="ACL_SYSTEM_${n}_SECRET"
  if [ -z "${!var:-}" ]; then
    export "$var=$(cat "$file")"
  fi
done
echo "run.sh: ACL secrets: system-1 in run/system-1.secret, system-2 in run/system-2.secret (README, Quick start, has a curl that reads it)" >&2

# glibc keeps freed memory per thread arena; two arenas keep RSS near what is
# really in use after bursts of calls (see README, Benchmarks).
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
exec cargo run --release -- --config "$config"
