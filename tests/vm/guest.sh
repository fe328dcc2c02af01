#!/bin/sh
# Runs inside the test guest as PID 1 (after switch_root into the host's
# root under an overlay). Loads OpenZFS, creates the pool, checks that the
# watchdog works, then runs every test of every binary listed in /mnt/env,
# each test as its own process under the watchdog (tests/vm/guest-common.sh:
# a test still running after $TEST_TIMEOUT seconds has the stacks of its
# processes and the kernel's blocked tasks printed, is killed, and counts as
# failed; the others still run). Writes the combined exit status to
# /mnt/status and powers the guest off.
# shellcheck source=tests/vm/guest-common.sh
. /mnt/guest-common.sh

load_zfs
make_pool "$POOL" "$POOL_SIZE"
export IOCAGED_TEST_POOL="$POOL"

status=0
watchdog_self_test || status=1
passed=0
failed=0
failures=""
for t in $TESTS; do
	bin=/mnt/bin/$t
	# shellcheck disable=SC2086 # TEST_ARGS is a word list
	names=$("$bin" --list --format terse $TEST_ARGS 2>/dev/null | sed -n 's/: test$//p')
	if [ -z "$names" ]; then
		say "$t: no tests listed (with: $TEST_ARGS)"
		continue
	fi
	say "$t: $(echo "$names" | wc -l) tests"
	for name in $names; do
		# shellcheck disable=SC2086 # TEST_ARGS is a word list
		if watch_run "$TEST_TIMEOUT" "$t::$name" "$bin" --exact "$name" $TEST_ARGS; then
			passed=$((passed + 1))
		else
			failed=$((failed + 1))
			failures="$failures $t::$name"
			status=1
		fi
		pool_health "$POOL" || status=1
	done
done
[ -z "$failures" ] || say "failed:$failures"
say "guest tests: $passed passed, $failed failed"
zpool export "$POOL" || say "zpool export failed"
finish $status
