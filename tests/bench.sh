#!/bin/sh
# The benchmark (see BENCHMARKS.md): builds iocaged and the benchmark with
# the release profile, runs `guest_bench --full` in the real-ZFS guest (the
# set-up is tests/vm/setup.sh's, as for the tests) and writes its tables
# into BENCHMARKS.md between the results markers; then the abuse suite's
# long form (tests/guest_abuse.rs, a 180 s soak) and its `abuse:` lines.
# About 25 minutes here.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tests/vm/setup.sh >/dev/null
CARGO=${CARGO:-cargo}
echo "[bench] building (release profile)"
bin=$("$CARGO" test --release --locked --no-run --test guest_bench --message-format=json 2>/dev/null |
	grep '"kind":\["test"\]' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')
[ -n "$bin" ] || { echo "[bench] the benchmark did not build"; "$CARGO" test --release --locked --no-run --test guest_bench; exit 1; }
log=$(mktemp)
trap 'rm -f "$log" "$log.results" "$log.abuse"' EXIT
IOCAGED_VM_TIMEOUT=3000 IOCAGED_TEST_TIMEOUT=2700 IOCAGED_VM_SHOW_OUTPUT=1 IOCAGED_VM_POOL_SIZE=8G tests/vm/run.sh "$bin" -- --full | tee "$log"
tr -d '\r' <"$log" | sed -n '/^=== BENCHMARK RESULTS BEGIN ===$/,/^=== BENCHMARK RESULTS END ===$/p' |
	sed '1d;$d' >"$log.results"
[ -s "$log.results" ] || { echo "[bench] no results in the guest's output"; exit 1; }
echo "[bench] the abuse suite, long form"
abuse=$("$CARGO" test --release --locked --no-run --test guest_abuse --message-format=json 2>/dev/null |
	grep '"kind":\["test"\]' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')
[ -n "$abuse" ] || { echo "[bench] the abuse suite did not build"; exit 1; }
IOCAGED_ABUSE_SECS=180 IOCAGED_TEST_TIMEOUT=900 IOCAGED_VM_SHOW_OUTPUT=1 tests/vm/run.sh "$abuse" -- --nocapture | tee "$log.abuse"
{
	echo
	echo "### Under abuse (tests/guest_abuse.rs, long form, debug assertions off)"
	echo
	tr -d '\r' <"$log.abuse" | sed -n 's/^abuse: \(.*\)$/- \1/p'
} >>"$log.results"
{
	sed '/^<!-- results:begin -->$/q' BENCHMARKS.md
	echo "Measured $(date -u +%Y-%m-%d) on $(nproc) host cores ($(uname -m))."
	echo
	cat "$log.results"
	sed -n '/^<!-- results:end -->$/,$p' BENCHMARKS.md
} >"$log.new"
mv "$log.new" BENCHMARKS.md
echo "[bench] BENCHMARKS.md updated"
