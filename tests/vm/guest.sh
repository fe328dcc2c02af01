#!/bin/sh
# Runs inside the test guest as PID 1 (after switch_root into the host's
# root under an overlay). Loads OpenZFS, creates a file-backed pool, runs
# every test binary listed in /mnt/env, writes the combined exit status to
# /mnt/status and powers the guest off.
# shellcheck source=tests/vm/guest-common.sh
. /mnt/guest-common.sh

load_zfs
make_pool "$POOL" "${POOL_SIZE:-4G}"
export IOCAGED_TEST_POOL="$POOL"

status=0
for t in $TESTS; do
	say "running $t"
	# shellcheck disable=SC2086 # TEST_ARGS is a word list
	/mnt/bin/"$t" $TEST_ARGS || status=1
done
say "finished (status $status)"
zpool export "$POOL" || say "zpool export failed"
finish $status
