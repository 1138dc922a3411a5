#!/usr/bin/env bash
# scripts/rootfs.sh BINARY OUT - lays out the file tree of the FROM scratch bigpipe image in
# OUT: the static binary, the shipped config and the passwd/group entries of the non-root
# user (uid/gid 10086) it runs as. Used by the Dockerfile's build stage and by
# scripts/images.sh, so both images hold the same files.
set -euo pipefail
(($# == 2)) || { echo "usage: scripts/rootfs.sh BINARY OUT" >&2; exit 2; }
bin=$1 out=$2
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[[ -x $bin ]] || { echo "rootfs.sh: $bin is not an executable" >&2; exit 1; }
mkdir -p "$out/usr/local/bin" "$out/etc/bigpipe"
install -m 0755 "$bin" "$out/usr/local/bin/bigpipe"
install -m 0644 "$repo/conf/bigpipe.toml" "$out/etc/bigpipe/bigpipe.toml"
# names for the uid in `ps`/`docker top`; the image has no login, so no shell and no home
printf 'bigpipe:x:10086:10086:bigpipe:/nonexistent:/sbin/nologin\n' >"$out/etc/passwd"
printf 'bigpipe:x:10086:\n' >"$out/etc/group"
