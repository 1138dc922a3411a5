#!/usr/bin/env bash
# bench/drain-memory.sh - peak memory (VmHWM), calls/s and CPU of bigpipe draining a backlog.
#
# One consumer entry (rateLimit 1000000, concurrency/hostConcurrency $DRAIN_CONCURRENCY, default
# read-ahead window) drains $DRAIN_RECORDS calls preloaded into topic $DRAIN_TOPIC (snappy,
# $DRAIN_PARTITIONS partitions, recreated each run) into examples/bench_target. When the target
# has counted every call, bigpipe's VmHWM, utime+stime are read from /proc and printed as one
# JSON line (also written to $DRAIN_OUT/result.json).
#
# Needs a running broker at $DRAIN_BOOTSTRAP (e.g. `BIGPIPE_KAFKA_PORT=9592
# BIGPIPE_KAFKA_RUN=$PWD/.kafka-mem BIGPIPE_KAFKA_SECURE=0 scripts/kafka.sh up`) and the release
# build (`cargo build --release --bin bigpipe --example bench_target`, or DRAIN_BUILD=1).
# Every wait is bounded; bigpipe and the target are stopped on exit, whatever happened.
#
# Environment (defaults in brackets):
#   DRAIN_BOOTSTRAP [127.0.0.1:9592]  DRAIN_RECORDS [200000]  DRAIN_PARTITIONS [6]
#   DRAIN_TOPIC [mem-drain]  DRAIN_CONCURRENCY [256]  DRAIN_DATA_BYTES [100]
#   DRAIN_TARGET_PORT [19591]  DRAIN_BIGPIPE_PORT [19592]  DRAIN_ADMIN_PORT [19593]
#   DRAIN_TIMEOUT [300] seconds for the drain   DRAIN_OUT [bench-out/drain-memory]
#   DRAIN_BIN [target/release/bigpipe]  DRAIN_PRELOAD [1] (0: reuse the topic as it is; the
#   consumer group is new each run, so it starts from the earliest offset either way)
#   DRAIN_WRAP: a command put before bigpipe (e.g. "heaptrack -o FILE"); /proc figures are then
#   those of the wrapper's child, found by name.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
BOOTSTRAP=${DRAIN_BOOTSTRAP:-127.0.0.1:9592}
RECORDS=${DRAIN_RECORDS:-200000}
PARTITIONS=${DRAIN_PARTITIONS:-6}
TOPIC=${DRAIN_TOPIC:-mem-drain}
CONCURRENCY=${DRAIN_CONCURRENCY:-256}
DATA_BYTES=${DRAIN_DATA_BYTES:-100}
TARGET_PORT=${DRAIN_TARGET_PORT:-19591}
BP_PORT=${DRAIN_BIGPIPE_PORT:-19592}
ADMIN_PORT=${DRAIN_ADMIN_PORT:-19593}
TIMEOUT=${DRAIN_TIMEOUT:-300}
OUT=${DRAIN_OUT:-$REPO/bench-out/drain-memory}
BIN=${DRAIN_BIN:-$REPO/target/release/bigpipe}
TARGET_BIN=$REPO/target/release/examples/bench_target
TOOL=(python3 "$REPO/bench/tool.py")
TG_URL=http://127.0.0.1:$TARGET_PORT
export PYTHONDONTWRITEBYTECODE=1

log() { printf '[drain-memory %s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
  log "FAILED: $*"
  exit 1
}

