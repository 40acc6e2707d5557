#!/usr/bin/env bash
# Every test modelfs has, from a fresh clone: installs what is missing,
# builds, runs the unit tests, the integration suite (real FUSE mounts
# against the local fake hub), the integration suite again under
# ASan/UBSan, and the engine-heavy tests (and 100 seeded engine unit
# cases) again under TSan (the fake hub's
# own tests run once), and a short run of every fuzz target
# (tools/fuzz.sh smoke); the slowest tests of each pytest run are listed
# (the suite has a 25-minute budget). Ends with the line
# "N passed, N failed". Exit status 0 only when nothing failed.
# The integration tests fail, not skip, when they cannot mount (no FUSE,
# no binary); "tools/test.sh --allow-skip" lets them skip instead.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONDONTWRITEBYTECODE=1
export MODELFS_REQUIRE_MOUNT=1
case "${1:-}" in
--allow-skip) MODELFS_REQUIRE_MOUNT=0 ;;
"") ;;
*) echo "usage: tools/test.sh [--allow-skip]" >&2; exit 2 ;;
esac
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
PY=/usr/bin/python3
status=0

step() { echo; echo "=== $*"; }

step "build"
bash tools/build.sh || { echo "0 passed, 1 failed"; exit 1; }
bash tools/build.sh asan || { echo "0 passed, 1 failed"; exit 1; }
bash tools/build.sh tsan || { echo "0 passed, 1 failed"; exit 1; }

step "unit tests"
meson test -C build --print-errorlogs --suite unit || status=1
cp build/meson-logs/testlog.json "$results/unit.json" 2>/dev/null

step "integration tests"
MODELFS_BIN=$PWD/build/modelfs $PY -m pytest -q -p no:cacheprovider --durations=12 \
	--junitxml="$results/integration.xml" tests/integration || status=1

# kill -9 under ASan runs in tools/nightly: a daemon killed mid-way has
# little left to check, and the plain step runs its seeds here.
step "integration tests under ASan/UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
MODELFS_BIN=$PWD/build-asan/modelfs $PY -m pytest -q -p no:cacheprovider --durations=12 \
	--ignore=tests/integration/test_fakehub.py --ignore=tests/integration/test_fakehub_hf.py \
	--ignore=tests/integration/test_crash.py \
	--junitxml="$results/asan.xml" tests/integration || status=1

step "engine tests under TSan"
TSAN_OPTIONS=halt_on_error=0:second_deadlock_stack=1 \
MODELFS_BIN=$PWD/build-tsan/modelfs $PY -m pytest -q -p no:cacheprovider \
	--junitxml="$results/tsan.xml" tests/integration/test_concurrency.py \
	tests/integration/test_lazy.py tests/integration/test_cache.py \
	tests/integration/test_faults.py tests/integration/test_verify.py || status=1

step "engine unit cases under TSan (100 seeded cases; 1,000 plain ran with the unit tests)"
TSAN_OPTIONS=halt_on_error=0:second_deadlock_stack=1 MODELFS_ENGINE_CASES=100 \
	meson test -C build-tsan --print-errorlogs test_engine || status=1
cp build-tsan/meson-logs/testlog.json "$results/tsan-unit.json" 2>/dev/null

# 10 s per target keeps the suite in its 25 minutes; tools/fuzz.sh long
# (10 M executions per target) is the real search.
step "fuzz smoke (libFuzzer: corpus replay, then 10 s per target)"
FUZZ_SECONDS=${FUZZ_SECONDS:-10} bash tools/fuzz.sh smoke --junit "$results/fuzz.xml" || status=1

step "summary"
$PY tools/testsummary.py "$results"/* || status=1
exit $status
