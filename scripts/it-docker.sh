#!/usr/bin/env bash
# scripts/it-docker.sh (make it-docker) - the integration suite with Kafka in containers, as
# users run it: a Docker engine (Debian's docker.io installed and started here when none
# answers), the images of scripts/images.sh (base, Kafka, the FROM scratch bigpipe), then
# scripts/it.sh with BIGPIPE_KAFKA_DOCKER=run, so the single broker and the chaos tests'
# 3-node cluster run in containers and their stop/start/kill go through `docker`. The
# container tests (it/container.rs, ignored by a plain `make it`) run too. Whatever this
# started (dockerd, brokers) is stopped at the end; the images stay, so a second run skips
# building them. Arguments go to the test binary (e.g. `make it-docker ARGS=container::`).
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_ROOT=${BIGPIPE_KAFKA_RUN:-$PWD/.kafka}
export BIGPIPE_KAFKA_DOCKER=run
export IT_KAFKA_BOOTSTRAP=${IT_KAFKA_BOOTSTRAP:-127.0.0.1:${BIGPIPE_KAFKA_PORT:-9092}}

log() { printf '[it-docker] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

dockerd_pid=""
cleanup() {
  if [[ -n $dockerd_pid ]]; then
    log "stopping the dockerd started here (pid $dockerd_pid)"
    kill -TERM "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
  fi
}
trap cleanup EXIT

# A Docker engine: the one that answers, else dockerd started here without a bridge or
# iptables rules (machines without those rights; every container here uses host networking).
if ! docker info >/dev/null 2>&1; then
  if ! command -v dockerd >/dev/null 2>&1; then
    [[ $(id -u) == 0 ]] || die "no Docker engine answers and dockerd is not installed (apt-get install docker.io as root)"
    log "installing docker.io and debootstrap ..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
  fi
  [[ $(id -u) == 0 ]] || die "no Docker engine answers and only root can start dockerd here"
  mkdir -p "$RUN_ROOT"
  log "starting dockerd (log: $RUN_ROOT/dockerd.log) ..."
  setsid dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
    >"$RUN_ROOT/dockerd.log" 2>&1 </dev/null &
  dockerd_pid=$!
  for _ in $(seq 150); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || { tail -n 30 "$RUN_ROOT/dockerd.log" >&2; die "dockerd exited"; }
    sleep 0.2
  done
  docker info >/dev/null 2>&1 || die "dockerd did not answer within 30 s (see $RUN_ROOT/dockerd.log)"
fi
command -v debootstrap >/dev/null 2>&1 || docker image inspect "${BIGPIPE_BASE_IMAGE:-bigpipe-base:bookworm}" >/dev/null 2>&1 ||
  die "debootstrap is needed once to build the base image (apt-get install debootstrap)"

t0=$SECONDS
scripts/images.sh all
log "images ready in $((SECONDS - t0)) s"

t1=$SECONDS
scripts/it.sh --include-ignored "$@"
log "suite passed in $((SECONDS - t1)) s (all of it-docker: $((SECONDS - t0)) s)"
