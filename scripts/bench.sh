#!/usr/bin/env bash
# scripts/bench.sh - bigpipe's benchmark (issue 5), in ONE run against a real
# local Kafka, with Kafka's own tools and a trivial actix-web endpoint as the
# same-run baselines. `make bench`; `make bench-smoke` (BENCH_SMOKE=1) runs the
# same steps with tiny sizes and exits non-zero when any step fails.
#
# Steps (each writes bench-out/raw/*.json; bench/report.py turns them into
# bench-out/report.json, bench-out/table.md and bench-out/chart.png):
#   0. cargo build --release of each build in BENCH_BUILDS (glibc, static musl) and of the
#      counting build, copied to bench-out/bin; examples/bench_target; wrk / matplotlib if missing
#   1. a private Kafka on 127.0.0.1:$BENCH_KAFKA_PORT (default 9492; run dir bench-out/kafka),
#      never the 9092 one the tests use; stopped again on exit, also on failure
#   2. baselines: ProducerPerformance (acks=all, snappy, linger 5 ms, bigpipe's record
#      bytes for 100 B and 1 KB data), ConsumerPerformance on those records,
#      EndToEndLatency (produce->consume, 100 B)
#   3. ingest: bigpipe idle, then wrk on bench_target's /mock (baseline: a trivial actix-web
#      route with as many workers as bigpipe) and on /rpc/call with "ack" default (queue)
#      and "kafka", for each data size; the queue is left to drain between cases; and
#      once, shorter, on bigpipe's own /rpc/server/mock; and once each with a fresh
#      idempotency key per call and with repeated keys
#   4. delivery: a backlog of $BENCH_DRAIN_RECORDS calls drained by a consumer entry with
#      no practical rate limit into examples/bench_target; then calls sent through
#      /rpc/call at half that rate with a send timestamp: acceptance->arrival latency
#   5. backlog: $BENCH_BACKLOG_RECORDS undelivered calls, consumer at a low rate; RSS
#   6. report (table on stdout, Markdown table, JSON, PNG chart from per-second samples)
#
# Loopback only; every loop and wait is bounded; a trap stops bigpipe, the
# target, the sampler, any load generator and Kafka.
#
# Knobs (environment), defaults in brackets (smoke values after the slash):
#   BENCH_SECONDS [10/1]         length of each wrk case and of the latency run
#   BENCH_IDLE_SECONDS [5/1]     idle sampling
#   BENCH_CONNECTIONS [32/4]     wrk connections;  BENCH_WRK_THREADS [1]
#   BENCH_SIZES ["100 1024"]     data sizes in bytes
#   BENCH_BATCH_CALLS [100/10]   calls per /rpc/calls request of the batch case (first build)
#   BENCH_PARTITIONS [3]         partitions of every bench topic
#   BENCH_DRAIN_RECORDS [200000/2000]      delivery backlog
#   BENCH_DELIVERY_CONCURRENCY [256/16]    consumer entry concurrency for drain and latency
#   BENCH_LAT_RATE [half the drain rate]   calls/s of the latency run
#   BENCH_LAT_CONNECTIONS [16/4]           sender connections
#   BENCH_BACKLOG_RECORDS [1000000/10000]  undelivered calls for the backlog RSS
#   BENCH_BACKLOG_RATE [50]      rateLimit of the backlog consumer entry
#   BENCH_BACKLOG_SECONDS [10/2] sampling with the backlog (plus BENCH_IDLE_SECONDS)
#   BENCH_DRAIN_TIMEOUT [300/60] longest wait for the delivery backlog to drain
#   BENCH_PP_CALIBRATE_RECORDS [100000/3000]  short ProducerPerformance run that sizes
#                                the real one to ~BENCH_SECONDS (smoke: the only run)
#   BENCH_E2E_RECORDS [2000/50]  EndToEndLatency round trips
#   BENCH_PP_MAX_BYTES [1500000000]  cap on the data one ProducerPerformance run writes
#   BENCH_KAFKA_PORT [9492]  BENCH_BIGPIPE_PORT [19486]  BENCH_BIGPIPE_ADMIN_PORT [19488]  BENCH_TARGET_PORT [19487]
#   BENCH_TARGET_WORKERS [nproc] actix workers of the target (bigpipe's default is one per core)
#   BENCH_OUT [bench-out]        output directory (git-ignored)
#   BENCH_BUILDS ["glibc musl"]  bigpipe builds measured side by side (also: glibc-system,
#                                musl-system, musl-dlmalloc)
#   BENCH_ALLOC_COUNTS [1]       also run the counting build (allocations per call)
#   BENCH_SKIP_BUILD=1           use the binaries already in $BENCH_OUT/bin
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

SMOKE=${BENCH_SMOKE:-0}
pick() { if [[ $SMOKE == 1 ]]; then echo "$2"; else echo "$1"; fi; }