BP_PID="" TG_PID="" MEASURED=""
stop_pid() { # stop_pid PID SECONDS: TERM, bounded wait, KILL
  local pid=$1 limit=$2 i
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < limit * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  # Under DRAIN_WRAP, bigpipe itself first: the wrapper then ends with it.
  [[ $MEASURED != "$BP_PID" ]] && stop_pid "$MEASURED" 30
  stop_pid "$BP_PID" 30
  stop_pid "$TG_PID" 5
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
kafka_tool() { # kafka_tool LIMIT LOG ARGS...
  local limit=$1 out=$2
  shift 2
  timeout -k 5 "$limit" scripts/kafka.sh tool "$@" >"$out" 2>&1 || {
    tail -n 20 "$out" >&2
    die "kafka tool $1 failed (see $out)"
  }
}

mkdir -p "$OUT"
if [[ ${DRAIN_BUILD:-0} == 1 ]]; then
  log "cargo build --release"
  cargo build --release --bin bigpipe --example bench_target >"$OUT/build.log" 2>&1 || die "build failed (see $OUT/build.log)"
fi
[[ -x $BIN && -x $TARGET_BIN ]] || die "release build missing: cargo build --release --bin bigpipe --example bench_target"
for p in "$TARGET_PORT" "$BP_PORT" "$ADMIN_PORT"; do
  port_in_use "$p" && die "port $p is in use"
done

if [[ ${DRAIN_PRELOAD:-1} == 1 ]]; then
  log "recreating $TOPIC ($PARTITIONS partitions, snappy) on $BOOTSTRAP"
  timeout -k 5 60 scripts/kafka.sh tool topics --bootstrap-server "$BOOTSTRAP" --delete --topic "$TOPIC" \
    >"$OUT/topic-delete.log" 2>&1 || true
  # The deletion is asynchronous: retry the creation until the old topic is gone.
  created=0
  for _ in $(seq 1 30); do
    if timeout -k 5 60 scripts/kafka.sh tool topics --bootstrap-server "$BOOTSTRAP" --create --topic "$TOPIC" \
      --partitions "$PARTITIONS" --config compression.type=snappy >"$OUT/topic-create.log" 2>&1; then
      created=1
      break
    fi
    sleep 1
  done
  [[ $created == 1 ]] || die "could not create $TOPIC (see $OUT/topic-create.log)"
  record_bytes=$("${TOOL[@]}" payload "$OUT/payload.txt" --lines 1000 --data-bytes "$DATA_BYTES" \
    --url "$TG_URL/drain" --topic "$TOPIC")
  log "preloading $RECORDS records of $record_bytes bytes"
  kafka_tool 600 "$OUT/preload.log" producer-perf --bootstrap-server "$BOOTSTRAP" --topic "$TOPIC" \
    --num-records "$RECORDS" --throughput -1 --payload-file "$OUT/payload.txt" \
    --command-property acks=all compression.type=snappy linger.ms=5 batch.size=1048576
fi

CONFIG=$OUT/bigpipe.toml
GROUP="mem-drain-$(date +%s)"
cat >"$CONFIG" <<EOF
# generated by bench/drain-memory.sh
[log]
level = "warn"

[kafka]
bootstrap.servers = "$BOOTSTRAP"
client.id = "bigpipe-drain-memory"

[[kafka.topics]]
name = "$TOPIC"
partitions = $PARTITIONS

[[kafka.consumer.list]]
topic = "$TOPIC"
groupId = "$GROUP"
rateLimit = 1000000
concurrency = $CONCURRENCY
hostConcurrency = $CONCURRENCY

[http.server]
host = "127.0.0.1"
port = $BP_PORT

[http.admin]
port = $ADMIN_PORT

[delivery]
allow = ["127.0.0.1:$TARGET_PORT"]

[shutdown]
grace.ms = 10000
EOF

"$TARGET_BIN" serve --port "$TARGET_PORT" --workers 1 >"$OUT/target.json" 2>"$OUT/target.log" &
TG_PID=$!
"${TOOL[@]}" wait-http "$TG_URL/healthz" 200 20 || die "bench_target did not start"

log "starting bigpipe (group $GROUP)"
# shellcheck disable=SC2086 # DRAIN_WRAP is a command line on purpose
${DRAIN_WRAP:-} "$BIN" --config "$CONFIG" >"$OUT/bigpipe.log" 2>&1 &
BP_PID=$!
MEASURED=$BP_PID
if [[ -n ${DRAIN_WRAP:-} ]]; then
  for _ in $(seq 1 100); do
    MEASURED=$(pgrep -P "$BP_PID" -x bigpipe || true)
    [[ -n $MEASURED ]] && break
    sleep 0.1
  done
  [[ -n $MEASURED ]] || MEASURED=$BP_PID
fi

drained=1
"${TOOL[@]}" wait "$TG_URL/metrics" path:count ge "$RECORDS" "$TIMEOUT" >/dev/null || drained=0
proc=$("${TOOL[@]}" proc "$MEASURED")
metrics=$("${TOOL[@]}" get "$TG_URL/metrics")
# The work tree's commit: the binary's only when DRAIN_BIN is the default build of it.
rev="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo +dirty)"
python3 - "$proc" "$metrics" "$RECORDS" "$drained" "$rev" "$BIN" >"$OUT/result.json" <<'EOF'
import json, sys
proc, m, records, drained = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
rev, binary = sys.argv[5], sys.argv[6]
span = (m["last_us"] - (m["first_us"] or m["last_us"])) / 1e6
print(json.dumps({
    "worktree": rev, "bin": binary, "drained": drained, "delivered": m["count"], "records": records,
    "vmhwm_mib": round(proc["hwm_kb"] / 1024, 1), "vmrss_mib": round(proc["rss_kb"] / 1024, 1),
    "calls_per_s": round(m["count"] / span) if span > 0 else None,
    "cpu_s": round(proc["cpu_s"], 2), "cpu_s_per_10k": round(proc["cpu_s"] / max(m["count"], 1) * 1e4, 3),
}))
EOF
cat "$OUT/result.json"
[[ $drained == 1 ]] || die "not drained within $TIMEOUT s (see $OUT/bigpipe.log)"
