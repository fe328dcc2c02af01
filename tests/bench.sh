#!/bin/sh
# The benchmark (see BENCHMARKS.md): builds iocaged and the benchmark with
# the release profile, runs `guest_bench --full` in the real-ZFS guest (the
# set-up is tests/vm/setup.sh's, as for the tests) and writes its tables
# into BENCHMARKS.md between the results markers. About 15 minutes here.
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
trap 'rm -f "$log" "$log.results"' EXIT
IOCAGED_VM_TIMEOUT=3000 IOCAGED_TEST_TIMEOUT=2700 IOCAGED_VM_SHOW_OUTPUT=1 IOCAGED_VM_POOL_SIZE=8G tests/vm/run.sh "$bin" -- --full | tee "$log"
tr -d '\r' <"$log" | sed -n '/^=== BENCHMARK RESULTS BEGIN ===$/,/^=== BENCHMARK RESULTS END ===$/p' |
	sed '1d;$d' >"$log.results"
[ -s "$log.results" ] || { echo "[bench] no results in the guest's output"; exit 1; }
{
	sed '/^<!-- results:begin -->$/q' BENCHMARKS.md
	echo "Measured $(date -u +%Y-%m-%d) on $(nproc) host cores ($(uname -m))."
	echo
	cat "$log.results"
	sed -n '/^<!-- results:end -->$/,$p' BENCHMARKS.md
} >"$log.new"
mv "$log.new" BENCHMARKS.md
echo "[bench] BENCHMARKS.md updated"