DURATION=${BENCH_SECONDS:-$(pick 10 1)}
IDLE_SECONDS=${BENCH_IDLE_SECONDS:-$(pick 5 1)}
CONNECTIONS=${BENCH_CONNECTIONS:-$(pick 32 4)}
BATCH_CALLS=${BENCH_BATCH_CALLS:-$(pick 100 10)}
WRK_THREADS=${BENCH_WRK_THREADS:-1}
SIZES=${BENCH_SIZES:-100 1024}
PARTITIONS=${BENCH_PARTITIONS:-3}
DRAIN_RECORDS=${BENCH_DRAIN_RECORDS:-$(pick 200000 2000)}
DELIVERY_CONCURRENCY=${BENCH_DELIVERY_CONCURRENCY:-$(pick 256 16)}
LAT_RATE=${BENCH_LAT_RATE:-}
LAT_CONNECTIONS=${BENCH_LAT_CONNECTIONS:-$(pick 16 4)}
BACKLOG_RECORDS=${BENCH_BACKLOG_RECORDS:-$(pick 1000000 10000)}
BACKLOG_RATE=${BENCH_BACKLOG_RATE:-50}
BACKLOG_SECONDS=${BENCH_BACKLOG_SECONDS:-$(pick 10 2)}
E2E_RECORDS=${BENCH_E2E_RECORDS:-$(pick 2000 50)}
PP_CALIBRATE=${BENCH_PP_CALIBRATE_RECORDS:-$(pick 100000 3000)}
PP_MAX_BYTES=${BENCH_PP_MAX_BYTES:-1500000000}
DRAIN_TIMEOUT=${BENCH_DRAIN_TIMEOUT:-$(pick 300 60)}
KAFKA_PORT=${BENCH_KAFKA_PORT:-9492}
BIGPIPE_PORT=${BENCH_BIGPIPE_PORT:-19486}
BIGPIPE_ADMIN_PORT=${BENCH_BIGPIPE_ADMIN_PORT:-19488}
TARGET_PORT=${BENCH_TARGET_PORT:-19487}
TARGET_WORKERS=${BENCH_TARGET_WORKERS:-$(nproc)}
OUT=${BENCH_OUT:-$REPO/bench-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RAW=$OUT/raw
LOGS=$OUT/logs

MUSL_TARGET=x86_64-unknown-linux-musl
# The builds measured side by side (issue 12): the glibc one and the static musl one users
# deploy on bare hosts, both on rusty_alloc; `glibc-system` and `musl-system` (the platform's
# malloc) can be added for comparison.
BUILDS=${BENCH_BUILDS:-glibc musl}
FIRST_BUILD=${BUILDS%% *}
# The counting build (alloc-stats: glibc + counters) runs the queue ingest cases and the drain
# once more, for allocations per call; BENCH_ALLOC_COUNTS=0 leaves it out.
RUN_BUILDS=$BUILDS
[[ ${BENCH_ALLOC_COUNTS:-1} == 1 ]] && RUN_BUILDS="$BUILDS allocs"
BIN=""
TARGET_BIN=$REPO/target/release/examples/bench_target
BP_URL=http://127.0.0.1:$BIGPIPE_PORT
# /stats is on the admin listener (http.admin.port), not the public one.
BP_ADMIN_URL=http://127.0.0.1:$BIGPIPE_ADMIN_PORT
TG_URL=http://127.0.0.1:$TARGET_PORT
BOOTSTRAP=127.0.0.1:$KAFKA_PORT
TOOL=(python3 "$REPO/bench/tool.py")
export PYTHONDONTWRITEBYTECODE=1 # no bench/__pycache__ in the work tree

# The private broker: own port, own run dir; never Docker.
export BIGPIPE_KAFKA_PORT=$KAFKA_PORT BIGPIPE_KAFKA_RUN=$OUT/kafka
# the measured broker as before the secured listeners: no authorizer, no TLS/SASL ports
export BIGPIPE_KAFKA_SECURE=0
unset BIGPIPE_KAFKA_DOCKER

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
  log "FAILED: $*"
  exit 1
}
phase() {
  echo "$1" >"$OUT/phase"
  log "== $1"
}

# ------------------------------------------------------------- lifecycle --

BP_PID="" TG_PID="" SAMPLER_PID="" CHILD_PID="" KAFKA_STARTED=0

