#!/bin/sh
# deps.sh: install what building and testing modelfs needs on Debian 12.
#
# Idempotent: installs only the packages dpkg does not already report as
# installed, and runs `apt-get update` only when something is missing.
# Works without a TTY.  Exits non-zero, saying why, when it cannot install
# or when /dev/fuse is missing (the integration tests mount for real).
set -eu

PACKAGES="meson ninja-build pkg-config gcc libfuse3-dev fuse3 libcurl4-openssl-dev
libsqlite3-dev libssl-dev libjansson-dev libxxhash-dev python3-pytest attr curl"

say() { printf 'deps.sh: %s\n' "$*"; }
die() { printf 'deps.sh: error: %s\n' "$*" >&2; exit 1; }

installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script is for Debian 12"

missing=""
for p in $PACKAGES; do
	installed "$p" || missing="$missing $p"
done

if [ -n "$missing" ]; then
	SUDO=""
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install:$missing"
		SUDO="sudo -n"
	fi
	say "installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -q || die "apt-get update failed"
	# shellcheck disable=SC2086  # word splitting of the package list is meant
	$SUDO apt-get install -y -q --no-install-recommends $missing </dev/null \
		|| die "apt-get install failed for:$missing"
	for p in $missing; do
		installed "$p" || die "$p is still not installed"
	done
else
	say "all packages present"
fi

if [ ! -c /dev/fuse ]; then
	die "/dev/fuse is missing, so FUSE mounts cannot work. In a container, start it with
  --device /dev/fuse --cap-add SYS_ADMIN (docker/podman run), and on a host, load the
  module: modprobe fuse"
fi
say "/dev/fuse present"
