#!/usr/bin/env bash
# scripts/images.sh - builds bigpipe's container images locally, with no image registry:
#   base     bigpipe-base:<suite>     Debian minbase made with debootstrap, imported with `docker import`
#   kafka    bigpipe-kafka:<version>  the base + Debian's JRE 17 + the Kafka jars kafka.sh fetches
#   bigpipe  bigpipe:local            FROM scratch: the static musl binary (`make musl`) and its config
# Each is skipped when it exists and is current (the Kafka image records the jar set it was
# built from, the bigpipe image the sha256 of its inputs). Run `scripts/images.sh help`.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

SUITE=${BIGPIPE_DEBIAN_SUITE:-bookworm}
BASE_IMAGE=${BIGPIPE_BASE_IMAGE:-bigpipe-base:$SUITE}
KAFKA_VERSION=${BIGPIPE_KAFKA_VERSION:-4.3.1}
KAFKA_IMAGE=${BIGPIPE_KAFKA_IMAGE:-bigpipe-kafka:$KAFKA_VERSION}
BIGPIPE_IMAGE=${BIGPIPE_IMAGE:-bigpipe:local}
MUSL_BIN=$REPO_ROOT/target/x86_64-unknown-linux-musl/release/bigpipe
CACHE_ROOT=${BIGPIPE_KAFKA_CACHE:-${HOME:-/tmp}/.cache/bigpipe}
LIBS=$CACHE_ROOT/kafka-$KAFKA_VERSION/libs

usage() {
  cat <<EOF
Usage: scripts/images.sh [all|base|kafka|bigpipe|list]   (default: all)

  base     $BASE_IMAGE: debootstrap --variant=minbase $SUITE from the mirror in apt's
           own sources (or BIGPIPE_DEBIAN_MIRROR), imported with 'docker import'; needs root
  kafka    $KAFKA_IMAGE: FROM the base, openjdk-17-jre-headless, the jars of
           'scripts/kafka.sh fetch' (tools/kafka/Dockerfile); builds the base first if missing
  bigpipe  $BIGPIPE_IMAGE: the FROM scratch stage of ./Dockerfile around the binary of
           'make musl' ($MUSL_BIN, built first if missing)
  list     the three images and whether each is there

Environment: BIGPIPE_DEBIAN_SUITE (default bookworm), BIGPIPE_DEBIAN_MIRROR, BIGPIPE_KAFKA_VERSION
(default 4.3.1), BIGPIPE_BASE_IMAGE, BIGPIPE_KAFKA_IMAGE, BIGPIPE_IMAGE (image names),
BIGPIPE_IMAGES_REBUILD=1 (rebuild even when current).
EOF
}