# stop_pid PID SECONDS: TERM, wait (bounded), KILL; reaps it when it is our child.
stop_pid() {
  local pid=$1 limit=$2 i
  [[ -n $pid ]] || return 0
  kill -0 "$pid" 2>/dev/null || {
    wait "$pid" 2>/dev/null || true
    return 0
  }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < limit * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid did not stop in ${limit}s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  touch "$OUT/sampler.stop"
  stop_pid "$CHILD_PID" 5
  stop_pid "$BP_PID" 15
  stop_pid "$TG_PID" 5
  stop_pid "$SAMPLER_PID" 5
  rm -f "$OUT/bigpipe.pid"
  if [[ $KAFKA_STARTED == 1 ]]; then
    scripts/kafka.sh down >"$LOGS/kafka-down.log" 2>&1 || log "kafka down failed (see $LOGS/kafka-down.log)"
  fi
  if [[ $rc != 0 ]]; then
    log "bench failed (exit $rc); logs in $LOGS"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# in_bg LIMIT CMD...: runs CMD in the background under `timeout` (so traps fire at once
# and a hung tool cannot hang the bench) and waits for it; returns its exit code.
in_bg() {
  local limit=$1 rc=0
  shift
  timeout -k 5 "$limit" "$@" &
  CHILD_PID=$!
  wait "$CHILD_PID" || rc=$?
  CHILD_PID=""
  return "$rc"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

kafka_tool() { # kafka_tool LIMIT OUTFILE ARGS... (output to OUTFILE, fails loudly)
  local limit=$1 out=$2
  shift 2
  if ! in_bg "$limit" scripts/kafka.sh tool "$@" >"$out" 2>&1; then
    tail -n 20 "$out" >&2
    die "kafka tool $1 failed (output in $out)"
  fi
}

# measured_tool NAME LIMIT ARGS...: kafka tool under tool.py measure (CPU, max RSS)
measured_tool() {
  local name=$1 limit=$2
  shift 2
  if ! in_bg "$limit" "${TOOL[@]}" measure "$RAW/$name.proc.json" -- scripts/kafka.sh tool "$@" \
    >"$LOGS/$name.txt" 2>&1; then
    tail -n 20 "$LOGS/$name.txt" >&2
    die "$name failed (output in $LOGS/$name.txt)"
  fi
}

proc_json() { "${TOOL[@]}" proc "$1"; }

# ---------------------------------------------------------------- config --

lat_topics() { # one latency topic per build, so no build's group sees another's calls
  local b
  for b in $RUN_BUILDS; do printf '\n[[kafka.topics]]\nname = "bench-lat-%s"\npartitions = %s\n' "$b" "$PARTITIONS"; done
}
lat_acls() {
  local b
  for b in $RUN_BUILDS; do
    printf '\n[[kafka.producer.acl]]\nname = "bench-lat-%s"\nsecret = "bench-secret"\ntopic = "bench-lat-%s"\n' "$b" "$b"
  done
}

# write_config NAME [CONSUMER_TOML]: bigpipe config for this bench (defaults otherwise)
write_config() {
  local name=$1 consumers=${2:-}
  local file=$OUT/bigpipe-$name.toml
  cat >"$file" <<EOF
# generated by scripts/bench.sh ($name); every key not set here has its default
[log]
level = "info"

[kafka]
bootstrap.servers = "$BOOTSTRAP"
client.id = "bigpipe-bench"

[[kafka.topics]]
name = "bench-ingest"
partitions = $PARTITIONS

$(lat_topics)

[[kafka.topics]]
name = "bench-drain"
partitions = $PARTITIONS

[[kafka.topics]]
name = "bench-backlog"
partitions = $PARTITIONS

[[kafka.producer.acl]]
name = "bench"
secret = "bench-secret"
topic = "bench-ingest"

$(lat_acls)
$consumers
[http.server]
host = "127.0.0.1"
port = $BIGPIPE_PORT

[delivery]
# The bench target and bigpipe's own mock listen on loopback, which is refused unless allowed.
allow = ["127.0.0.1:$TARGET_PORT", "127.0.0.1:$BIGPIPE_PORT"]

[http.admin]
port = $BIGPIPE_ADMIN_PORT

[shutdown]
grace.ms = 10000
EOF
  echo "$file"
}

consumer_entry() { # consumer_entry TOPIC GROUP RATE CONCURRENCY
  # One target host here, so its cap (default: half of concurrency) is the entry's.
  cat <<EOF

[[kafka.consumer.list]]
topic = "$1"
groupId = "$2"
rateLimit = $3
concurrency = $4
hostConcurrency = $4
EOF
}

start_bigpipe() { # start_bigpipe NAME CONFIG
  local name=$1 config=$2
  port_in_use "$BIGPIPE_PORT" && die "port $BIGPIPE_PORT is in use (BENCH_BIGPIPE_PORT)"
  port_in_use "$BIGPIPE_ADMIN_PORT" && die "port $BIGPIPE_ADMIN_PORT is in use (BENCH_BIGPIPE_ADMIN_PORT)"
  "$BIN" --config "$config" >"$LOGS/bigpipe-$name.log" 2>&1 &
  BP_PID=$!
  echo "$BP_PID" >"$OUT/bigpipe.pid"
  if ! "${TOOL[@]}" wait-http "$BP_URL/readyz" 200 60; then
    tail -n 20 "$LOGS/bigpipe-$name.log" >&2
    die "bigpipe ($name) not ready within 60 s"
  fi
  log "bigpipe ($name) ready, pid $BP_PID"
}

stop_bigpipe() { # stop_bigpipe NAME: SIGTERM, bounded wait; notes a non-zero exit
  local name=$1 rc=0 i
  rm -f "$OUT/bigpipe.pid"
  [[ -n $BP_PID ]] || return 0
  kill -TERM "$BP_PID" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do
    kill -0 "$BP_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$BP_PID" 2>/dev/null; then
    log "bigpipe ($name) still running 20 s after SIGTERM; SIGKILL"
    kill -KILL "$BP_PID" 2>/dev/null || true
    echo "\"$name: no exit 20 s after SIGTERM\"" >>"$RAW/anomalies.jsonl"
  fi
  wait "$BP_PID" || rc=$?
  BP_PID=""
  if [[ $rc != 0 ]]; then
    log "bigpipe ($name) exited with $rc after SIGTERM"
    echo "\"$name: exit code $rc after SIGTERM\"" >>"$RAW/anomalies.jsonl"
  fi
}

# -------------------------------------------------------------- 0. setup --

rm -rf "$RAW" "$LOGS" "$OUT/samples.jsonl" "$OUT/sampler.stop" "$OUT/phase" "$OUT/bigpipe.pid"
mkdir -p "$RAW" "$LOGS"
: >"$RAW/anomalies.jsonl"
T_START=$(date +%s)

phase setup
if ! command -v wrk >/dev/null 2>&1; then
  log "installing wrk (Debian package)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; } >"$LOGS/apt-wrk.log" 2>&1 ||
    die "could not install wrk (see $LOGS/apt-wrk.log)"
fi
if ! python3 -c 'import matplotlib' 2>/dev/null; then
  log "installing matplotlib (pip)"
  python3 -m pip install -q matplotlib >"$LOGS/pip-matplotlib.log" 2>&1 ||
    die "could not install matplotlib (see $LOGS/pip-matplotlib.log)"
fi
# build_variant NAME: the release binary of one build, copied to $OUT/bin/bigpipe-NAME. Cargo
# keeps each feature set's artifact apart, so switching between them does not rebuild.
build_variant() {
  local name=$1 args=(--release --bin bigpipe) out=target/release/bigpipe
  case $name in
    # with the example, as in the step below: examples unify dev-dependency features, so
    # `--bin bigpipe` alone would be a different build of the same code (a second link)
    glibc) args+=(--example bench_target) ;;
    musl) args+=(--target "$MUSL_TARGET") out=target/$MUSL_TARGET/release/bigpipe ;;
    glibc-system) args+=(--features system-allocator) ;;
    musl-system) args+=(--target "$MUSL_TARGET" --features system-allocator) out=target/$MUSL_TARGET/release/bigpipe ;;
    musl-dlmalloc) args+=(--target "$MUSL_TARGET" --features alloc-dlmalloc) out=target/$MUSL_TARGET/release/bigpipe ;;
    allocs) args+=(--features alloc-stats) ;;
    *) die "unknown build '$name' in BENCH_BUILDS (glibc, musl, glibc-system, musl-system, musl-dlmalloc)" ;;
  esac
  if [[ ${BENCH_SKIP_BUILD:-0} == 1 ]]; then
    [[ -x $OUT/bin/bigpipe-$name ]] || die "BENCH_SKIP_BUILD=1 but $OUT/bin/bigpipe-$name is missing"
    return 0
  fi
  if [[ $name == musl* ]]; then
    rustup target add "$MUSL_TARGET" >"$LOGS/rustup-musl.log" 2>&1 || true
  fi
  log "cargo build ${args[*]}"
  cargo build "${args[@]}" >>"$LOGS/build.log" 2>&1 || {
    tail -n 30 "$LOGS/build.log" >&2
    die "build $name failed (see $LOGS/build.log)"
  }
  cp "$out" "$OUT/bin/bigpipe-$name"
}
mkdir -p "$OUT/bin"
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
  log "cargo build --release --example bench_target"
  cargo build --release --example bench_target >"$LOGS/build.log" 2>&1 || {
    tail -n 30 "$LOGS/build.log" >&2
    die "release build failed (see $LOGS/build.log)"
  }
