#!/usr/bin/env bash
# scripts/kafka-matrix.sh - runs the integration suite (scripts/it.sh, i.e. `make it`) against
# several Kafka versions one after another and prints a summary table.
#
#   scripts/kafka-matrix.sh [VERSION...] [-- cargo test filter/args]
#
# Versions: the arguments, else BIGPIPE_KAFKA_MATRIX, else "4.3.1 3.9.1 2.8.2" (2.x runs in
# ZooKeeper mode, see scripts/kafka.sh). Each version gets its own broker, started and stopped
# by scripts/it.sh on BIGPIPE_KAFKA_PORT (default 9092), so no broker may answer there before;
# the tests' console tools stay at one version (BIGPIPE_KAFKA_TOOLS_VERSION, default 4.3.1)
# because the tests use that version's flags. Logs: target/kafka-matrix/<version>.log.
# Exit status 0 only if every version passed.
set -euo pipefail
cd "$(dirname "$0")/.."

versions=()
while (($# > 0)); do
  if [[ $1 == -- ]]; then
    shift
    break
  fi
  versions+=("$1")
  shift
done
if ((${#versions[@]} == 0)); then
  read -r -a versions <<<"${BIGPIPE_KAFKA_MATRIX:-4.3.1 3.9.1 2.8.2}"
fi
port=${BIGPIPE_KAFKA_PORT:-9092}
export BIGPIPE_KAFKA_TOOLS_VERSION=${BIGPIPE_KAFKA_TOOLS_VERSION:-4.3.1}
export IT_KAFKA_BOOTSTRAP=127.0.0.1:$port
out=target/kafka-matrix
mkdir -p "$out"

log() { printf '[kafka-matrix] %s\n' "$*" >&2; }

# A broker already answering would be tested instead of the version asked for
# (scripts/it.sh reuses a running one), so refuse rather than mislabel a result.
if scripts/kafka.sh status >/dev/null 2>&1; then
  log "error: a broker already answers on 127.0.0.1:$port; stop it (scripts/kafka.sh down) or set BIGPIPE_KAFKA_PORT"
  exit 1
fi

# summary_counts LOG: "passed failed ignored" summed over cargo's "test result:" lines
summary_counts() {
  awk '/^test result:/ {
         for (i = 1; i <= NF; i++) {
           if ($(i + 1) ~ /^passed/) p += $i
           if ($(i + 1) ~ /^failed/) f += $i
           if ($(i + 1) ~ /^ignored/) g += $i
         }
         seen = 1
       }
       END { if (seen) print p + 0, f + 0, g + 0; else print "- - -" }' "$1"
}

rows=()
rc=0
for v in "${versions[@]}"; do
  log "Kafka $v: scripts/it.sh $* (log: $out/$v.log)"
  t0=$SECONDS
  status=passed
  # Without secured listeners (before Kafka 3.5, or ZooKeeper mode: scripts/kafka.sh
  # secure-enabled) the TLS/SASL tests cannot run; they are left out by name and the table
  # says so, rather than counted as failures or passes.
  skip=()
  if ! BIGPIPE_KAFKA_VERSION=$v scripts/kafka.sh secure-enabled 2>/dev/null; then
    skip=(--skip security:: --skip kafka_tls::)
    status="passed (no TLS/SASL)"
  fi
  if ! BIGPIPE_KAFKA_VERSION=$v scripts/it.sh "$@" "${skip[@]}" >"$out/$v.log" 2>&1; then
    status=FAILED
    rc=1
  fi
  secs=$((SECONDS - t0))
  read -r passed failed ignored < <(summary_counts "$out/$v.log")
  # a run that passed but ran no test at all is no pass
  if [[ $status == passed* && ($passed == - || $passed == 0) ]]; then
    status="FAILED (no tests ran)"
    rc=1
  fi
  # the broker it.sh started must be gone before the next version takes the port
  if scripts/kafka.sh status >/dev/null 2>&1; then
    log "error: a broker still answers on 127.0.0.1:$port after the Kafka $v run"
    exit 1
  fi
  rows+=("$(printf '| %-8s | %-21s | %6s | %6s | %7s | %7s |' "$v" "$status" "$passed" "$failed" "$ignored" "$secs")")
  log "Kafka $v: $status ($passed passed, $failed failed) in ${secs} s"
done

echo
echo "Integration suite per Kafka version (tools $BIGPIPE_KAFKA_TOOLS_VERSION, $(date -u '+%F %H:%M UTC'))"
printf '| %-8s | %-21s | %6s | %6s | %7s | %7s |\n' version result passed failed ignored seconds
printf '|%s|%s|%s|%s|%s|%s|\n' ---------- ----------------------- -------- -------- --------- ---------
printf '%s\n' "${rows[@]}"
exit "$rc"