log() { printf '[images.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

require_engine() {
  command -v docker >/dev/null 2>&1 || die "no docker command (Debian: apt-get install docker.io)"
  docker info >/dev/null 2>&1 || die "no Docker engine answers (start dockerd; 'make it-docker' does)"
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
# build CONTEXT DOCKER_BUILD_ARGS...: `docker build` with the classic builder (no BuildKit
# needed; its deprecation notice and the step output go to a log shown only on failure)
build() {
  local ctx=$1
  shift
  if ! DOCKER_BUILDKIT=0 docker build "$@" "$ctx" >"$ctx.build.log" 2>&1; then
    tail -n 40 "$ctx.build.log" >&2
    rm -f "$ctx.build.log"
    die "docker build $* failed"
  fi
  rm -f "$ctx.build.log"
}

# image_label IMAGE KEY: the label's value, empty when the image or the label is missing
image_label() { docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true; }
rebuild() { [[ ${BIGPIPE_IMAGES_REBUILD:-0} == 1 ]]; }

# The Debian mirror apt on this machine already uses for $SUITE (one-line .list and deb822
# .sources files), so debootstrap reaches the same place apt does; deb.debian.org otherwise.
debian_mirror() {
  if [[ -n ${BIGPIPE_DEBIAN_MIRROR:-} ]]; then
    echo "$BIGPIPE_DEBIAN_MIRROR"
    return
  fi
  local f uri
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    uri=$(awk -v s="$SUITE" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
      if ($(i + 1) == s) { print $i; exit } }' "$f")
    [[ -n $uri ]] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    # stanzas are separated by blank lines; a stanza whose Suites hold $SUITE gives its first URI
    uri=$(awk -v s="$SUITE" '
      function flush() { if (hit && u != "") { print u; found = 1; exit } hit = 0; u = "" }
      /^[[:space:]]*$/ { flush(); next }
      /^URIs:/ { u = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) hit = 1 }
      END { if (!found) flush() }' "$f")
    [[ -n $uri ]] && { echo "$uri"; return; }
  done
  echo http://deb.debian.org/debian
}

build_base() {
  if image_exists "$BASE_IMAGE" && ! rebuild; then
    log "$BASE_IMAGE is there"
    return
  fi
  command -v debootstrap >/dev/null 2>&1 || die "no debootstrap (Debian: apt-get install debootstrap)"
  [[ $(id -u) == 0 ]] || die "debootstrap needs root to build $BASE_IMAGE"
  local mirror root t0=$SECONDS
  mirror=$(debian_mirror)
  root=$(mktemp -d "${TMPDIR:-/tmp}/bigpipe-base.XXXXXX")
  # shellcheck disable=SC2064 # expand $root now
  trap "rm -rf '$root'" EXIT
  log "debootstrap --variant=minbase $SUITE from $mirror (a few minutes) ..."
  if ! debootstrap --variant=minbase "$SUITE" "$root" "$mirror" >"$root.log" 2>&1; then
    tail -n 30 "$root.log" >&2
    rm -f "$root.log"
    die "debootstrap failed"
  fi
  rm -f "$root.log"
  # apt caches and lists are rebuilt by every `apt-get update`; keep the image small
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" --numeric-owner -c . |
    docker import --change 'CMD ["/bin/bash"]' --message "debootstrap --variant=minbase $SUITE $mirror" - "$BASE_IMAGE" >/dev/null
  rm -rf "$root"
  trap - EXIT
  log "built $BASE_IMAGE in $((SECONDS - t0)) s"
}

build_kafka() {
  "$REPO_ROOT/scripts/kafka.sh" fetch >&2
  local stamp
  # the jar set, and what else goes into the image
  stamp="$(<"$LIBS/.complete") files=$(cat "$REPO_ROOT"/tools/kafka/Dockerfile "$REPO_ROOT"/tools/kafka/*.properties | cksum | cut -d' ' -f1)"
  if [[ $(image_label "$KAFKA_IMAGE" bigpipe.kafka.jars) == "$stamp" ]] && ! rebuild; then
    log "$KAFKA_IMAGE is there ($stamp)"
    return
  fi
  build_base
  local ctx t0=$SECONDS
  ctx=$(mktemp -d "${TMPDIR:-/tmp}/bigpipe-kafka-image.XXXXXX")
  # shellcheck disable=SC2064 # expand $ctx now
  trap "rm -rf '$ctx'" EXIT
  mkdir -p "$ctx/config"
  cp -a "$LIBS" "$ctx/libs"
  rm -f "$ctx/libs/.complete"
  cp "$REPO_ROOT"/tools/kafka/*.properties "$ctx/config/"
  log "building $KAFKA_IMAGE ..."
  # --network host: RUN steps reach the Debian mirror although dockerd runs without a bridge
  build "$ctx" --network host -f "$REPO_ROOT/tools/kafka/Dockerfile" \
    --build-arg "BASE=$BASE_IMAGE" --label "bigpipe.kafka.jars=$stamp" -t "$KAFKA_IMAGE"
  rm -rf "$ctx"
  trap - EXIT
  log "built $KAFKA_IMAGE in $((SECONDS - t0)) s"
}

# The runtime stage of ./Dockerfile (from `FROM scratch` on) with its one `COPY --from=build`
# taken from a local context instead: the image users build with a Rust image and the one
# built here without a registry come from the same lines.
runtime_dockerfile() {
  local df=$REPO_ROOT/Dockerfile
  grep -q '^FROM scratch' "$df" || die "$df has no 'FROM scratch' stage"
  grep -q '^COPY --from=build /out/ /$' "$df" || die "$df's scratch stage has no 'COPY --from=build /out/ /'"
  sed -n '/^FROM scratch/,$p' "$df" | sed 's|^COPY --from=build /out/ /$|COPY out/ /|'
}

build_bigpipe() {
  [[ -x $MUSL_BIN ]] || (cd "$REPO_ROOT" && make musl >&2)
  local sum
  # everything the image is made of: the binary, the tree rootfs.sh lays out, the runtime stage
  sum=$(cat "$MUSL_BIN" "$REPO_ROOT/conf/bigpipe.toml" "$REPO_ROOT/scripts/rootfs.sh" <(runtime_dockerfile) |
    sha256sum | cut -d' ' -f1)
  if [[ $(image_label "$BIGPIPE_IMAGE" bigpipe.inputs.sha256) == "$sum" ]] && ! rebuild; then
    log "$BIGPIPE_IMAGE is there (inputs $sum)"
    return
  fi
  local ctx t0=$SECONDS
  ctx=$(mktemp -d "${TMPDIR:-/tmp}/bigpipe-image.XXXXXX")
  # shellcheck disable=SC2064 # expand $ctx now
  trap "rm -rf '$ctx'" EXIT
  # the same tree the Dockerfile's build stage assembles in /out
  "$REPO_ROOT/scripts/rootfs.sh" "$MUSL_BIN" "$ctx/out"
  runtime_dockerfile >"$ctx/Dockerfile"
  log "building $BIGPIPE_IMAGE (FROM scratch) ..."
  build "$ctx" --label "bigpipe.inputs.sha256=$sum" -t "$BIGPIPE_IMAGE"
  rm -rf "$ctx"
  trap - EXIT
  log "built $BIGPIPE_IMAGE in $((SECONDS - t0)) s ($(docker image inspect -f '{{.Size}}' "$BIGPIPE_IMAGE") bytes)"
}

list() {
  local i
  for i in "$BASE_IMAGE" "$KAFKA_IMAGE" "$BIGPIPE_IMAGE"; do
    if image_exists "$i"; then echo "$i: present"; else echo "$i: missing"; fi
  done
}

case ${1:-all} in
  all) require_engine; build_base; build_kafka; build_bigpipe ;;
  base) require_engine; build_base ;;
  kafka) require_engine; build_kafka ;;
  bigpipe) require_engine; build_bigpipe ;;
  list) require_engine; list ;;
  help | -h | --help) usage ;;
  *) usage >&2; exit 2 ;;
esac