fi
for build in $RUN_BUILDS; do
  build_variant "$build"
done
[[ -x $TARGET_BIN ]] || die "missing $TARGET_BIN"
# A broker left behind by an interrupted bench (same run dir) is stopped; a process
# of anyone else on one of our ports is not touched: the bench refuses to start.
scripts/kafka.sh down >"$LOGS/kafka-predown.log" 2>&1 || true
for p in "$BIGPIPE_PORT" "$BIGPIPE_ADMIN_PORT" "$TARGET_PORT" "$KAFKA_PORT" "$((KAFKA_PORT + 1))"; do
  port_in_use "$p" && die "port $p on 127.0.0.1 is already in use (see the BENCH_*_PORT knobs)"
done

"${TOOL[@]}" merge "$RAW/env.json" \
  "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
  "cores:=$(nproc)" "mem_gib:=$(awk '/MemTotal/ {printf "%.1f", $2/1048576}' /proc/meminfo)" \
  "kernel=$(uname -r)" "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)" \
  "rustc=$(rustc --version 2>/dev/null || echo unknown)" "wrk=$(wrk -v 2>&1 | sed -n 1p | cut -d' ' -f1-2)" \
  "smoke:=$SMOKE" "seconds:=$DURATION" "connections:=$CONNECTIONS" "wrk_threads:=$WRK_THREADS" \
  "queue_bytes:=268435456" "prefetch_bytes:=4194304" \
  "partitions:=$PARTITIONS" "drain_records:=$DRAIN_RECORDS" "backlog_records:=$BACKLOG_RECORDS" \
  "backlog_rate:=$BACKLOG_RATE" "delivery_concurrency:=$DELIVERY_CONCURRENCY" \
  "target_workers:=$TARGET_WORKERS" "builds=$BUILDS" "run_builds=$RUN_BUILDS" "git=$(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet 2>/dev/null || echo +dirty)" \
  "date=$(date -u +%FT%TZ)"

