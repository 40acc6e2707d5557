#!/bin/sh
# deps.sh: install what building and testing modelfs needs on Debian 12.
#   tools/deps.sh [fuzz]   fuzz: clang and libFuzzer too (see below)
#
# Idempotent: installs only the packages dpkg does not already report as
# installed, and runs `apt-get update` only when something is missing.
# Works without a TTY.  Exits non-zero, saying why, when it cannot install
# or when /dev/fuse is missing (the integration tests mount for real).
set -eu

# systemd: systemd-analyze and the fstab generator (test_service.py), not
# a running systemd; util-linux: mount, unshare, nsenter, findmnt, setpriv;
# debootstrap and systemd-container (systemd-nspawn): test_container.py's
# Debian root (tools/test-rootfs.sh).
PACKAGES="meson ninja-build pkg-config gcc libfuse3-dev fuse3 libcurl4-openssl-dev
libsqlite3-dev libssl-dev libjansson-dev libxxhash-dev libmicrohttpd-dev libyaml-dev
python3-pytest python3-yaml python3-diskcache
attr curl systemd util-linux debootstrap systemd-container"
# nginx: the shared cache tier of test_tier.py; iproute2 (ip, tc): its nodes
# in network namespaces.
PACKAGES="$PACKAGES nginx iproute2"

# "deps.sh fuzz": also clang and its libFuzzer runtime (tools/fuzz.sh),
# and only what building needs: the fuzzers mount nothing and use no
# JavaScript client, so a machine without /dev/fuse can run them.
# "deps.sh deb": also what builds and checks the Debian package
# (tools/deb.sh); likewise only what building needs.
FUZZ=0
case "${1:-}" in
fuzz) FUZZ=1; PACKAGES="$PACKAGES clang libclang-rt-14-dev" ;;
deb) FUZZ=1; PACKAGES="$PACKAGES debhelper dpkg-dev lintian" ;;
"") ;;
*) echo "usage: tools/deps.sh [fuzz|deb]" >&2; exit 2 ;;
esac

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

[ "$FUZZ" = 1 ] && exit 0

# The official @huggingface/hub client checks the fake Hub
# (tests/integration/test_fakehub_hf.py). Optional: without node, npm or the
# npm registry that one test is skipped, so nothing here is fatal.
js_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/fakehub/js"
if [ -d "$js_dir/node_modules/@huggingface/hub" ]; then
	say "tests/fakehub/js/node_modules present"
elif command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
	say "installing tests/fakehub/js/node_modules (npm ci)"
	npm ci --no-audit --no-fund --prefix "$js_dir" </dev/null >/dev/null 2>&1 \
		|| say "warning: npm ci in tests/fakehub/js failed; the JS client check will be skipped"
else
	say "warning: node/npm not found; the JS client check of the fake Hub will be skipped"
fi

if [ ! -c /dev/fuse ]; then
	die "/dev/fuse is missing, so FUSE mounts cannot work. In a container, start it with
  --device /dev/fuse --cap-add SYS_ADMIN (docker/podman run), and on a host, load the
  module: modprobe fuse"
fi
say "/dev/fuse present"
