#!/usr/bin/env bash
# Build the libFuzzer targets of tests/fuzz (clang, ASan + UBSan, in
# build-fuzz/) and run them.
#   tools/fuzz.sh smoke [--junit FILE]   replay each target's corpus, then fuzz
#                                        it FUZZ_SECONDS (default 20) seconds
#   tools/fuzz.sh long [EXECUTIONS]      fuzz each target EXECUTIONS times
#                                        (default 10,000,000; the nightly)
# Targets run FUZZ_JOBS (default 2) at a time; FUZZ_TARGETS="fuzz_toml
# fuzz_url" runs only those (a long run resumed). Prints per target its
# executions, and closes with "N passed, N failed"; exit status 0 only when
# no target crashed, leaked, hung or broke a promise. A failing input is
# kept in build-fuzz/crashes/: fix the bug, then add the input to
# tests/fuzz/corpus/TARGET/ so that every smoke run replays it.
# Inputs the fuzzer finds go to a temporary directory, never into the
# corpus in git.
set -uo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: tools/fuzz.sh smoke [--junit FILE] | long [EXECUTIONS]" >&2; exit 2; }

mode=${1:-}
junit=""
runs=10000000
case "$mode" in
smoke)
	[ "${2:-}" = "--junit" ] && { [ -n "${3:-}" ] || usage; junit=$3; }
	[ -z "${2:-}" ] || [ "${2:-}" = "--junit" ] || usage ;;
long)
	runs=${2:-10000000}
	[[ "$runs" =~ ^[0-9]+$ ]] || usage ;;
*) usage ;;
esac
seconds=${FUZZ_SECONDS:-20}
jobs=${FUZZ_JOBS:-2}
dir=build-fuzz

bash tools/deps.sh fuzz || { echo "0 passed, 1 failed"; exit 1; }
if [ ! -f "$dir/build.ninja" ]; then
	CC=clang meson setup "$dir" -Dfuzz=true -Dbuildtype=debugoptimized \
		-Db_sanitize=address,undefined -Db_lundef=false >/dev/null ||
		{ echo "fuzz: meson setup failed"; echo "0 passed, 1 failed"; exit 1; }
fi
ninja -C "$dir" fuzz >/dev/null || { echo "fuzz: build failed"; echo "0 passed, 1 failed"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$dir/crashes"

# Seeds beyond corpus/TARGET: the TOML conformance cases, kept once in git.
extra_seeds() {
	case "$1" in
	fuzz_toml) echo tests/toml-test/valid tests/toml-test/invalid ;;
	esac
}

# run_target NAME: writes $work/NAME.result ("pass EXECS SECONDS" or
# "fail EXECS SECONDS WHY") and $work/NAME.log, and prints one line when
# the target is done, so that a long run's log shows its progress.
run_target() {
	local t=$1 bin=$dir/tests/fuzz/$1 corpus=tests/fuzz/corpus/$1 log=$work/$1.log
	local new=$work/$1.new execs=0 why="" rc began=$SECONDS
	local -a seeds common

	mkdir -p "$new"
	read -r -a seeds <<<"$corpus $(extra_seeds "$t")"
	# -timeout: an input that takes 10 s is a hang; crash files are named
	# after the target.
	common=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1
		"-artifact_prefix=$dir/crashes/$t-")
	if [ ! -x "$bin" ]; then
		why="not built"
	elif [ -z "$(find "$corpus" -type f 2>/dev/null | head -1)" ]; then
		why="no seeds in $corpus"
	elif [ "$mode" = smoke ]; then
		# Every seed and regression input once, by name: a known crash
		# fails here, before any fuzzing.
		find "${seeds[@]}" -type f -print0 | xargs -0 "$bin" "${common[@]}" >"$log" 2>&1 ||
			why="a corpus input fails (replay)"
		if [ -z "$why" ]; then
			timeout $((seconds + 120)) "$bin" "${common[@]}" -max_total_time="$seconds" \
				"$new" "${seeds[@]}" >>"$log" 2>&1
			rc=$?
			[ $rc -eq 0 ] || why="fuzzing failed (exit $rc)"
		fi
	else
		timeout 86400 "$bin" "${common[@]}" -runs="$runs" "$new" "${seeds[@]}" >"$log" 2>&1
		rc=$?
		[ $rc -eq 0 ] || why="fuzzing failed (exit $rc)"
	fi
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" 2>/dev/null | tail -1)
	if [ -z "$why" ]; then
		echo "pass ${execs:-0} $((SECONDS - began))" >"$work/$t.result"
	else
		echo "fail ${execs:-0} $((SECONDS - began)) $why" >"$work/$t.result"
		# The sanitizer's report outlives the temporary directory.
		cp "$log" "$dir/crashes/$t.log"
	fi
	echo "done: $t $(cut -d' ' -f1-3 "$work/$t.result") s ($(date +%H:%M:%S))"
}

targets=()
for f in tests/fuzz/fuzz_*.c; do
	t=$(basename "$f" .c)
	if [ -z "${FUZZ_TARGETS:-}" ] || [[ " $FUZZ_TARGETS " == *" $t "* ]]; then
		targets+=("$t")
	fi
done
[ "${#targets[@]}" -gt 0 ] || { echo "fuzz: no target named in FUZZ_TARGETS"; exit 2; }

start=$SECONDS
running=0
for t in "${targets[@]}"; do
	if [ "$running" -ge "$jobs" ]; then
		wait -n
		running=$((running - 1))
	fi
	run_target "$t" &
	running=$((running + 1))
done
wait

passed=0
failed=0
cases=""
for t in "${targets[@]}"; do
	read -r verdict execs secs why <"$work/$t.result" 2>/dev/null || verdict=fail
	printf '%-22s %-4s %12s executions %6s s%s\n' "$t" "$verdict" "${execs:-0}" "${secs:-0}" "${why:+  ($why)}"
	if [ "$verdict" = pass ]; then
		passed=$((passed + 1))
		cases+="<testcase classname=\"fuzz\" name=\"$t\"/>"
	else
		failed=$((failed + 1))
		cases+="<testcase classname=\"fuzz\" name=\"$t\"><failure message=\"${why:-no result}\"/></testcase>"
		# What the sanitizer or the broken check said, and the input kept.
		grep -E -m3 -A12 'ERROR: |broken promise|SUMMARY: ' "$work/$t.log" 2>/dev/null | head -30
		grep -E 'Test unit written to' "$work/$t.log" 2>/dev/null | tail -1
	fi
done
if [ -n "$junit" ]; then
	printf '<?xml version="1.0"?>\n<testsuite name="fuzz" tests="%d" failures="%d" errors="0" skipped="0">%s</testsuite>\n' \
		$((passed + failed)) "$failed" "$cases" >"$junit"
fi
echo "fuzz $mode: $((SECONDS - start)) s for ${#targets[@]} targets"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