# -------------------------------------------------------------- 1. Kafka --

phase kafka-up
KAFKA_STARTED=1
scripts/kafka.sh up >"$LOGS/kafka-up.log" 2>&1 || {
  tail -n 20 "$LOGS/kafka-up.log" >&2
  die "Kafka did not start on $BOOTSTRAP"
}
KAFKA_PID=$(cat "$OUT/kafka/single/kafka.pid")
echo "$KAFKA_PID" >"$OUT/kafka.pid"
log "Kafka on $BOOTSTRAP (pid $KAFKA_PID)"
for size in $SIZES; do
  kafka_tool 60 "$LOGS/topic-pp-$size.txt" topics --bootstrap-server "$BOOTSTRAP" --create \
    --topic "bench-pp-$size" --partitions "$PARTITIONS" --config compression.type=producer
done
for t in bench-drain bench-backlog; do
  kafka_tool 60 "$LOGS/topic-$t.txt" topics --bootstrap-server "$BOOTSTRAP" --create \
    --topic "$t" --partitions "$PARTITIONS" --config compression.type=snappy
done

# The target and the sampler run from here to the end.
port_in_use "$TARGET_PORT" && die "port $TARGET_PORT is in use (BENCH_TARGET_PORT)"
"$TARGET_BIN" serve --port "$TARGET_PORT" --workers "$TARGET_WORKERS" >"$RAW/target-final.json" 2>"$LOGS/target.log" &
TG_PID=$!
"${TOOL[@]}" wait-http "$TG_URL/healthz" 200 20 || die "bench_target did not start"
"${TOOL[@]}" merge "$RAW/target-start.json" "t:=$(date +%s.%N)" "proc:=$(proc_json "$TG_PID")"
python3 "$REPO/bench/sampler.py" "$OUT" "$BP_ADMIN_URL" "$TG_URL" "$$" 7200 2>"$LOGS/sampler.log" &
SAMPLER_PID=$!

# ------------------------------------------------------------ 2. baselines --

PP_PROPS=(acks=all compression.type=snappy linger.ms=5 batch.size=1048576)

