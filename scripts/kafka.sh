#!/usr/bin/env bash
# scripts/kafka.sh - fetch, start, health-check and stop a REAL Apache Kafka
# (KRaft; ZooKeeper mode for Kafka 2.x; no Docker needed) for bigpipe's tests, CI
# and local runs, from the jars or, with BIGPIPE_KAFKA_DOCKER, in a container.
#
# The broker jars come from Maven Central through plain `mvn` (see
# tools/kafka/pom.xml) and are cached OUTSIDE the repo, so every clone on the
# same machine reuses them. Run `scripts/kafka.sh help` for the commands.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
POM_DIR=$REPO_ROOT/tools/kafka
LOG4J_CONF=$POM_DIR/log4j2.properties

KAFKA_VERSION=${BIGPIPE_KAFKA_VERSION:-4.3.1}
CACHE_ROOT=${BIGPIPE_KAFKA_CACHE:-${HOME:-/tmp}/.cache/bigpipe}
KAFKA_CACHE=$CACHE_ROOT/kafka-$KAFKA_VERSION
LIBS=$KAFKA_CACHE/libs
TOOLS_LIBS=$KAFKA_CACHE/tools-libs
RUN_ROOT=${BIGPIPE_KAFKA_RUN:-$REPO_ROOT/.kafka}
HOST=127.0.0.1
PORT=${BIGPIPE_KAFKA_PORT:-9092}
CONTROLLER_PORT=$((PORT + 1))
# Secured listeners of the single node (see secure_* below): mTLS, SASL over plaintext, SASL
# over TLS, on the three ports after the controller's.
SSL_PORT=$((PORT + 2))
SASL_PLAINTEXT_PORT=$((PORT + 3))
SASL_SSL_PORT=$((PORT + 4))
SECURE_PREFIX=${BIGPIPE_KAFKA_SECURE_PREFIX:-sec-}
READY_TIMEOUT=${BIGPIPE_KAFKA_READY_TIMEOUT:-90}
STOP_TIMEOUT=${BIGPIPE_KAFKA_STOP_TIMEOUT:-30}
# Fixed cluster ids (22-char base64 UUIDs); any valid one works.
SINGLE_CLUSTER_ID=clrmGdYqQLOUSaEFLXCOXg
CLUSTER_CLUSTER_ID=yvUpmAotSjOkL22hkEg-tg
CLUSTER_NODES=(1 2 3)
# cluster node N listens on N*1000+BASE (PLAINTEXT) and N*1000+BASE+1 (CONTROLLER); all
# below Linux's ephemeral range (32768+), so a client socket can never be holding them
CLUSTER_BASE=${BIGPIPE_KAFKA_CLUSTER_BASE_PORT:-9092}
# KRaft for 3.x/4.x; ZooKeeper for 2.x, whose KRaft was an early-access preview (no ACLs, no
# reassignment, no transactions). 3.x can run either way (BIGPIPE_KAFKA_MODE), 4.x has no ZooKeeper.
case ${BIGPIPE_KAFKA_MODE:-} in
  kraft | zookeeper) KAFKA_MODE=$BIGPIPE_KAFKA_MODE ;;
  '') case $KAFKA_VERSION in 0.* | 1.* | 2.*) KAFKA_MODE=zookeeper ;; *) KAFKA_MODE=kraft ;; esac ;;
  *) printf '[kafka.sh] error: BIGPIPE_KAFKA_MODE must be kraft or zookeeper, got %s\n' "$BIGPIPE_KAFKA_MODE" >&2; exit 1 ;;
esac
if [[ $KAFKA_MODE == zookeeper && $KAFKA_VERSION != [0-3].* ]]; then
  printf '[kafka.sh] error: Kafka %s has no ZooKeeper mode (removed in 4.0)\n' "$KAFKA_VERSION" >&2
  exit 1
fi
zk_mode() { [[ $KAFKA_MODE == zookeeper ]]; }
# the broker's readiness line: KafkaRaftServer in KRaft mode, KafkaServer in ZooKeeper mode
if zk_mode; then READY_LINE='started (kafka.server.KafkaServer)'; else READY_LINE='Kafka Server started'; fi
ZK_HEAP=${BIGPIPE_KAFKA_ZK_HEAP_OPTS:--Xms64m -Xmx128m}

# JVM flags of bin/kafka-run-class.sh (KAFKA_JVM_PERFORMANCE_OPTS), kept as-is so
# benchmarks see a normally tuned broker. Extra flags: BIGPIPE_KAFKA_JVM_OPTS.
JVM_PERF_OPTS=(-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20
  -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
  -XX:MaxInlineLevel=15 -Djava.awt.headless=true)
SINGLE_HEAP=${BIGPIPE_KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}
CLUSTER_HEAP=${BIGPIPE_KAFKA_CLUSTER_HEAP_OPTS:--Xms256m -Xmx512m}

