#!/bin/sh
# test-rootfs.sh: the minimal Debian 12 root filesystem the container test
# (tests/integration/test_container.py) runs modelfs in with
# systemd-nspawn: bookworm minbase with the libraries modelfs links, made
# once with debootstrap through Debian's mirror and cached under
# /var/cache/modelfs-test-rootfs (about 230 MB, a minute to make).
# Prints the root's path. Idempotent: a finished root is reused; a
# half-made one (interrupted) is made again.
#   tools/test-rootfs.sh [--rebuild]
set -eu

CACHE=${MODELFS_TEST_ROOTFS_CACHE:-/var/cache/modelfs-test-rootfs}
ROOT=$CACHE/bookworm
# Bumped when the package list changes, so that old roots are remade.
STAMP=$ROOT/.modelfs-rootfs-v4
MIRROR=${MODELFS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
INCLUDE=fuse3,libfuse3-3,libcurl4,libsqlite3-0,libssl3,libjansson4,libxxhash0,libmicrohttpd12,libyaml-0-2,ca-certificates
# The sanitizer build (build-asan) runs in it too.
INCLUDE=$INCLUDE,libasan8,libubsan1

die() { printf 'test-rootfs.sh: error: %s\n' "$*" >&2; exit 1; }

[ "${1:-}" = --rebuild ] && rm -rf "$ROOT"
if [ -f "$STAMP" ]; then
	echo "$ROOT"
	exit 0
fi
command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found: run tools/deps.sh"
mkdir -p "$CACHE"
tmp=$CACHE/bookworm.tmp.$$
trap 'rm -rf "$tmp"' EXIT
debootstrap --variant=minbase --include="$INCLUDE" bookworm "$tmp" "$MIRROR" \
	>"$CACHE/debootstrap.log" 2>&1 || die "debootstrap failed; see $CACHE/debootstrap.log"
# Mount points for the test's binds (the root is used read-only).
mkdir -p "$tmp/opt/modelfs" "$tmp/work"
touch "$tmp/.modelfs-rootfs-v4"
rm -rf "$ROOT"
mv "$tmp" "$ROOT"
trap - EXIT
echo "$ROOT"