for size in $SIZES; do
  phase "baseline-producer-$size"
  record_bytes=$("${TOOL[@]}" payload "$RAW/payload-$size.txt" --lines 1000 --data-bytes "$size" \
    --url "$TG_URL/x" --topic "bench-pp-$size")
  n=$PP_CALIBRATE
  if [[ $SMOKE != 1 ]]; then
    measured_tool "pp-calibrate-$size" 300 producer-perf --bootstrap-server "$BOOTSTRAP" \
      --topic "bench-pp-$size" --num-records "$PP_CALIBRATE" --throughput -1 \
      --payload-file "$RAW/payload-$size.txt" --command-property "${PP_PROPS[@]}"
    rate=$("${TOOL[@]}" pp "$LOGS/pp-calibrate-$size.txt" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rate"])')
    n=$(python3 -c "print(max($PP_CALIBRATE, min(int($rate * $DURATION), $PP_MAX_BYTES // $record_bytes)))")
  fi
  measured_tool "pp-$size" 600 producer-perf --bootstrap-server "$BOOTSTRAP" \
    --topic "bench-pp-$size" --num-records "$n" --throughput -1 \
    --payload-file "$RAW/payload-$size.txt" --command-property "${PP_PROPS[@]}"
  "${TOOL[@]}" pp "$LOGS/pp-$size.txt" >"$RAW/pp-$size.parsed.json"
  "${TOOL[@]}" merge "$RAW/pp-$size.json" "run=$RAW/pp-$size.parsed.json" "proc=$RAW/pp-$size.proc.json" \
    "record_bytes:=$record_bytes" "data_bytes:=$size"
  total=$n
  [[ $SMOKE != 1 ]] && total=$((n + PP_CALIBRATE))

  phase "baseline-consumer-$size"
  measured_tool "cp-$size" 300 consumer-perf --bootstrap-server "$BOOTSTRAP" --topic "bench-pp-$size" \
    --num-records "$total" --timeout 30000 --group "bench-cp-$size"
  "${TOOL[@]}" cp "$LOGS/cp-$size.txt" >"$RAW/cp-$size.parsed.json"
  "${TOOL[@]}" merge "$RAW/cp-$size.json" "run=$RAW/cp-$size.parsed.json" "proc=$RAW/cp-$size.proc.json" \
    "record_bytes:=$record_bytes" "data_bytes:=$size" "expected:=$total"
done

phase baseline-e2e
first_size=${SIZES%% *}
measured_tool e2e 300 org.apache.kafka.tools.EndToEndLatency --bootstrap-server "$BOOTSTRAP" \
  --topic "bench-pp-$first_size" --num-records "$E2E_RECORDS" --producer-acks all --record-size "$first_size"
"${TOOL[@]}" e2e "$LOGS/e2e.txt" >"$RAW/e2e.parsed.json"
"${TOOL[@]}" merge "$RAW/e2e.json" "run=$RAW/e2e.parsed.json" "proc=$RAW/e2e.proc.json" \
  "records:=$E2E_RECORDS" "data_bytes:=$first_size"

# ------------------------------------------------- 3-5. per build: ingest, delivery, backlog --

# ingest_phase BUILD: idle, then wrk on /rpc/call for each size and mode (the /mock baseline and
# bigpipe's own mock with the first build only; the counting build runs the queue mode only).
ingest_phase() {
  local build=$1 braw=$RAW/$1 size mode modes case_name url ack pid secs batch keys s0 s1 s2 p0 p1 p2 t0 t1 t2
  mkdir -p "$braw"
  phase "$build:ingest-start"
  start_bigpipe "$build-ingest" "$(write_config ingest)"
  "${TOOL[@]}" merge "$braw/target-idle.json" "t:=$(date +%s.%N)" "proc:=$(proc_json "$TG_PID")"

  phase "$build:idle"
  p0=$(proc_json "$BP_PID")
  t0=$(date +%s.%N)
  sleep "$IDLE_SECONDS"
  "${TOOL[@]}" merge "$braw/idle.json" "before:=$p0" "after:=$(proc_json "$BP_PID")" \
    "seconds:=$(python3 -c "import time; print(time.time() - $t0)")"

  for size in $SIZES; do
    modes="queue kafka"
    [[ $build == allocs ]] && modes="queue"
    if [[ $build == "$FIRST_BUILD" ]]; then
      # /rpc/calls batches of $BATCH_CALLS, against the single calls of the same run
      modes="mock $modes batch"
      # bigpipe's own /rpc/server/mock, once: it does not read the body, so actix closes
      # every keep-alive connection after a POST (see the README's Benchmarks notes); and
      # idempotency keys, once: a fresh key per call (claimed, then written) and repeats
      # (answered from the claims, nothing written), against the single calls of the run
      [[ $size == "${SIZES%% *}" ]] && modes="$modes bpmock keyed replay"
    fi
    for mode in $modes; do
      case_name="ingest-$size-$mode"
      phase "$build:$case_name"
      url=$BP_URL/rpc/call ack="" pid=$BP_PID secs=$DURATION batch=0 keys=""
      case $mode in
        batch) url=$BP_URL/rpc/calls batch=$BATCH_CALLS ;;
        keyed) keys=fresh ;;
        replay) keys=repeat ;;
        mock) url=$TG_URL/mock pid=$TG_PID ;;
        bpmock) url=$BP_URL/rpc/server/mock secs=$(((DURATION + 2) / 3)) ;;
        kafka) ack=kafka ;;
      esac
      s0=$("${TOOL[@]}" get "$BP_ADMIN_URL/stats")
      p0=$(proc_json "$pid")
      t0=$(date +%s.%N)
      if ! BENCH_DATA_BYTES=$size BENCH_ACK=$ack BENCH_BATCH=$batch BENCH_KEYS=$keys BENCH_TARGET_URL="$TG_URL/x" \
        in_bg $((secs + 30)) "${TOOL[@]}" measure "$braw/$case_name.wrkproc.json" -- \
        wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${secs}s" --timeout 10s \
        -s "$REPO/bench/wrk_call.lua" "$url" >"$LOGS/$build-$case_name.wrk.txt" 2>&1; then
        cat "$LOGS/$build-$case_name.wrk.txt" >&2
        die "wrk failed for $build $case_name"
      fi
      t1=$(date +%s.%N)
      p1=$(proc_json "$pid")
      s1=$("${TOOL[@]}" get "$BP_ADMIN_URL/stats")
      # Let the queue drain into Kafka before the next case (and time it).
      if ! "${TOOL[@]}" wait "$BP_ADMIN_URL/stats" queued le 0 180 >/dev/null; then
        echo "\"$build $case_name: queue not empty 180 s after the load\"" >>"$RAW/anomalies.jsonl"
      fi
      t2=$(date +%s.%N)
      p2=$(proc_json "$pid")
      s2=$("${TOOL[@]}" get "$BP_ADMIN_URL/stats")
      "${TOOL[@]}" wrkjson "$LOGS/$build-$case_name.wrk.txt" >"$braw/$case_name.wrk.json"
      "${TOOL[@]}" merge "$braw/$case_name.json" "wrk=$braw/$case_name.wrk.json" \
        "wrkproc=$braw/$case_name.wrkproc.json" "proc_before:=$p0" "proc_after:=$p1" "proc_drained:=$p2" \
        "stats_before:=$s0" "stats_after:=$s1" "stats_drained:=$s2" \
        "t0:=$t0" "t1:=$t1" "t2:=$t2" "data_bytes:=$size" "mode=$mode" "url=$url" \
        "connections:=$CONNECTIONS" "wrk_threads:=$WRK_THREADS" "build=$build" "batch:=$batch"
    done
  done
  "${TOOL[@]}" merge "$braw/ingest-final.json" "proc:=$(proc_json "$BP_PID")" "stats:=$("${TOOL[@]}" get "$BP_ADMIN_URL/stats")"
  stop_bigpipe "$build-ingest"
}

