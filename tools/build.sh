#!/usr/bin/env bash
# Install what is missing (Debian 12), then configure and build modelfs in
# build/. Safe to run again: each step is skipped when already done.
#   tools/build.sh [asan|tsan]   also/only a sanitizer build in build-asan/ or build-tsan/
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/deps.sh

setup() {	# setup DIR [meson options...]
	local dir=$1; shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "$@" >/dev/null
	fi
	ninja -C "$dir" >/dev/null
	echo "built $dir/modelfs"
}

case "${1:-}" in
"") setup build ;;
asan) setup build-asan -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false ;;
tsan) setup build-tsan -Dbuildtype=debug -Db_sanitize=thread -Db_lundef=false ;;
*) echo "usage: tools/build.sh [asan|tsan]" >&2; exit 2 ;;
esac