usage() {
  cat <<EOF
Usage: scripts/kafka.sh <command> [options]

Broker lifecycle (single node, KRaft combined mode, ${HOST}:${PORT}, controller :${CONTROLLER_PORT};
in ZooKeeper mode (Kafka 2.x) a ZooKeeper from the broker's jars listens on :${CONTROLLER_PORT} instead):
  fetch              resolve the broker jars with mvn into
                     ${LIBS}
                     (skipped when already there)
  fetch-tools        same for the CLI tools (kafka-tools) into .../tools-libs
  up [--keep]        fresh run dir ${RUN_ROOT}/single, format, start in the
                     background, wait until ready (deadline ${READY_TIMEOUT}s). --keep
                     reuses existing data. No-op if already running and healthy.
  down [--keep]      SIGTERM, wait ${STOP_TIMEOUT}s, SIGKILL; delete the run dir (unless --keep)
  stop               like down but keeps the run dir (data survives)
  start              start again on the data left by stop, wait until ready
  status             exit 0 if a broker answers on ${HOST}:${PORT} (ApiVersions request)
  secure-enabled     exit 0 if \`up\` sets up the secured listeners for this version and mode
  secure-check       prove the secured listeners with Kafka's own console tools: as each
                     principal create a '${SECURE_PREFIX}*' topic, produce and consume a record;
                     and see User:limited refused Create, a wrong password and a missing
                     client certificate refused (~100 s on a loaded 2-core machine)

Secured listeners of the single node (on unless BIGPIPE_KAFKA_SECURE=0; off by default before
Kafka 3.5, whose storage tool cannot create SCRAM users; not in --cluster or the docker path):
  ${HOST}:${SSL_PORT}  SSL             TLS with a client certificate (mTLS); principal User:CN=bigpipe
  ${HOST}:${SASL_PLAINTEXT_PORT}  SASL_PLAINTEXT  PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 without TLS
  ${HOST}:${SASL_SSL_PORT}  SASL_SSL        the same mechanisms over TLS, no client certificate
  Users (PLAIN via the listeners' JAAS config, SCRAM via 'kafka-storage format --add-scram'):
    admin/admin-secret (super user), bigpipe/bigpipe-secret, limited/limited-secret
  StandardAuthorizer: User:ANONYMOUS (PLAINTEXT, CONTROLLER) and User:admin are super users;
  User:bigpipe and User:CN=bigpipe may Describe, Read, Write, Create, DescribeConfigs topics and
  Read groups starting with '${SECURE_PREFIX}'; User:limited the same without Create on topics.
  Files (kept across up/down, remade a day before they expire) in ${SECURE_DIR}:
    ca.pem, broker.pem, client.pem, client.key (PEM; CN=bigpipe), *-keystore.pem (Kafka's PEM
    keystores), <mode>.properties client configs for Kafka's tools (ssl, sasl-plaintext-scram-sha-256,
    sasl-ssl-scram-sha-512, sasl-ssl-plain, admin, limited, wrong-password, ssl-no-cert), and
    it.env (IT_KAFKA_SECURE_BASE, IT_KAFKA_SECURE_DIR for it/security.rs)

Three-node cluster (combined KRaft nodes, static voters, RF 3, min.insync.replicas 2; in
ZooKeeper mode one ZooKeeper on node 1's controller port, which the brokers then do not use):
  up --cluster       nodes 1..3 on $(cluster_bootstrap) (controllers on port+1,
                     i.e. 10093/11093/12093 by default), run dir ${RUN_ROOT}/cluster/n<N>
  down --cluster     stop all three and delete the run dir (--keep to keep it)
  status --cluster   per-node state; exit 0 only if all three answer
  kill-node N        SIGKILL node N (no controlled shutdown)
  stop-node N        SIGTERM node N (controlled shutdown)
  start-node N       restart node N on its existing data, wait until ready

Tools (classpath = tools-libs + broker libs, fetched on first use):
  tool <MainClass|alias> [args...]
    aliases and their Kafka ${KAFKA_VERSION} main classes:
      topics            org.apache.kafka.tools.TopicCommand                         (kafka-topics.sh)
      consumer-groups   org.apache.kafka.tools.consumer.group.ConsumerGroupCommand  (kafka-consumer-groups.sh)
      producer-perf     org.apache.kafka.tools.ProducerPerformance                  (kafka-producer-perf-test.sh)
      consumer-perf     org.apache.kafka.tools.ConsumerPerformance                  (kafka-consumer-perf-test.sh)
      console-producer  org.apache.kafka.tools.ConsoleProducer                      (kafka-console-producer.sh)
      console-consumer  org.apache.kafka.tools.consumer.ConsoleConsumer             (kafka-console-consumer.sh)
      get-offsets       org.apache.kafka.tools.GetOffsetShell                       (kafka-get-offsets.sh)
      metadata-quorum   org.apache.kafka.tools.MetadataQuorumCommand                (kafka-metadata-quorum.sh)
      api-versions      org.apache.kafka.tools.BrokerApiVersionsCommand             (kafka-broker-api-versions.sh)
      configs           kafka.admin.ConfigCommand                                   (kafka-configs.sh, in kafka_2.13)
      acls              org.apache.kafka.tools.AclCommand                           (kafka-acls.sh; 3.x: kafka.admin.AclCommand)
      storage           kafka.tools.StorageTool                                     (kafka-storage.sh, in kafka_2.13)
    e.g. scripts/kafka.sh tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \\
           --bootstrap-server ${HOST}:${PORT} --describe --group G
         scripts/kafka.sh tool topics --bootstrap-server ${HOST}:${PORT} --list

Environment:
  BIGPIPE_KAFKA_VERSION        Kafka version (default 4.3.1); 2.x runs in ZooKeeper mode
  BIGPIPE_KAFKA_MODE           kraft or zookeeper (default: zookeeper for 2.x, else kraft;
                               3.x runs either way, 4.x has no ZooKeeper)
  BIGPIPE_KAFKA_ZK_HEAP_OPTS   ZooKeeper's heap (default "-Xms64m -Xmx128m")
  BIGPIPE_KAFKA_TOOLS_VERSION  Kafka version of the client tools run by 'tool' (default: the
                               broker's); e.g. 4.3.1 tools against a BIGPIPE_KAFKA_VERSION=3.9.1
                               broker, whose console producer takes other flags
  BIGPIPE_KAFKA_PORT           single-node PLAINTEXT port (default 9092; controller = port+1,
                               SSL/SASL_PLAINTEXT/SASL_SSL = port+2/+3/+4)
  BIGPIPE_KAFKA_SECURE         1/0: the secured listeners on/off (default 1 from Kafka 3.5)
  BIGPIPE_KAFKA_SECURE_PREFIX  topic/group prefix of the secured principals' ACLs (default sec-)
  BIGPIPE_KAFKA_CLUSTER_BASE_PORT  cluster node N uses N*1000+base (default 9092 -> 10092, 11092, 12092)
  BIGPIPE_KAFKA_CACHE          jar cache root (default \$HOME/.cache/bigpipe)
  BIGPIPE_KAFKA_RUN            run dir root (default <repo>/.kafka)
  BIGPIPE_KAFKA_READY_TIMEOUT  seconds to wait for readiness (default 90)
  BIGPIPE_KAFKA_STOP_TIMEOUT   seconds between SIGTERM and SIGKILL (default 30)
  BIGPIPE_KAFKA_HEAP_OPTS      single-node heap (default "-Xms256m -Xmx768m")
  BIGPIPE_KAFKA_CLUSTER_HEAP_OPTS  per-node heap in the cluster (default "-Xms256m -Xmx512m")
  BIGPIPE_KAFKA_JVM_OPTS       extra JVM flags for the broker(s)
  BIGPIPE_KAFKA_TOOL_OPTS      JVM flags for 'tool' (default "-Xmx512m")
  BIGPIPE_KAFKA_LOG4J_VERSION  log4j2 version to fetch (default: the one Kafka uses)
  BIGPIPE_MVN_ARGS             extra arguments for mvn (e.g. -Dmaven.repo.local=...)
  BIGPIPE_KAFKA_DOCKER=1       if a Docker engine answers, single-node up/down/status use
                               'docker compose' (v2) or 'docker-compose' (v1) with
                               <repo>/docker-compose.yml instead; when neither is there, or
                               the container does not come up, as =run if the image can be
                               had, else the Maven jars (it says why)
  BIGPIPE_KAFKA_DOCKER=run     every broker started here (single node, cluster nodes) runs in
                               a container of BIGPIPE_KAFKA_IMAGE, 'docker run --network host',
                               same ports and run dir; scripts/images.sh builds the image
                               when it is missing; fails when there is no Docker engine.
                               stop/start/down/status/kill-node/... work on such brokers
                               whatever this variable says then
  BIGPIPE_KAFKA_IMAGE          the image for =run (default bigpipe-kafka:\$BIGPIPE_KAFKA_VERSION)
EOF
}

log() { printf '[kafka.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

now_ms() {
  if [[ -n ${EPOCHREALTIME:-} ]]; then
    local t=${EPOCHREALTIME/[.,]/}
    echo $((t / 1000))
  else
    echo $(($(date +%s) * 1000))
  fi
}
# elapsed seconds with one decimal since a now_ms value
elapsed() {
  local d=$(($(now_ms) - $1))
  printf '%d.%d' $((d / 1000)) $((d % 1000 / 100))
}

# ---------------------------------------------------------------- fetching --

# log4j2 version Kafka itself uses (kafka-server's dependency); the pom pins
# log4j-api, log4j-core and the SLF4J binding all to this one version.
log4j_version() {
  if [[ -n ${BIGPIPE_KAFKA_LOG4J_VERSION:-} ]]; then
    echo "$BIGPIPE_KAFKA_LOG4J_VERSION"
    return
  fi
  case $KAFKA_VERSION in
    4.1.* | 4.2.0 | 4.2.1) echo 2.25.3 ;;
    4.2.2) echo 2.25.5 ;;
    4.3.*) echo 2.25.4 ;;
    4.4.0) echo 2.25.5 ;;
    *) echo 2.25.4 ;;
  esac
}

require() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH ($2)"
}

# what a complete cache dir records: versions and the pom's checksum, so an
# edited pom or another log4j version triggers a new fetch
stamp_of() { echo "kafka=$KAFKA_VERSION log4j=$(log4j_version) pom=$(cksum <"$1" | cut -d' ' -f1)"; }

# libs_current POM DEST: DEST holds a complete fetch made with POM
libs_current() {
  [[ -f $2/.complete && $(<"$2/.complete") == "$(stamp_of "$1")" ]]
}

# fetch_libs POM DEST MARKER_JAR
fetch_libs() {
  local pom=$1 dest=$2 marker_jar=$3
  local l4j stamp
  l4j=$(log4j_version)
  stamp=$(stamp_of "$pom")
  if libs_current "$pom" "$dest"; then
    log "jars already in $dest ($(find "$dest" -name '*.jar' | wc -l) jars)"
    return 0
  fi
  require mvn "needed once to fetch the Kafka jars from Maven Central"
  require java "Kafka ${KAFKA_VERSION} needs Java 17+"
  mkdir -p "$(dirname "$dest")"
  local tmp mvnlog t0
  tmp=$(mktemp -d "$(dirname "$dest")/.$(basename "$dest").XXXXXX")
  mvnlog=$tmp.mvn.log
  t0=$(now_ms)
  log "fetching Kafka $KAFKA_VERSION ($(basename "$pom"), log4j $l4j) with mvn into $dest ..."
  local -a extra=()
  if [[ -n ${BIGPIPE_MVN_ARGS:-} ]]; then
    read -r -a extra <<<"$BIGPIPE_MVN_ARGS"
  fi
  if ! mvn -B -q -f "$pom" package \
    "-Dkafka.version=$KAFKA_VERSION" "-Dlog4j.version=$l4j" \
    "-Dkafka.libs.dir=$tmp" "${extra[@]}" >"$mvnlog" 2>&1 9>&-; then
    tail -n 40 "$mvnlog" >&2
    rm -rf "$tmp" "$mvnlog"
    die "mvn failed to fetch Kafka $KAFKA_VERSION (see output above)"
  fi
  rm -f "$mvnlog"
  [[ -f $tmp/$marker_jar ]] || { rm -rf "$tmp"; die "$marker_jar missing after mvn"; }
  [[ -f $tmp/log4j-slf4j-impl-$l4j.jar ]] || { rm -rf "$tmp"; die "log4j-slf4j-impl-$l4j.jar missing after mvn"; }
  chmod 755 "$tmp"
  printf '%s\n' "$stamp" >"$tmp/.complete"
  if libs_current "$pom" "$dest"; then
    rm -rf "$tmp" # a concurrent fetch won the race
  else
    rm -rf "$dest"
    mv -T "$tmp" "$dest"
  fi
  log "fetched $(find "$dest" -name '*.jar' | wc -l) jars ($(du -sh "$dest" | cut -f1)) in $(elapsed "$t0") s"
}

cmd_fetch() { fetch_libs "$POM_DIR/pom.xml" "$LIBS" "kafka_2.13-$KAFKA_VERSION.jar"; }
cmd_fetch_tools() { fetch_libs "$POM_DIR/tools-pom.xml" "$TOOLS_LIBS" "kafka-tools-$KAFKA_VERSION.jar"; }

ensure_libs() {
  libs_current "$POM_DIR/pom.xml" "$LIBS" || cmd_fetch
}

# ---------------------------------------------------------------- helpers --

port_open() { # port_open HOST PORT
  # shellcheck disable=SC2016 # $1/$2 are expanded by the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" >/dev/null 2>&1
}

# kafka_answers HOST PORT: the port speaks Kafka - sends an ApiVersions v0
# request (correlation id 42) and checks the response header echoes it
kafka_answers() {
  local hex
  # shellcheck disable=SC2016 # $1/$2 are expanded by the inner bash
  hex=$(timeout 3 bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf "\x00\x00\x00\x0e\x00\x12\x00\x00\x00\x00\x00\x2a\x00\x04ping" >&3
    head -c 8 <&3 | od -An -tx1 | tr -d " \n"
  ' _ "$1" "$2" 2>/dev/null) || return 1
  [[ $hex == ????????0000002a ]]
}

# pid_alive PID [MAIN_CLASS]: the process exists, is no zombie, and runs MAIN_CLASS
# (default kafka.Kafka, the broker; org.apache.zookeeper.server.ZooKeeperServerMain for ZooKeeper)
pid_alive() {
  local out
  out=$(ps -o stat= -o args= -p "$1" 2>/dev/null) || return 1
  [[ -n $out && ${out# } != Z* && $out == *"${2:-kafka.Kafka}"* ]]
}

# pid_exists PID: a live process (not a zombie), whatever it runs. Right after
# launch the child may still be the forked shell that has not exec'd java yet:
# pid_alive would call it dead (seen in CI under load), so wait_ready uses this.
pid_exists() {
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ -n $stat && ${stat# } != Z* ]]
}

# running PIDFILE [MAIN_CLASS]: prints the pid (for a broker in a container: the container's
# name, see launch) and returns 0 if that broker (or MAIN_CLASS) is alive
running() {
  local pid dir=${1%/*}
  if [[ ${1##*/} == kafka.pid && -f $dir/kafka.container ]]; then
    pid=$(<"$dir/kafka.container")
    [[ $(docker inspect -f '{{.State.Running}}' "$pid" 2>/dev/null) == true ]] || return 1
    echo "$pid"
    return 0
  fi
  [[ -f $1 ]] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  pid_alive "$pid" "${2:-}" || return 1
  echo "$pid"
}

# write_props FILE NODE_ID PORT CONTROLLER_PORT DATA_DIR MODE(single|cluster)
write_props() {
  local file=$1 id=$2 port=$3 cport=$4 data=$5 mode=$6
  {
    if zk_mode; then
      # ZooKeeper mode: no controller listener; the ZooKeeper of this run dir (zk_port)
      cat <<EOF
# generated by scripts/kafka.sh ($mode, ZooKeeper mode) - no trailing comments in .properties files
broker.id=$id
listeners=PLAINTEXT://$HOST:$port
advertised.listeners=PLAINTEXT://$HOST:$port
inter.broker.listener.name=PLAINTEXT
zookeeper.connect=$HOST:$(zk_port "$mode")
EOF
    else
      cat <<EOF
# generated by scripts/kafka.sh ($mode) - no trailing comments in .properties files
process.roles=broker,controller
node.id=$id
listeners=PLAINTEXT://$HOST:$port,CONTROLLER://$HOST:$cport
advertised.listeners=PLAINTEXT://$HOST:$port,CONTROLLER://$HOST:$cport
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
EOF
    fi
    cat <<EOF
log.dirs=$data
num.partitions=3
auto.create.topics.enable=false
offsets.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
# classic protocol: allow short client session.timeout.ms in tests (default floor 6000)
group.min.session.timeout.ms=1000
# consumer protocol (KIP-848): defaults unchanged (5 s / 45 s) but allow tests to
# lower them per group (group configs consumer.session.timeout.ms etc.)
group.consumer.min.session.timeout.ms=1000
group.consumer.min.heartbeat.interval.ms=500
EOF
    if [[ $mode == single ]]; then
      zk_mode || cat <<EOF
# dynamic quorum (KIP-853), formatted with --standalone
controller.quorum.bootstrap.servers=$HOST:$cport
EOF
      cat <<EOF
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
EOF
    else
      local voters="" n
      for n in "${CLUSTER_NODES[@]}"; do
        voters+="${voters:+,}$n@$HOST:$(cluster_cport "$n")"
      done
      if zk_mode; then
        cat <<EOF
# a killed broker's ZooKeeper session expires after 3 s, then the controller moves its leaders
# (default 18000; ZooKeeper's tickTime 500 allows down to 1000)
zookeeper.session.timeout.ms=3000
EOF
      else
        cat <<EOF
# static voters, formatted without --standalone
controller.quorum.voters=$voters
EOF
      fi
      cat <<EOF
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
# fence a killed broker fast (defaults 2000 / 9000 ms)
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
EOF
    fi
  } >"$file"
}

# format DIR CLUSTER_ID [extra StorageTool args]
format_dir() {
  local dir=$1 cid=$2
  shift 2
  local -a jvm=(java)
  local cp="$LIBS/*" l4j=$LOG4J_CONF
  if in_docker "$dir"; then # the container's own Kafka formats its data
    container_java "$dir"
    jvm=("${CONTAINER_JAVA[@]}") cp=$IMAGE_LIBS l4j=$IMAGE_CONF/${LOG4J_CONF##*/}
  fi
  if ! "${jvm[@]}" -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$l4j" \
    -cp "$cp" kafka.tools.StorageTool format -t "$cid" -c "$dir/server.properties" \
    --ignore-formatted "$@" >"$dir/format.log" 2>&1 9>&-; then
    cat "$dir/format.log" >&2
    die "StorageTool format failed for $dir"
  fi
}

# launch DIR HEAP: start a broker in the background (own session, survives
# this script), record its pid in DIR/kafka.pid and the log offset in DIR/.logoff
launch() {
  local dir=$1 heap=$2
  local -a heap_opts extra=()
  read -r -a heap_opts <<<"$heap"
  if [[ -n ${BIGPIPE_KAFKA_JVM_OPTS:-} ]]; then
    read -r -a extra <<<"$BIGPIPE_KAFKA_JVM_OPTS"
  fi
  mkdir -p "$dir/logs"
  touch "$dir/kafka.log"
  stat -c %s "$dir/kafka.log" >"$dir/.logoff"
  printf '===== %s starting Kafka %s =====\n' "$(date '+%F %T')" "$KAFKA_VERSION" >>"$dir/kafka.log"
  if in_docker "$dir"; then
    launch_container "$dir" "${heap_opts[@]}" "${JVM_PERF_OPTS[@]}" "${extra[@]}"
    return
  fi
  setsid java "${heap_opts[@]}" "${JVM_PERF_OPTS[@]}" "${extra[@]}" \
    -Dlog4j2.configurationFile="$LOG4J_CONF" -Dkafka.logs.dir="$dir/logs" \
    -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
    </dev/null >>"$dir/kafka.log" 2>&1 9>&- &
  echo $! >"$dir/kafka.pid"
  disown $! 2>/dev/null || true
}

# log_since_start DIR: broker log written since the last launch
log_since_start() {
  local off=0
  [[ -f $1/.logoff ]] && off=$(<"$1/.logoff")
  tail -c +"$((off + 1))" "$1/kafka.log" 2>/dev/null
}

# node_ready DIR PORT: process alive, port open and answering Kafka requests,
# readiness line logged
node_ready() {
  running "$1/kafka.pid" >/dev/null || return 1
  kafka_answers "$HOST" "$2" || return 1
  # not `log_since_start | grep -q`: grep -q stops at the first match, and under
  # pipefail tail's SIGPIPE would then read as "not ready"
  grep -qF "$READY_LINE" <(log_since_start "$1")
}

# wait_ready T0 DIR:PORT...  - fails (with log tails) at the deadline or when a node dies
wait_ready() {
  local t0=$1
  shift
  local deadline=$(($(now_ms) + READY_TIMEOUT * 1000)) spec dir port pending
  while :; do
    pending=()
    for spec in "$@"; do
      dir=${spec%:*} port=${spec##*:}
      if ! node_exists "$dir"; then
        log "broker in $dir died during start-up; last 50 log lines:"
        tail -n 50 "$dir/kafka.log" >&2
        return 1
      fi
      node_ready "$dir" "$port" || pending+=("$spec")
    done
    ((${#pending[@]} == 0)) && return 0
    if (($(now_ms) > deadline)); then
      for spec in "${pending[@]}"; do
        dir=${spec%:*}
        log "broker in $dir not ready after ${READY_TIMEOUT}s; last 50 log lines:"
        tail -n 50 "$dir/kafka.log" >&2
      done
      log "gave up after $(elapsed "$t0") s"
      return 1
    fi
    sleep 0.2
  done
}

# stop_dir DIR SIGNAL [PIDFILE MAIN_CLASS]: stop the broker of DIR (TERM: wait STOP_TIMEOUT,
# then KILL), or the MAIN_CLASS process of DIR/PIDFILE (ZooKeeper)
stop_dir() {
  local dir=$1 sig=${2:-TERM} pidfile=${3:-kafka.pid} cls=${4:-} pid t0
  if [[ $pidfile == kafka.pid && -f $dir/kafka.container ]]; then
    stop_container "$dir" "$sig"
    return
  fi
  if ! pid=$(running "$dir/$pidfile" "$cls"); then
    rm -f "$dir/$pidfile"
    return 0
  fi
  t0=$(now_ms)
  kill -s "$sig" "$pid" 2>/dev/null || true
  local deadline=$(($(now_ms) + STOP_TIMEOUT * 1000))
  while pid_alive "$pid" "$cls"; do
    if (($(now_ms) > deadline)); then
      log "pid $pid ignored SIG$sig for ${STOP_TIMEOUT}s, sending SIGKILL"
      kill -s KILL "$pid" 2>/dev/null || true
      deadline=$(($(now_ms) + 10000))
      sig=KILL
    fi
    sleep 0.1
  done
  rm -f "$dir/$pidfile"
  local what=broker
  [[ -z $cls ]] || what=${cls##*.}
  log "stopped $what pid $pid ($(basename "$dir"), SIG$sig) in $(elapsed "$t0") s"
}

# ------------------------------------------------- ZooKeeper (Kafka 2.x) --

ZK_MAIN=org.apache.zookeeper.server.ZooKeeperServerMain

# zk_port single|cluster: ZooKeeper's client port. It takes the controller port that a
# ZooKeeper-mode broker does not use: the single broker's (port+1), node 1's in the cluster.
zk_port() {
  if [[ $1 == single ]]; then echo "$CONTROLLER_PORT"; else cluster_cport 1; fi
}

# zk_start DIR PORT: start the ZooKeeper that ships in the broker's jars (standalone, data in
# DIR/data) unless it runs already, and wait until its port accepts connections
zk_start() {
  local dir=$1 port=$2 t0 deadline
  running "$dir/zookeeper.pid" "$ZK_MAIN" >/dev/null && return 0
  port_open "$HOST" "$port" && die "ZooKeeper port $port on $HOST is in use by a process not started from $dir"
  t0=$(now_ms)
  mkdir -p "$dir/data"
  # tickTime 500: sessions may be as short as 1 s (2 ticks), so a killed broker is noticed fast;
  # no admin server (it would take port 8080 and needs Jetty, which is not on the classpath)
  cat >"$dir/zookeeper.properties" <<EOF
# generated by scripts/kafka.sh
dataDir=$dir/data
clientPort=$port
clientPortAddress=$HOST
tickTime=500
maxClientCnxns=0
admin.enableServer=false
EOF
  local -a heap_opts
  read -r -a heap_opts <<<"$ZK_HEAP"
  printf '===== %s starting ZooKeeper (Kafka %s jars) =====\n' "$(date '+%F %T')" "$KAFKA_VERSION" >>"$dir/zookeeper.log"
  setsid java "${heap_opts[@]}" -Djava.awt.headless=true -Dzookeeper.admin.enableServer=false \
    -Dlog4j2.configurationFile="$LOG4J_CONF" -cp "$LIBS/*" "$ZK_MAIN" "$dir/zookeeper.properties" \
    </dev/null >>"$dir/zookeeper.log" 2>&1 9>&- &
  echo $! >"$dir/zookeeper.pid"
  disown $! 2>/dev/null || true
  deadline=$(($(now_ms) + READY_TIMEOUT * 1000))
  until port_open "$HOST" "$port"; do
    if ! pid_exists "$(<"$dir/zookeeper.pid")" || (($(now_ms) > deadline)); then
      log "ZooKeeper in $dir did not come up on $HOST:$port; last 50 log lines:"
      tail -n 50 "$dir/zookeeper.log" >&2
      stop_dir "$dir" KILL zookeeper.pid "$ZK_MAIN"
      return 1
    fi
    sleep 0.2
  done
  log "ZooKeeper ready on $HOST:$port in $(elapsed "$t0") s"
}

zk_stop() { stop_dir "$1" TERM zookeeper.pid "$ZK_MAIN"; }

# ------------------------------------------------------------- containers --

# BIGPIPE_KAFKA_DOCKER=run (or =1 where there is no compose command): every broker this
# script starts runs in a container of KAFKA_IMAGE (built by `scripts/images.sh kafka` from
# the same Maven jars) with host networking, so ports and server.properties are the jar
# path's. The run dir is mounted at its own path and the broker, run as the caller's uid,
# appends to DIR/kafka.log there as a broker from the jars does. DIR/kafka.container names a
# node's container while it exists; DIR/kafka.image names the image and survives `stop`, so
# `start` and `start-node` bring a node back in a container whatever the environment says.
KAFKA_IMAGE=${BIGPIPE_KAFKA_IMAGE:-bigpipe-kafka:$KAFKA_VERSION}
IMAGE_LIBS='/opt/kafka/libs/*'
IMAGE_CONF=/opt/kafka/config
DOCKER_RUN=0

in_docker() { ((DOCKER_RUN)) || [[ -f $1/kafka.image ]]; }
node_image() { if [[ -f $1/kafka.image ]]; then cat "$1/kafka.image"; else echo "$KAFKA_IMAGE"; fi; }

# container_java DIR: sets CONTAINER_JAVA to a `docker run` prefix that runs the image's java
# as the caller, with DIR mounted (the caller adds the JVM arguments)
container_java() {
  CONTAINER_JAVA=(docker run --rm --network none --user "$(id -u):$(id -g)" -v "$1:$1"
    --entrypoint java "$(node_image "$1")")
}

# launch_container DIR JVM_ARGS...: the container counterpart of launch's setsid java
launch_container() {
  local dir=$1 name image
  shift
  name=bigpipe-kafka-$(basename "$dir")-$(printf %s "$dir" | cksum | cut -d' ' -f1)
  image=$(node_image "$dir")
  docker rm -f "$name" >/dev/null 2>&1 || true
  # bash execs java, so java is the container's PID 1 and `docker stop`'s SIGTERM reaches it
  # (a controlled shutdown, as for stop_dir's kill)
  # shellcheck disable=SC2016 # "$@" and "$0" are the inner bash's
  # the secured listeners' certificates and keys live beside the run dirs, not in them
  local -a mounts=(-v "$dir:$dir")
  [[ -d $SECURE_DIR ]] && mounts+=(-v "$SECURE_DIR:$SECURE_DIR:ro")
  docker run -d --name "$name" --network host --user "$(id -u):$(id -g)" "${mounts[@]}" \
    --entrypoint bash "$image" -c 'exec "$@" >>"$0" 2>&1' "$dir/kafka.log" \
    java "$@" -Dlog4j2.configurationFile="$IMAGE_CONF/${LOG4J_CONF##*/}" -Dkafka.logs.dir="$dir/logs" \
    -cp "$IMAGE_LIBS" kafka.Kafka "$dir/server.properties" >/dev/null 9>&- ||
    die "docker run of $image for $dir failed"
  echo "$name" >"$dir/kafka.container"
  echo "$image" >"$dir/kafka.image"
}

# node_exists DIR: the broker of DIR exists (pid_exists, or its container is not gone)
node_exists() {
  if [[ -f $1/kafka.container ]]; then
    case $(docker inspect -f '{{.State.Status}}' "$(<"$1/kafka.container")" 2>/dev/null) in
      created | running | restarting) return 0 ;;
      *) return 1 ;;
    esac
  fi
  pid_exists "$(cat "$1/kafka.pid" 2>/dev/null)"
}

# stop_container DIR SIGNAL: stop_dir for a broker in a container; the stopped container is
# removed (its output is in DIR/kafka.log, its data in DIR)
stop_container() {
  local dir=$1 sig=$2 name t0
  name=$(<"$dir/kafka.container")
  t0=$(now_ms)
  if [[ $(docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null) == true ]]; then
    if [[ $sig == TERM ]]; then
      docker stop -t "$STOP_TIMEOUT" "$name" >/dev/null || true # SIGTERM, SIGKILL after the timeout
    else
      docker kill -s "$sig" "$name" >/dev/null || true
      timeout 30 docker wait "$name" >/dev/null || true
    fi
    log "stopped broker container $name ($(basename "$dir"), SIG$sig) in $(elapsed "$t0") s"
  fi
  docker rm -f "$name" >/dev/null 2>&1 || true
  rm -f "$dir/kafka.container"
}

# docker_run_ready: a Docker engine answers and KAFKA_IMAGE is there, built with
# scripts/images.sh when missing; else false with the reason in DOCKER_WHY
docker_run_ready() {
  DOCKER_WHY=""
  if ! command -v docker >/dev/null 2>&1; then
    DOCKER_WHY="there is no docker command"
  elif ! docker info >/dev/null 2>&1; then
    DOCKER_WHY="no Docker engine answers"
  elif ! docker image inspect "$KAFKA_IMAGE" >/dev/null 2>&1; then
    log "building the image $KAFKA_IMAGE (scripts/images.sh kafka) ..."
    BIGPIPE_KAFKA_VERSION=$KAFKA_VERSION BIGPIPE_KAFKA_IMAGE=$KAFKA_IMAGE \
      "$REPO_ROOT/scripts/images.sh" kafka 9>&- ||
      DOCKER_WHY="the image $KAFKA_IMAGE is missing and scripts/images.sh kafka could not build it"
  fi
  [[ -z $DOCKER_WHY ]]
}

# pick_runner: whether the brokers this command starts run in containers (DOCKER_RUN=1) or
# from the jars, after BIGPIPE_KAFKA_DOCKER (=1 tries compose first, in single_up)
pick_runner() {
  case ${BIGPIPE_KAFKA_DOCKER:-0} in
    run)
      docker_run_ready || die "BIGPIPE_KAFKA_DOCKER=run but $DOCKER_WHY"
      DOCKER_RUN=1
      ;;
    1)
      if docker_run_ready; then
        DOCKER_RUN=1
        log "BIGPIPE_KAFKA_DOCKER=1: Kafka in a container of $KAFKA_IMAGE (docker run --network host)"
      else
        log "BIGPIPE_KAFKA_DOCKER=1 but $DOCKER_WHY: using the Maven jars"
      fi
      ;;
  esac
}

# ------------------------------------------------------- secured listeners --
#
# The single node also listens, besides PLAINTEXT and CONTROLLER, on
#   SSL            PORT+2  TLS, client certificate required (mTLS; principal User:CN=bigpipe)
#   SASL_PLAINTEXT PORT+3  SASL PLAIN / SCRAM-SHA-256 / SCRAM-SHA-512 without TLS
#   SASL_SSL       PORT+4  the same SASL mechanisms over TLS (no client certificate)
# with StandardAuthorizer: the PLAINTEXT and CONTROLLER principal (User:ANONYMOUS) and User:admin
# are super users, so the plaintext suite sees no difference; bigpipe's principals get only the
# ACLs it needs, on topics and groups starting with SECURE_PREFIX. Certificates (PEM, made with
# openssl) and client .properties files live in SECURE_DIR, kept across up/down until they near
# expiry, so `up` stays fast.

SECURE_DIR=$(realpath -m "$RUN_ROOT/secure")
# user:password pairs: PLAIN users via the listeners' JAAS config, SCRAM users (both SHA-256 and
# SHA-512) in the KRaft metadata via `kafka-storage format --add-scram`. Test-only secrets.
SECURE_USERS=(admin:admin-secret bigpipe:bigpipe-secret limited:limited-secret)

# BIGPIPE_KAFKA_SECURE=1/0 turns the secured listeners on/off; unset, they are on for Kafka 3.5+
# (the first KRaft release whose storage tool can create SCRAM users).
secure_enabled() {
  local v=${BIGPIPE_KAFKA_SECURE:-}
  # StandardAuthorizer and SCRAM users made at format time are KRaft's
  if zk_mode; then
    [[ $v == 1 ]] && die "BIGPIPE_KAFKA_SECURE=1 needs KRaft mode; the secured listeners are not set up in ZooKeeper mode"
    return 1
  fi
  if [[ -z $v ]]; then
    case $KAFKA_VERSION in 0.* | 1.* | 2.* | 3.[0-4] | 3.[0-4].*) v=0 ;; *) v=1 ;; esac
  fi
  [[ $v == 1 ]]
}

# secure_leaf TMP NAME SUBJECT EXTENSIONS: a key and a certificate signed by TMP/ca.*
secure_leaf() {
  local t=$1 name=$2 subj=$3 ext=$4
  openssl req -new -newkey rsa:2048 -nodes -keyout "$t/$name.key" -out "$t/$name.csr" \
    -subj "$subj" 2>>"$t/openssl.log"
  openssl x509 -req -in "$t/$name.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" \
    -set_serial "0x$(openssl rand -hex 8)" -days 825 -sha256 -out "$t/$name.pem" \
    -extfile <(printf '%b\n' "$ext") 2>>"$t/openssl.log"
  rm -f "$t/$name.csr"
  # Kafka's PEM keystore: the PKCS#8 key and the certificate chain in one file
  cat "$t/$name.key" "$t/$name.pem" "$t/ca.pem" >"$t/$name-keystore.pem"
}

# secure_certs: a CA, the broker's certificate (localhost, 127.0.0.1, ::1) and the client's
# (CN=bigpipe) in SECURE_DIR, unless valid ones are there for at least another day
secure_certs() {
  local f fresh=0 t
  for f in ca.pem ca.key broker.pem broker-keystore.pem client.pem client.key client-keystore.pem; do
    [[ -s $SECURE_DIR/$f ]] || fresh=1
  done
  if ((fresh == 0)) && openssl x509 -checkend 86400 -noout -in "$SECURE_DIR/broker.pem" >/dev/null &&
    openssl x509 -checkend 86400 -noout -in "$SECURE_DIR/client.pem" >/dev/null; then
    return 0
  fi
  require openssl "makes the certificates of the secured listeners (apt-get install openssl, or BIGPIPE_KAFKA_SECURE=0)"
  mkdir -p "$(dirname "$SECURE_DIR")"
  t=$(mktemp -d "$SECURE_DIR.XXXXXX")
  if ! {
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$t/ca.key" -out "$t/ca.pem" -days 3650 \
      -sha256 -subj "/CN=bigpipe test CA" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>>"$t/openssl.log" &&
      secure_leaf "$t" broker "/CN=localhost" \
        'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE' &&
      secure_leaf "$t" client "/CN=bigpipe" 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE'
  }; then
    cat "$t/openssl.log" >&2
    rm -rf "$t"
    die "openssl could not make the test certificates"
  fi
  rm -f "$t/openssl.log"
  chmod 755 "$t"
  rm -rf "$SECURE_DIR"
  mv -T "$t" "$SECURE_DIR"
  log "made a test CA and broker/client certificates in $SECURE_DIR"
}

# secure_client_props NAME PROTOCOL [MECHANISM USER PASSWORD]: SECURE_DIR/NAME.properties, a
# Java client config (--command-config of Kafka's tools) for one listener and principal
secure_client_props() {
  local name=$1 proto=$2 mech=${3:-} user=${4:-} pass=${5:-} module
  {
    echo "# generated by scripts/kafka.sh: $proto${mech:+ $mech as $user}"
    echo "security.protocol=$proto"
    if [[ $proto == *SSL ]]; then
      echo "ssl.truststore.type=PEM"
      echo "ssl.truststore.location=$SECURE_DIR/ca.pem"
    fi
    if [[ $proto == SSL && $name != *no-cert ]]; then
      echo "ssl.keystore.type=PEM"
      echo "ssl.keystore.location=$SECURE_DIR/client-keystore.pem"
    fi
    if [[ -n $mech ]]; then
      module=org.apache.kafka.common.security.scram.ScramLoginModule
      [[ $mech == PLAIN ]] && module=org.apache.kafka.common.security.plain.PlainLoginModule
      echo "sasl.mechanism=$mech"
      echo "sasl.jaas.config=$module required username=\"$user\" password=\"$pass\";"
    fi
  } >"$SECURE_DIR/$name.properties"
}

# secure_files: certificates, client configs and it.env (the environment of it/security.rs)
secure_files() {
  secure_certs
  secure_client_props ssl SSL
  secure_client_props ssl-no-cert SSL
  secure_client_props sasl-plaintext-scram-sha-256 SASL_PLAINTEXT SCRAM-SHA-256 bigpipe bigpipe-secret
  secure_client_props sasl-ssl-scram-sha-512 SASL_SSL SCRAM-SHA-512 bigpipe bigpipe-secret
  secure_client_props sasl-ssl-plain SASL_SSL PLAIN bigpipe bigpipe-secret
  secure_client_props admin SASL_PLAINTEXT PLAIN admin admin-secret
  secure_client_props limited SASL_PLAINTEXT SCRAM-SHA-256 limited limited-secret
  secure_client_props wrong-password SASL_SSL SCRAM-SHA-512 bigpipe not-the-password
  cat >"$SECURE_DIR/it.env" <<EOF
IT_KAFKA_SECURE_BASE=$HOST:$SSL_PORT
IT_KAFKA_SECURE_DIR=$SECURE_DIR
EOF
}

# secure_broker_props FILE: adds the secured listeners, SASL and the authorizer to a
# server.properties written by write_props (single mode)
secure_broker_props() {
  local file=$1 jaas_plain="" pair l m
  for pair in "${SECURE_USERS[@]}"; do jaas_plain+=" user_${pair%%:*}=\"${pair#*:}\""; done
  local extra="SSL://$HOST:$SSL_PORT,SASL_PLAINTEXT://$HOST:$SASL_PLAINTEXT_PORT,SASL_SSL://$HOST:$SASL_SSL_PORT"
  sed -i -e "s|^listeners=.*|&,$extra|" -e "s|^advertised.listeners=.*|&,$extra|" \
    -e "s|^listener.security.protocol.map=.*|&,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL|" "$file"
  {
    cat <<EOF
# secured listeners: SSL with client certificates, SASL over plaintext and TLS (PEM stores)
ssl.keystore.type=PEM
ssl.keystore.location=$SECURE_DIR/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$SECURE_DIR/ca.pem
listener.name.ssl.ssl.client.auth=required
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
# ACLs; PLAINTEXT and CONTROLLER connect as User:ANONYMOUS, a super user like admin
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:ANONYMOUS;User:admin
EOF
    for l in sasl_plaintext sasl_ssl; do
      echo "listener.name.$l.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$jaas_plain;"
      for m in scram-sha-256 scram-sha-512; do
        echo "listener.name.$l.$m.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
      done
    done
  } >>"$file"
}

# secure_format_args: the StorageTool arguments that create the SCRAM users (one per line)
secure_format_args() {
  local pair m
  for pair in "${SECURE_USERS[@]}"; do
    for m in SCRAM-SHA-256 SCRAM-SHA-512; do
      printf '%s\n' --add-scram "$m=[name=${pair%%:*},password=${pair#*:}]"
    done
  done
}

# JVM flags of the short tool runs of the secured setup: C1 only and the serial collector start
# faster and burn less CPU than the defaults (secure-check here, under load: 126 s -> 97 s)
QUICK_TOOL_OPTS=${BIGPIPE_KAFKA_TOOL_OPTS:--Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC}

# run_tool ARGS...: `tool` in a child process (cmd_tool execs), without the lock fd
run_tool() { BIGPIPE_KAFKA_TOOL_OPTS=$QUICK_TOOL_OPTS bash "$REPO_ROOT/scripts/kafka.sh" tool "$@" 9>&-; }

# secure_acls: what bigpipe needs on topics and groups starting with SECURE_PREFIX, for its SASL
# user and its certificate's principal: Describe (metadata, list offsets), Read (fetch), Write
# (produce), Create (CreateTopics), DescribeConfigs (max.message.bytes) on topics; Read on groups
# (join, sync, heartbeat, offsets; implies Describe for FindCoordinator). User:limited gets the
# same without Create. Set through PLAINTEXT (a super user); adding an existing ACL is a no-op.
# Three commands, since one command gives every operation to every resource it names and
# groups know no Write or Create; run side by side, as each is a JVM start.
secure_acls() {
  local t0 out=$SINGLE_DIR/acls.log p rc=0
  local b=(--bootstrap-server "$HOST:$PORT" --add --force)
  local topic=(--topic "$SECURE_PREFIX" --resource-pattern-type prefixed)
  local group=(--group "$SECURE_PREFIX" --resource-pattern-type prefixed)
  local ours=(--allow-principal User:bigpipe --allow-principal "User:CN=bigpipe")
  local -a pids=()
  t0=$(now_ms)
  : >"$out"
  run_tool acls "${b[@]}" "${ours[@]}" --allow-principal User:limited "${topic[@]}" \
    --operation Describe --operation Read --operation Write --operation DescribeConfigs >>"$out" 2>&1 &
  pids+=($!)
  run_tool acls "${b[@]}" "${ours[@]}" "${topic[@]}" --operation Create >>"$out" 2>&1 &
  pids+=($!)
  run_tool acls "${b[@]}" "${ours[@]}" --allow-principal User:limited "${group[@]}" \
    --operation Read >>"$out" 2>&1 &
  pids+=($!)
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  if ((rc)); then
    cat "$out" >&2
    return 1
  fi
  log "ACLs on '$SECURE_PREFIX*' for User:bigpipe, User:CN=bigpipe, User:limited set in $(elapsed "$t0") s"
}

# single_ports: the ports the single node listens on
single_ports() {
  echo "$PORT" "$CONTROLLER_PORT"
  if secure_enabled; then echo "$SSL_PORT" "$SASL_PLAINTEXT_PORT" "$SASL_SSL_PORT"; fi
}

secure_summary() {
  secure_enabled || return 0
  echo "  secured: SSL (mTLS) $HOST:$SSL_PORT, SASL_PLAINTEXT $HOST:$SASL_PLAINTEXT_PORT," \
    "SASL_SSL $HOST:$SASL_SSL_PORT; files in $SECURE_DIR ($SECURE_DIR/it.env: the it/ environment)"
}

# ---------------------------------------------------------- secure-check --

# tool_config_flag producer|consumer: the console tools' config-file flag in the tools version
tool_config_flag() {
  case ${BIGPIPE_KAFKA_TOOLS_VERSION:-$KAFKA_VERSION} in
    3.*) echo "--$1.config" ;;
    *) echo --command-config ;;
  esac
}

# check_mode NAME PORT: as NAME.properties' principal, create a topic (the Create ACL), produce a
# record with the console producer and read it back with the console consumer in a group
check_mode() {
  local name=$1 port=$2 t0 topic out cfg=$SECURE_DIR/$1.properties
  local bs=(--bootstrap-server "$HOST:$port")
  t0=$(now_ms)
  topic=${SECURE_PREFIX}check-$name-$RUN_ID
  if ! out=$(timeout 120 env BIGPIPE_KAFKA_TOOL_OPTS="$QUICK_TOOL_OPTS" bash "$REPO_ROOT/scripts/kafka.sh" tool topics "${bs[@]}" --command-config "$cfg" \
    --create --topic "$topic" --partitions 1 --replication-factor 1 2>&1 9>&-); then
    printf '%s\n' "$out" >&2
    echo "FAIL $name: create $topic on $HOST:$port"
    return 1
  fi
  if ! out=$(echo "hello-$name" | timeout 120 env BIGPIPE_KAFKA_TOOL_OPTS="$QUICK_TOOL_OPTS" bash "$REPO_ROOT/scripts/kafka.sh" tool console-producer \
    "${bs[@]}" "$(tool_config_flag producer)" "$cfg" --topic "$topic" 2>&1 9>&-); then
    printf '%s\n' "$out" >&2
    echo "FAIL $name: produce to $topic"
    return 1
  fi
  out=$(timeout 120 env BIGPIPE_KAFKA_TOOL_OPTS="$QUICK_TOOL_OPTS" bash "$REPO_ROOT/scripts/kafka.sh" tool console-consumer "${bs[@]}" \
    "$(tool_config_flag consumer)" "$cfg" --topic "$topic" --group "${SECURE_PREFIX}check-$name-$RUN_ID" \
    --from-beginning --max-messages 1 --timeout-ms 60000 2>&1 9>&-) || true
  if [[ $out != *"hello-$name"* ]]; then
    printf '%s\n' "$out" >&2
    echo "FAIL $name: the record did not come back from $topic"
    return 1
  fi
  echo "ok   $name on $HOST:$port: created $topic, produced and consumed a record ($(elapsed "$t0") s)"
}

# check_refused NAME PORT PATTERN ARGS...: `tool topics ARGS` as NAME.properties' principal
# fails, with output matching the extended regex PATTERN
check_refused() {
  local name=$1 port=$2 pattern=$3 t0 out
  shift 3
  t0=$(now_ms)
  if out=$(timeout 120 env BIGPIPE_KAFKA_TOOL_OPTS="$QUICK_TOOL_OPTS" bash "$REPO_ROOT/scripts/kafka.sh" tool topics --bootstrap-server "$HOST:$port" \
    --command-config "$SECURE_DIR/$name.properties" "$@" 2>&1 9>&-); then
    printf '%s\n' "$out" >&2
    echo "FAIL $name: 'topics $*' succeeded on $HOST:$port but must be refused"
    return 1
  fi
  if ! grep -qE "$pattern" <<<"$out"; then
    printf '%s\n' "$out" >&2
    echo "FAIL $name: 'topics $*' failed, but not with /$pattern/"
    return 1
  fi
  echo "ok   $name on $HOST:$port: refused, $(grep -oE "$pattern" <<<"$out" | sed -n 1p) ($(elapsed "$t0") s)"
}

# secure-check: proves each secured listener with Kafka's own tools, without bigpipe
cmd_secure_check() {
  secure_enabled || die "the secured listeners are off (BIGPIPE_KAFKA_SECURE=0, or Kafka $KAFKA_VERSION)"
  [[ -s $SECURE_DIR/ssl.properties ]] ||
    die "no $SECURE_DIR/ssl.properties: start the broker with 'scripts/kafka.sh up'"
  local p rc=0 t0
  for p in "$SSL_PORT" "$SASL_PLAINTEXT_PORT" "$SASL_SSL_PORT"; do
    port_open "$HOST" "$p" || die "nothing listens on $HOST:$p: start the broker with 'scripts/kafka.sh up'"
  done
  RUN_ID=$(date +%s)-$$
  t0=$(now_ms)
  check_mode ssl "$SSL_PORT" || rc=1
  check_mode sasl-plaintext-scram-sha-256 "$SASL_PLAINTEXT_PORT" || rc=1
  check_mode sasl-ssl-scram-sha-512 "$SASL_SSL_PORT" || rc=1
  check_mode sasl-ssl-plain "$SASL_SSL_PORT" || rc=1
  check_refused limited "$SASL_PLAINTEXT_PORT" 'TopicAuthorizationException|Authorization failed' \
    --create --topic "${SECURE_PREFIX}check-limited-$RUN_ID" --partitions 1 --replication-factor 1 || rc=1
  check_refused wrong-password "$SASL_SSL_PORT" 'SaslAuthenticationException|Authentication failed' --list || rc=1
  check_refused ssl-no-cert "$SSL_PORT" 'SslAuthenticationException|SSL handshake failed|Failed to process post-handshake messages' --list || rc=1
  if ((rc)); then
    echo "secure-check FAILED after $(elapsed "$t0") s"
    return 1
  fi
  echo "secure-check passed: 4 modes and 3 refusals in $(elapsed "$t0") s"
}

# ------------------------------------------------------------ single node --

SINGLE_DIR=$RUN_ROOT/single

# Set by probe_docker: the compose command in use (the v2 plugin, else v1's docker-compose),
# or why the docker path cannot be used.
COMPOSE=()
DOCKER_WHY=""

probe_docker() {
  COMPOSE=()
  DOCKER_WHY=""
  if ! command -v docker >/dev/null 2>&1; then
    DOCKER_WHY="there is no docker command"
  elif ! docker info >/dev/null 2>&1; then
    DOCKER_WHY="no Docker engine answers"
  elif docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1 && docker-compose version >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
  else
    DOCKER_WHY="neither 'docker compose' (v2 plugin) nor 'docker-compose' (v1) is installed"
  fi
}

use_docker() {
  [[ ${BIGPIPE_KAFKA_DOCKER:-0} == 1 ]] || return 1
  probe_docker
  [[ -z $DOCKER_WHY ]]
}
compose() { "${COMPOSE[@]}" -f "$REPO_ROOT/docker-compose.yml" "$@"; }

# Starts the compose file's kafka service and waits until it answers on $HOST:9092; v1 has
# no `up --wait`, so readiness is polled the same way for both.
docker_up() {
  local t0=$1 deadline
  compose up -d kafka || return 1
  deadline=$(($(now_ms) + READY_TIMEOUT * 1000))
  until kafka_answers "$HOST" 9092; do
    (($(now_ms) < deadline)) || { log "the kafka container did not answer within ${READY_TIMEOUT}s"; return 1; }
    sleep 1
  done
  echo "Kafka (docker, ${COMPOSE[*]}) ready on $HOST:9092 in $(elapsed "$t0") s"
}

single_up() {
  local keep=$1 t0 pid
  t0=$(now_ms)
  if use_docker; then
    log "BIGPIPE_KAFKA_DOCKER=1 and a Docker engine answers: using ${COMPOSE[*]}"
    if docker_up "$t0"; then
      return 0
    fi
    log "${COMPOSE[*]} could not start Kafka (above): stopping it"
    compose rm --stop --force kafka >/dev/null 2>&1 || true
  fi
  pick_runner
  if pid=$(running "$SINGLE_DIR/kafka.pid"); then
    if node_ready "$SINGLE_DIR" "$PORT"; then
      echo "Kafka already running (pid $pid) and healthy on $HOST:$PORT"
      return 0
    fi
    log "Kafka pid $pid is starting; waiting for it"
    wait_ready "$t0" "$SINGLE_DIR:$PORT" || exit 1
    echo "Kafka ready on $HOST:$PORT (pid $pid) after $(elapsed "$t0") s"
    return 0
  fi
  # a ZooKeeper left running (broker killed) is reused with --keep, else stopped with its data
  if zk_mode && [[ $keep == 0 ]]; then zk_stop "$SINGLE_DIR/zookeeper"; fi
  local p
  for p in $(single_ports); do
    # in ZooKeeper mode the controller port is this run dir's ZooKeeper's (kept with --keep)
    if [[ $p == "$CONTROLLER_PORT" ]] && running "$SINGLE_DIR/zookeeper/zookeeper.pid" "$ZK_MAIN" >/dev/null; then
      continue
    fi
    if port_open "$HOST" "$p"; then
      die "port $p on $HOST is in use by a process not started from $SINGLE_DIR (ports: $(single_ports))"
    fi
  done
  ensure_libs
  local -a format_extra=()
  if secure_enabled; then
    secure_files
    mapfile -t format_extra < <(secure_format_args)
  fi
  if [[ $keep == 1 && -f $SINGLE_DIR/server.properties ]]; then
    log "reusing $SINGLE_DIR (--keep)"
  else
    rm -rf "$SINGLE_DIR"
    mkdir -p "$SINGLE_DIR"
    write_props "$SINGLE_DIR/server.properties" 1 "$PORT" "$CONTROLLER_PORT" "$SINGLE_DIR/data" single
    if secure_enabled; then secure_broker_props "$SINGLE_DIR/server.properties"; fi
  fi
  if zk_mode; then
    zk_start "$SINGLE_DIR/zookeeper" "$(zk_port single)" || exit 1
  else
    format_dir "$SINGLE_DIR" "$SINGLE_CLUSTER_ID" --standalone "${format_extra[@]}"
  fi
  launch "$SINGLE_DIR" "$SINGLE_HEAP"
  if ! wait_ready "$t0" "$SINGLE_DIR:$PORT"; then
    stop_dir "$SINGLE_DIR" KILL
    zk_stop "$SINGLE_DIR/zookeeper"
    exit 1
  fi
  # ACLs live in the metadata log: a restart on kept data (stop/start, the fault suite) has them
  if secure_enabled && [[ ! -f $SINGLE_DIR/.acls ]]; then
    if ! secure_acls; then
      stop_dir "$SINGLE_DIR" KILL
      die "could not set the ACLs of the secured listeners (above)"
    fi
    touch "$SINGLE_DIR/.acls"
  fi
  echo "Kafka $KAFKA_VERSION ready on $HOST:$PORT (pid $(running "$SINGLE_DIR/kafka.pid")) in $(elapsed "$t0") s"
  secure_summary
}

single_start() {
  [[ -f $SINGLE_DIR/server.properties && -d $SINGLE_DIR/data ]] ||
    die "no stopped broker data in $SINGLE_DIR (run 'up' first)"
  single_up 1
}

single_down() {
  local keep=$1
  local docker=0
  if use_docker; then
    docker=1
    compose rm --stop --force --volumes kafka || true
  fi
  # Also with docker: `up` falls back to the jars when the container does not start.
  if running "$SINGLE_DIR/kafka.pid" >/dev/null; then
    stop_dir "$SINGLE_DIR" TERM
  else
    rm -f "$SINGLE_DIR/kafka.pid"
    # a container whose broker died is removed too
    [[ -f $SINGLE_DIR/kafka.container ]] && stop_dir "$SINGLE_DIR" TERM
    [[ $docker == 1 ]] || echo "Kafka (single) not running"
  fi
  # after the broker, whose controlled shutdown goes through ZooKeeper (whatever the mode:
  # a ZooKeeper left from a 2.x run must not outlive its broker)
  zk_stop "$SINGLE_DIR/zookeeper"
  if [[ $keep == 0 ]]; then
    rm -rf "$SINGLE_DIR"
  fi
}

single_status() {
  local pid=""
  if use_docker; then
    compose ps kafka
  fi
  pid=$(running "$SINGLE_DIR/kafka.pid") || pid=""
  if kafka_answers "$HOST" "$PORT"; then
    echo "Kafka answers on $HOST:$PORT${pid:+ (pid $pid, run dir $SINGLE_DIR)}"
    return 0
  fi
  if [[ -n $pid ]]; then
    echo "Kafka pid $pid is running but $HOST:$PORT does not answer (yet)"
  elif port_open "$HOST" "$PORT"; then
    echo "something listens on $HOST:$PORT but does not answer Kafka requests"
  else
    echo "Kafka is not running on $HOST:$PORT"
  fi
  return 1
}

# ---------------------------------------------------------------- cluster --

CLUSTER_DIR=$RUN_ROOT/cluster
cluster_port() { echo $(($1 * 1000 + CLUSTER_BASE)); }
cluster_cport() { echo $(($1 * 1000 + CLUSTER_BASE + 1)); }
cluster_bootstrap() {
  local n out=""
  for n in "${CLUSTER_NODES[@]}"; do out+="${out:+,}$HOST:$(cluster_port "$n")"; done
  echo "$out"
}
node_dir() { echo "$CLUSTER_DIR/n$1"; }
check_node() {
  if ! [[ $1 =~ ^[0-9]+$ ]] || (($1 < 1 || $1 > ${#CLUSTER_NODES[@]})); then
    die "node must be 1..${#CLUSTER_NODES[@]}, got '$1'"
  fi
}

cluster_up() {
  local keep=$1 t0 n dir any=0 all=1
  local -a specs=() to_start=()
  t0=$(now_ms)
  pick_runner
  for n in "${CLUSTER_NODES[@]}"; do
    dir=$(node_dir "$n")
    specs+=("$dir:$(cluster_port "$n")")
    if running "$dir/kafka.pid" >/dev/null; then any=1; else all=0; fi
  done
  if ((any)); then
    if ((!all)); then
      for n in "${CLUSTER_NODES[@]}"; do
        dir=$(node_dir "$n")
        running "$dir/kafka.pid" >/dev/null || to_start+=("$n")
      done
      log "cluster partly running; starting node(s) ${to_start[*]} on their existing data"
      if zk_mode; then zk_start "$CLUSTER_DIR/zookeeper" "$(zk_port cluster)" || exit 1; fi
      for n in "${to_start[@]}"; do launch "$(node_dir "$n")" "$CLUSTER_HEAP"; done
    fi
    wait_ready "$t0" "${specs[@]}" || exit 1
    echo "Kafka cluster running and healthy on $(cluster_bootstrap)"
    return 0
  fi
  if zk_mode && [[ $keep == 0 ]]; then zk_stop "$CLUSTER_DIR/zookeeper"; fi
  for n in "${CLUSTER_NODES[@]}"; do
    if port_open "$HOST" "$(cluster_port "$n")" ||
      { ! running "$CLUSTER_DIR/zookeeper/zookeeper.pid" "$ZK_MAIN" >/dev/null && port_open "$HOST" "$(cluster_cport "$n")"; }; then
      die "port $(cluster_port "$n") or $(cluster_cport "$n") is in use by a process not started from $CLUSTER_DIR"
    fi
  done
  ensure_libs
  if [[ $keep == 1 && -f $(node_dir 1)/server.properties ]]; then
    log "reusing $CLUSTER_DIR (--keep)"
  else
    rm -rf "$CLUSTER_DIR"
  fi
  if zk_mode; then
    mkdir -p "$CLUSTER_DIR"
    zk_start "$CLUSTER_DIR/zookeeper" "$(zk_port cluster)" || exit 1
  fi
  local -a fpids=()
  for n in "${CLUSTER_NODES[@]}"; do
    dir=$(node_dir "$n")
    mkdir -p "$dir"
    [[ -f $dir/server.properties ]] ||
      write_props "$dir/server.properties" "$n" "$(cluster_port "$n")" "$(cluster_cport "$n")" "$dir/data" cluster
    zk_mode && continue # no storage format in ZooKeeper mode
    format_dir "$dir" "$CLUSTER_CLUSTER_ID" &
    fpids+=($!)
  done
  for n in "${fpids[@]}"; do wait "$n" || die "format failed"; done
  for n in "${CLUSTER_NODES[@]}"; do launch "$(node_dir "$n")" "$CLUSTER_HEAP"; done
  if ! wait_ready "$t0" "${specs[@]}"; then
    for n in "${CLUSTER_NODES[@]}"; do stop_dir "$(node_dir "$n")" KILL; done
    zk_stop "$CLUSTER_DIR/zookeeper"
    exit 1
  fi
  echo "Kafka $KAFKA_VERSION cluster ready on $(cluster_bootstrap) in $(elapsed "$t0") s"
}

cluster_down() {
  local keep=$1 n
  local -a pids=()
  for n in "${CLUSTER_NODES[@]}"; do
    stop_dir "$(node_dir "$n")" TERM &
    pids+=($!)
  done
  for n in "${pids[@]}"; do wait "$n" || true; done
  zk_stop "$CLUSTER_DIR/zookeeper"
  if [[ $keep == 0 ]]; then
    rm -rf "$CLUSTER_DIR"
  fi
}

cluster_status() {
  local n dir pid rc=0
  for n in "${CLUSTER_NODES[@]}"; do
    dir=$(node_dir "$n")
    pid=$(running "$dir/kafka.pid") || pid=""
    if kafka_answers "$HOST" "$(cluster_port "$n")"; then
      echo "node $n: answers on $HOST:$(cluster_port "$n")${pid:+ (pid $pid)}"
    else
      echo "node $n: down${pid:+ (pid $pid alive, port not open)}"
      rc=1
    fi
  done
  return "$rc"
}

node_kill() {
  check_node "$1"
  local dir pid
  dir=$(node_dir "$1")
  if ! pid=$(running "$dir/kafka.pid"); then
    echo "node $1 is not running"
    return 0
  fi
  stop_dir "$dir" KILL
}

node_stop() {
  check_node "$1"
  stop_dir "$(node_dir "$1")" TERM
}

node_start() {
  check_node "$1"
  local dir pid t0 port
  pick_runner
  t0=$(now_ms)
  dir=$(node_dir "$1")
  port=$(cluster_port "$1")
  [[ -f $dir/server.properties && -f $dir/data/meta.properties ]] ||
    die "node $1 has no data in $dir (run 'up --cluster' first)"
  if pid=$(running "$dir/kafka.pid"); then
    wait_ready "$t0" "$dir:$port" || exit 1
    echo "node $1 already running (pid $pid) on $HOST:$port"
    return 0
  fi
  port_open "$HOST" "$port" && die "port $port is in use by another process"
  ensure_libs
  if zk_mode; then zk_start "$CLUSTER_DIR/zookeeper" "$(zk_port cluster)" || exit 1; fi
  launch "$dir" "$CLUSTER_HEAP"
  if ! wait_ready "$t0" "$dir:$port"; then
    stop_dir "$dir" KILL
    exit 1
  fi
  echo "node $1 ready on $HOST:$port (pid $(running "$dir/kafka.pid")) in $(elapsed "$t0") s"
}

# ------------------------------------------------------------------ tools --

tool_class() {
  # Kafka 2.x keeps most tools in kafka_2.13 under their old names (moved to kafka-tools in 3.x/4.0)
  if [[ $KAFKA_VERSION == 2.* ]]; then
    case $1 in
      topics) echo kafka.admin.TopicCommand && return ;;
      consumer-groups) echo kafka.admin.ConsumerGroupCommand && return ;;
      consumer-perf) echo kafka.tools.ConsumerPerformance && return ;;
      console-consumer) echo kafka.tools.ConsoleConsumer && return ;;
      get-offsets) echo kafka.tools.GetOffsetShell && return ;;
    esac
  fi
  case $1 in
    topics) echo org.apache.kafka.tools.TopicCommand ;;
    consumer-groups) echo org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    producer-perf) echo org.apache.kafka.tools.ProducerPerformance ;;
    consumer-perf) echo org.apache.kafka.tools.ConsumerPerformance ;;
    # Kafka 3.x keeps these two in kafka_2.13 (4.0 moved them to kafka-tools).
    console-producer)
      case $KAFKA_VERSION in 2.* | 3.*) echo kafka.tools.ConsoleProducer ;; *) echo org.apache.kafka.tools.ConsoleProducer ;; esac ;;
    console-consumer) echo org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    get-offsets) echo org.apache.kafka.tools.GetOffsetShell ;;
    metadata-quorum) echo org.apache.kafka.tools.MetadataQuorumCommand ;;
    api-versions)
      case $KAFKA_VERSION in 2.* | 3.*) echo kafka.admin.BrokerApiVersionsCommand ;; *) echo org.apache.kafka.tools.BrokerApiVersionsCommand ;; esac ;;
    configs) echo kafka.admin.ConfigCommand ;;
    acls)
      case $KAFKA_VERSION in 3.*) echo kafka.admin.AclCommand ;; *) echo org.apache.kafka.tools.AclCommand ;; esac ;;
    storage) echo kafka.tools.StorageTool ;;
    *) echo "$1" ;;
  esac
}

cmd_tool() {
  (($# >= 1)) || die "usage: tool <MainClass|alias> [args...]"
  # Client tools of another version than the broker (e.g. today's tools against a 3.x broker,
  # so scripts and tests need only one set of tool flags): run this again as that version.
  if [[ -n ${BIGPIPE_KAFKA_TOOLS_VERSION:-} && $BIGPIPE_KAFKA_TOOLS_VERSION != "$KAFKA_VERSION" ]]; then
    exec env BIGPIPE_KAFKA_VERSION="$BIGPIPE_KAFKA_TOOLS_VERSION" BIGPIPE_KAFKA_TOOLS_VERSION= \
      bash "$REPO_ROOT/scripts/kafka.sh" tool "$@"
  fi
  local cls
  cls=$(tool_class "$1")
  shift
  ensure_libs
  libs_current "$POM_DIR/tools-pom.xml" "$TOOLS_LIBS" || cmd_fetch_tools
  # tools-libs/* plus the broker jars it lacks (kafka_2.13, scala, ...) for
  # kafka.admin.ConfigCommand / kafka.tools.StorageTool; no jar twice, so
  # there is one SLF4J binding only
  local cp="$TOOLS_LIBS/*" jar
  for jar in "$LIBS"/*.jar; do
    [[ -f $TOOLS_LIBS/${jar##*/} ]] || cp+=":$jar"
  done
  local -a opts
  read -r -a opts <<<"${BIGPIPE_KAFKA_TOOL_OPTS:--Xmx512m}"
  exec java "${opts[@]}" -Djava.awt.headless=true -Dlog4j2.configurationFile="$LOG4J_CONF" \
    -cp "$cp" "$cls" "$@"
}

# Serialise the commands that start/stop brokers of one run dir (tests may
# call this script from parallel threads). The lock fd is closed for the
# broker and tool JVMs (9>&-), so only this script holds it.
take_lock() {
  command -v flock >/dev/null 2>&1 || return 0
  mkdir -p "$RUN_ROOT"
  exec 9>"$RUN_ROOT/.lock"
  flock -w 300 9 || die "another scripts/kafka.sh holds $RUN_ROOT/.lock for 300 s"
}

# ------------------------------------------------------------------- main --

main() {
  local cmd=${1:-help}
  (($# > 0)) && shift
  local cluster=0 keep=0 arg
  local -a rest=()
  if [[ $cmd != tool ]]; then
    for arg in "$@"; do
      case $arg in
        --cluster) cluster=1 ;;
        --keep) keep=1 ;;
        *) rest+=("$arg") ;;
      esac
    done
  fi
  case $cmd in
    up | down | stop | start | kill-node | stop-node | start-node) take_lock ;;
  esac
  case $cmd in
    fetch) cmd_fetch ;;
    fetch-tools) cmd_fetch_tools ;;
    up) if ((cluster)); then cluster_up "$keep"; else single_up "$keep"; fi ;;
    down) if ((cluster)); then cluster_down "$keep"; else single_down "$keep"; fi ;;
    stop) if ((cluster)); then cluster_down 1; else single_down 1; fi ;;
    start) if ((cluster)); then cluster_up 1; else single_start; fi ;;
    status) if ((cluster)); then cluster_status; else single_status; fi ;;
    kill-node) node_kill "${rest[0]:-}" ;;
    stop-node) node_stop "${rest[0]:-}" ;;
    start-node) node_start "${rest[0]:-}" ;;
    tool) cmd_tool "$@" ;;
    secure-check) cmd_secure_check ;;
    secure-enabled) secure_enabled ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