# delivery_phase BUILD: the preloaded backlog drained by a group of this build's own (so every
# build drains the same records from the start), then the latency run on this build's topic.
delivery_phase() {
  local build=$1 braw=$RAW/$1 consumers t0 t1 p0 p1 drained drain_rate rate ok
  phase "$build:drain"
  curl -fsS -X POST "$TG_URL/metrics/reset" >/dev/null
  consumers="$(consumer_entry bench-drain "bench-drain-$build" 1000000 "$DELIVERY_CONCURRENCY")$(consumer_entry "bench-lat-$build" "bench-lat-$build" 1000000 "$DELIVERY_CONCURRENCY")"
  t0=$(date +%s.%N)
  start_bigpipe "$build-delivery" "$(write_config delivery "$consumers")"
  # from process start: a small backlog may be gone before /readyz answers
  p0='{"cpu_s": 0, "rss_kb": 0, "hwm_kb": 0}'
  drained=1
  "${TOOL[@]}" wait "$TG_URL/metrics" path:count ge "$DRAIN_RECORDS" "$DRAIN_TIMEOUT" >/dev/null || drained=0
  t1=$(date +%s.%N)
  p1=$(proc_json "$BP_PID")
  "${TOOL[@]}" merge "$braw/drain.json" "target:=$("${TOOL[@]}" get "$TG_URL/metrics")" \
    "stats:=$("${TOOL[@]}" get "$BP_ADMIN_URL/stats")" "proc_before:=$p0" "proc_after:=$p1" \
    "t_start:=$t0" "t_end:=$t1" "records:=$DRAIN_RECORDS" "record_bytes:=$DRAIN_BYTES" \
    "drained:=$drained" "concurrency:=$DELIVERY_CONCURRENCY" "build=$build"
  if [[ $drained != 1 ]]; then
    echo "\"$build drain: $DRAIN_RECORDS calls not all delivered within $DRAIN_TIMEOUT s\"" >>"$RAW/anomalies.jsonl"
  fi
  drain_rate=$(python3 - "$braw/drain.json" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
t = d["target"]
span = (t["last_us"] - t["first_us"]) / 1e6 if t["first_us"] else 0
print(int((t["count"] - 1) / span) if span > 0 and t["count"] > 1 else 0)
PYEOF
)
  [[ $drain_rate -gt 0 ]] || die "$build: no call was delivered to the target in the drain phase (see $LOGS/bigpipe-$build-delivery.log)"
  log "$build drain rate: $drain_rate calls/s"
  if [[ $build == allocs ]]; then
    stop_bigpipe "$build-delivery"
    return 0
  fi

  phase "$build:latency"
  rate=${LAT_RATE:-$((drain_rate / 2))}
  ((rate >= 10)) || rate=10
  # Give the consumer time to settle (group joined, fetch running), then measure.
  sleep 1
  curl -fsS -X POST "$TG_URL/metrics/reset" >/dev/null
  p0=$(proc_json "$BP_PID")
  t0=$(date +%s.%N)
  if ! in_bg $((DURATION + 60)) "$TARGET_BIN" send --url "$BP_URL/rpc/call" --target "$TG_URL/lat" \
    --rate "$rate" --seconds "$DURATION" --connections "$LAT_CONNECTIONS" --data-bytes 100 \
    --acl-name "bench-lat-$build" --acl-secret bench-secret >"$braw/latency-sender.json" 2>"$LOGS/$build-sender.log"; then
    die "the rate-limited sender failed (see $LOGS/$build-sender.log)"
  fi
  ok=$(python3 -c "import json; print(json.load(open('$braw/latency-sender.json'))['ok'])")
  "${TOOL[@]}" wait "$TG_URL/metrics" path:count ge "$ok" 60 >/dev/null ||
    echo "\"$build latency: not every accepted call arrived within 60 s of the last send\"" >>"$RAW/anomalies.jsonl"
  t1=$(date +%s.%N)
  p1=$(proc_json "$BP_PID")
  "${TOOL[@]}" merge "$braw/latency.json" "sender=$braw/latency-sender.json" \
    "target:=$("${TOOL[@]}" get "$TG_URL/metrics")" "stats:=$("${TOOL[@]}" get "$BP_ADMIN_URL/stats")" \
    "proc_before:=$p0" "proc_after:=$p1" "t0:=$t0" "t1:=$t1" "rate:=$rate" "drain_rate:=$drain_rate" \
    "connections:=$LAT_CONNECTIONS"
  stop_bigpipe "$build-delivery"
}

