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
# Seconds one test may run before the watchdog stops it (run.sh passes
# IOCAGED_TEST_TIMEOUT through).
TEST_TIMEOUT=${TEST_TIMEOUT:-300}

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

# make_pool NAME SIZE: the pool on a sparse file in /var/lib/iocaged-NAME,
# an ext4 filesystem on the run's disk ($POOL_DISK, a sparse file on the
# host; see run.sh for why not a tmpfs). Tests put scratch files beside it
# (guest_api's second pool).
make_pool() {
	mkdir -p "/var/lib/iocaged-$1"
	# Few inodes: nothing to initialise in the background.
	mkfs.ext4 -q -F -N 1024 "$POOL_DISK" || { say "cannot make a filesystem on $POOL_DISK"; finish 92; }
	mount "$POOL_DISK" "/var/lib/iocaged-$1" || { say "cannot mount $POOL_DISK"; finish 92; }
	truncate -s "$2" "/var/lib/iocaged-$1/vdev0"
	zpool create -f -o cachefile=none -O compression=lz4 "$1" "/var/lib/iocaged-$1/vdev0" ||
		{ say "zpool create failed"; finish 92; }
}

# pool_health POOL: fails, saying why, when the pool is not healthy (a
# suspended pool blocks every later test; better to know here).
pool_health() {
	h=$(zpool list -H -o health "$1" 2>&1)
	[ "$h" = ONLINE ] && return 0
	say "pool $1 is $h:"
	zpool status -v "$1"
	return 1
}

# watch_run SECONDS NAME COMMAND...: runs COMMAND in a session of its own,
# its output in /mnt/logs/NAME.log (printed when it fails, or always with
# SHOW_OUTPUT=1). If it is still
# running after SECONDS, prints the stacks of every process of that session
# and of every iocaged process (dump_stacks), kills them and returns 124.
# One line per run: ok/FAILED/TIMED OUT, the name and the seconds taken.
watch_run() {
	limit=$1
	wname=$2
	shift 2
	mkdir -p /mnt/logs
	log="/mnt/logs/$(echo "$wname" | tr -c 'A-Za-z0-9_.\n-' _).log"
	start=$(date +%s)
	# setsid: the command leads a new session, so its pid is the session id
	# every process it starts inherits (and the group killed below).
	setsid "$@" >"$log" 2>&1 </dev/null &
	wpid=$!
	while kill -0 "$wpid" 2>/dev/null; do
		if [ $(($(date +%s) - start)) -ge "$limit" ]; then
			say "TIMED OUT $wname after $limit s; stacks follow"
			dump_stacks "$wpid"
			pids=$(session_pids "$wpid")
			# shellcheck disable=SC2086 # a word list of pids
			[ -z "$pids" ] || kill -KILL $pids 2>/dev/null
			pkill -KILL -x iocaged 2>/dev/null
			wait "$wpid" 2>/dev/null
			say "output of $wname:"
			tail -n 100 "$log"
			return 124
		fi
		sleep 1
	done
	wait "$wpid"
	rc=$?
	if [ "$rc" -eq 0 ]; then
		say "ok     $wname ($(($(date +%s) - start)) s)"
		[ "${SHOW_OUTPUT:-0}" = 0 ] || cat "$log"
	else
		say "FAILED $wname (status $rc, $(($(date +%s) - start)) s); its output:"
		tail -n 200 "$log"
	fi
	return "$rc"
}

# session_pids SID: the processes of session SID.
session_pids() {
	ps -e -o pid=,sid= | awk -v s="$1" '$2 == s { print $1 }'
}

# dump_stacks SID: for every process of session SID and every iocaged
# process, its command line, each thread's kernel stack and gdb's backtrace
# of every thread; then the kernel's blocked tasks (sysrq w: ZFS's txg and
# I/O threads among them), the pool's state and its last events.
dump_stacks() {
	for p in $(session_pids "$1") $(pgrep -x iocaged); do
		[ -d "/proc/$p" ] || continue
		echo "----- process $p: $(tr '\0' ' ' <"/proc/$p/cmdline")"
		for task in /proc/"$p"/task/*; do
			echo "  thread ${task##*/} ($(cat "$task/comm" 2>/dev/null)), state $(sed -n 's/^State:\t//p' "$task/status" 2>/dev/null), kernel stack:"
			sed 's/^/    /' "$task/stack" 2>/dev/null
		done
		timeout 60 gdb -batch -nx -p "$p" -ex 'thread apply all bt' 2>&1 |
			grep -v -e '^\[New LWP' -e '^\[Thread debugging' -e '^Using host libthread_db' -e '^warning: ' | sed 's/^/  /'
	done
	echo "----- blocked tasks (sysrq w)"
	dmesg -C
	dmesg -n 1 # to the ring buffer only, not the console as well
	echo w >/proc/sysrq-trigger
	sleep 1
	dmesg
	echo "----- zpool status and the last pool events"
	zpool status -v 2>&1
	timeout 30 zpool events -v 2>&1 | tail -n 60
	echo "----- memory and filesystems"
	grep -E '^(MemTotal|MemAvailable|Shmem):' /proc/meminfo
	df -m 2>&1
	echo "----- end of stacks"
}

# watchdog_self_test: the watchdog must stop a hung command after its limit
# and print its stacks (the kernel's and gdb's); checked on every run, since
# a watchdog that does not bite only shows when it is needed.
watchdog_self_test() {
	out=/mnt/logs/watchdog-self-test.out
	mkdir -p /mnt/logs
	watch_run 2 watchdog-self-test sleep 600 >"$out" 2>&1
	rc=$?
	if [ "$rc" -eq 124 ] && grep -q 'TIMED OUT watchdog-self-test' "$out" &&
		grep -q 'nanosleep' "$out" && ! pgrep -x sleep >/dev/null; then
		say "watchdog self-test: a hung command was stopped after 2 s with its stacks printed"
		return 0
	fi
	say "watchdog self-test FAILED (status $rc); its output:"
	cat "$out"
	return 1
}
