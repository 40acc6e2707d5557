#!/usr/bin/env bash
# deb.sh: build the Debian package of this tree (debian/) and check it with
# lintian. The tree is copied to build-deb/src first, so the work tree stays
# clean; the .deb lands in build-deb/. Prints its path last.
#   tools/deb.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=$PWD/build-deb

bash tools/deps.sh deb >&2
rm -rf "$out"
mkdir -p "$out/src"
# What git tracks and what it would add: the tree as it stands, no builds.
git ls-files -z --cached --others --exclude-standard | \
	xargs -0 -I{} cp --parents -P "{}" "$out/src/" 2>/dev/null || true
(cd "$out/src" && dpkg-buildpackage -us -uc -b >"$out/build.log" 2>&1) ||
	{ echo "deb.sh: dpkg-buildpackage failed; see $out/build.log" >&2; exit 1; }
deb=$(ls "$out"/modelfs_*.deb)
# Errors fail; warnings are shown.
lintian --fail-on error "$deb" >&2 ||
	{ echo "deb.sh: lintian reports errors in $deb" >&2; exit 1; }
echo "$deb"