# backlog_phase BUILD: the preloaded backlog with a slow consumer group of this build's own.
backlog_phase() {
  local build=$1 braw=$RAW/$1 p0 p1 t0 t1
  phase "$build:backlog"
  start_bigpipe "$build-backlog" "$(write_config backlog "$(consumer_entry bench-backlog "bench-backlog-$build" "$BACKLOG_RATE" 5)")"
  p0=$(proc_json "$BP_PID")
  t0=$(date +%s.%N)
  sleep "$BACKLOG_SECONDS"
  # a few seconds more once the group has partitions, so the prefetch windows are full
  "${TOOL[@]}" wait "$BP_ADMIN_URL/stats" handled ge 1 30 >/dev/null ||
    echo "\"$build backlog: the consumer entry took no record within 30 s\"" >>"$RAW/anomalies.jsonl"
  sleep "$IDLE_SECONDS"
  t1=$(date +%s.%N)
  p1=$(proc_json "$BP_PID")
  "${TOOL[@]}" merge "$braw/backlog.json" "stats:=$("${TOOL[@]}" get "$BP_ADMIN_URL/stats")" \
    "proc_before:=$p0" "proc_after:=$p1" "t0:=$t0" "t1:=$t1" "records:=$BACKLOG_RECORDS" \
    "rate_limit:=$BACKLOG_RATE"
  stop_bigpipe "$build-backlog"
}

for build in $RUN_BUILDS; do
  BIN=$OUT/bin/bigpipe-$build
  ingest_phase "$build"
done

phase preload-drain
DRAIN_BYTES=$("${TOOL[@]}" payload "$RAW/payload-drain.txt" --lines 1000 --data-bytes 100 \
  --url "$TG_URL/drain" --topic bench-drain)
measured_tool preload-drain 600 producer-perf --bootstrap-server "$BOOTSTRAP" --topic bench-drain \
  --num-records "$DRAIN_RECORDS" --throughput -1 --payload-file "$RAW/payload-drain.txt" \
  --command-property "${PP_PROPS[@]}"

phase baseline-target
# The delivery baseline: wrk straight at the target bigpipe delivers to, with as many
# connections as the consumer entry's concurrency (wrk_call.lua's 100 B-data call bodies).
BENCH_DATA_BYTES=100 BENCH_TARGET_URL="$TG_URL/x" in_bg $((DURATION + 30)) "${TOOL[@]}" measure \
  "$RAW/target-wrk.wrkproc.json" -- wrk -t"$WRK_THREADS" -c"$DELIVERY_CONCURRENCY" -d"${DURATION}s" \
  --timeout 10s -s "$REPO/bench/wrk_call.lua" "$TG_URL/wrk" >"$LOGS/target-wrk.wrk.txt" 2>&1 ||
  die "wrk against the target failed (see $LOGS/target-wrk.wrk.txt)"
"${TOOL[@]}" wrkjson "$LOGS/target-wrk.wrk.txt" >"$RAW/target-wrk.wrk.json"
"${TOOL[@]}" merge "$RAW/target-wrk.json" "wrk=$RAW/target-wrk.wrk.json" \
  "wrkproc=$RAW/target-wrk.wrkproc.json" "connections:=$DELIVERY_CONCURRENCY"

for build in $RUN_BUILDS; do
  BIN=$OUT/bin/bigpipe-$build
  delivery_phase "$build"
done

phase preload-backlog
"${TOOL[@]}" payload "$RAW/payload-backlog.txt" --lines 1000 --data-bytes 100 \
  --url "$TG_URL/backlog" --topic bench-backlog >/dev/null
measured_tool preload-backlog 900 producer-perf --bootstrap-server "$BOOTSTRAP" --topic bench-backlog \
  --num-records "$BACKLOG_RECORDS" --throughput -1 --payload-file "$RAW/payload-backlog.txt" \
  --command-property "${PP_PROPS[@]}"

for build in $BUILDS; do
  BIN=$OUT/bin/bigpipe-$build
  backlog_phase "$build"
done

# -------------------------------------------------------------- 6. report --

phase report
"${TOOL[@]}" merge "$RAW/target-end.json" "proc:=$(proc_json "$TG_PID")"
touch "$OUT/sampler.stop"
stop_pid "$SAMPLER_PID" 5
SAMPLER_PID=""
stop_pid "$TG_PID" 5
TG_PID=""
"${TOOL[@]}" merge "$RAW/env-end.json" "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" \
  "wall_s:=$(($(date +%s) - T_START))"
python3 "$REPO/bench/report.py" "$OUT" || die "report failed"
log "done in $(($(date +%s) - T_START)) s: $OUT/report.json, $OUT/table.md, $OUT/chart.png"
