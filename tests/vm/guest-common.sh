#!/bin/sh
# Shared by the guest's PID-1 scripts (guest.sh, demo-guest.sh): the
# environment, finishing (which must power off: PID 1 may never exit), and
# loading OpenZFS and creating a file-backed pool.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

# finish STATUS: record the result for the host and power off.
finish() {
	echo "$1" >/mnt/status
	sync
	echo o >/proc/sysrq-trigger
	sleep 30
}

say() { printf '[guest] %s\n' "$*"; }

# shellcheck source=/dev/null
. /mnt/env || finish 90

# load_zfs: insmod spl and zfs from the host's module cache, bring up lo.
load_zfs() {
	for m in spl zfs; do
		insmod "$ZFS_MODULES/$m.ko" || { say "cannot load $m.ko"; finish 91; }
	done
	say "OpenZFS $(cat /sys/module/zfs/version) loaded"
	ip link set lo up || say "cannot bring up lo"
	# cgroup v2, as systemd mounts it on a host: the Linux jail runtime's limits.
	mount -t cgroup2 cgroup2 /sys/fs/cgroup || say "cannot mount cgroup2"
}

# make_pool NAME SIZE: a pool on a sparse file in a tmpfs of its own (the
# root is an overlay on tmpfs, so ZFS can create mountpoints where it wants).
make_pool() {
	mkdir -p "/var/lib/iocaged-$1" && mount -t tmpfs tmpfs "/var/lib/iocaged-$1"
	truncate -s "$2" "/var/lib/iocaged-$1/vdev0"
	zpool create -f -o cachefile=none -O compression=lz4 "$1" "/var/lib/iocaged-$1/vdev0" ||
		{ say "zpool create failed"; finish 92; }
}
