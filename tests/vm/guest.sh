#!/bin/sh
# Runs inside the test guest as PID 1 (after switch_root into the host's
# read-only root). Loads OpenZFS, creates a file-backed pool, runs every test
# binary listed in /mnt/env, writes the combined exit status to /mnt/status
# and powers the guest off. It must never simply exit: PID 1 exiting panics
# the kernel.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
finish() {
	echo "$1" >/mnt/status
	sync
	echo o >/proc/sysrq-trigger
	sleep 30
}
# shellcheck source=/dev/null
. /mnt/env || finish 90

say() { printf '[guest] %s\n' "$*"; }

for m in spl zfs; do
	insmod "$ZFS_MODULES/$m.ko" || { say "cannot load $m.ko"; finish 91; }
done
say "OpenZFS $(cat /sys/module/zfs/version) loaded"
ip link set lo up || say "cannot bring up lo"

# A sparse file on a tmpfs of its own is the vdev (the root is an overlay
# on tmpfs, so every mountpoint can be created where ZFS wants it).
mkdir -p /var/lib/iocaged-test && mount -t tmpfs tmpfs /var/lib/iocaged-test
truncate -s "${POOL_SIZE:-4G}" /var/lib/iocaged-test/vdev0
zpool create -f -o cachefile=none -O compression=lz4 "$POOL" /var/lib/iocaged-test/vdev0 ||
	{ say "zpool create failed"; finish 92; }
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
