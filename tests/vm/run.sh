#!/bin/sh
# Runs test binaries inside a QEMU guest that has the real OpenZFS kernel
# module and a fresh file-backed pool.
#
# Usage: tests/vm/run.sh BINARY [BINARY...] [-- TEST-ARGS...]
#
# The guest boots the kernel that tests/vm/setup.sh prepared, sees the host's
# root read-only over 9p (so host-built binaries and libzfs are used as they
# are) and a per-run staging directory read-write on /mnt. The binaries are
# copied there, because the guest mounts tmpfs over /tmp. Exits with the
# guests's combined test status; a guest that never reports is a failure.
set -eu
here=$(cd "$(dirname "$0")" && pwd)

bins=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
	bins="$bins $1"
	shift
done
[ "${1:-}" = "--" ] && shift
# libtest's colours would reach the log as escape codes (the serial console
# looks like a terminal to the guest).
test_args="--color=never $*"
[ -n "$bins" ] || { echo "usage: $0 BINARY... [-- TEST-ARGS...]" >&2; exit 2; }
case "${IOCAGED_BENCH_CYCLES:-1}" in
*[!0-9]* | 0) echo "IOCAGED_BENCH_CYCLES must be a number above 0, not '$IOCAGED_BENCH_CYCLES'" >&2; exit 2 ;;
esac

cache=$("$here/setup.sh")

stage=$(mktemp -d /var/tmp/iocaged-vm-run.XXXXXX)
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/bin"
names=""
for b in $bins; do
	cp "$b" "$stage/bin/"
	names="$names $(basename "$b")"
done
# The guest's script: the test runner by default; the demo brings its own.
cp "${IOCAGED_VM_GUEST_SCRIPT:-$here/guest.sh}" "$stage/guest.sh"
cp "$here/guest-common.sh" "$stage/guest-common.sh"
# The pool's disk: a sparse file on the host, a virtio disk in the guest
# with the pool's file vdev on it (guest-common.sh), a quarter and 1 GiB
# larger than the pool. Not a file in the guest's memory: a tmpfs holds at
# most half the guest's RAM, and a file vdev that cannot grow makes ZFS
# suspend the pool (every later write then waits for ever).
pool_size=${IOCAGED_VM_POOL_SIZE:-4G}
bytes=$(numfmt --from=iec "$pool_size")
truncate -s $((bytes + bytes / 4 + 1073741824)) "$stage/pool.img"
cat >"$stage/env" <<ENV
ZFS_MODULES='$cache/zfs'
POOL='${IOCAGED_VM_POOL:-tank}'
POOL_SIZE='$pool_size'
POOL_DISK=/dev/vda
TESTS='$names'
TEST_ARGS='$test_args'
TEST_TIMEOUT='${IOCAGED_TEST_TIMEOUT:-300}'
SHOW_OUTPUT='${IOCAGED_VM_SHOW_OUTPUT:-0}'
RUST_BACKTRACE=1
export RUST_BACKTRACE
ENV
# Another iocaged build for the tests' daemons (tests/rig/daemon.rs).
[ -z "${IOCAGED_BIN:-}" ] || echo "IOCAGED_BIN='$IOCAGED_BIN'; export IOCAGED_BIN" >>"$stage/env"
# A base build the benchmark measures beside this one (guest_bench --throughput).
[ -z "${IOCAGED_BASE_BIN:-}" ] || echo "IOCAGED_BASE_BIN='$IOCAGED_BASE_BIN'; export IOCAGED_BASE_BIN" >>"$stage/env"
# The builds the benchmark's memory table compares (guest_bench --rss).
[ -z "${IOCAGED_RSS_BINS:-}" ] || echo "IOCAGED_RSS_BINS='$IOCAGED_RSS_BINS'; export IOCAGED_RSS_BINS" >>"$stage/env"
# The allocator settings the memory table compares (guest_bench --rss).
[ -z "${IOCAGED_RSS_ENVS:-}" ] || echo "IOCAGED_RSS_ENVS='$IOCAGED_RSS_ENVS'; export IOCAGED_RSS_ENVS" >>"$stage/env"
# A profile of the daemon under load in the benchmark (guest_bench --throughput).
[ -z "${IOCAGED_BENCH_PERF:-}" ] || echo "IOCAGED_BENCH_PERF=1; export IOCAGED_BENCH_PERF" >>"$stage/env"
# The benchmark's start and stop cycles (guest_bench: its lifecycle tables,
# and the execjails measured beside them); checked before anything is set up.
[ -z "${IOCAGED_BENCH_CYCLES:-}" ] || echo "IOCAGED_BENCH_CYCLES=$IOCAGED_BENCH_CYCLES; export IOCAGED_BENCH_CYCLES" >>"$stage/env"
# How long tests/guest_abuse.rs's soak runs (the benchmark's long form).
[ -z "${IOCAGED_ABUSE_SECS:-}" ] || echo "IOCAGED_ABUSE_SECS='$IOCAGED_ABUSE_SECS'; export IOCAGED_ABUSE_SECS" >>"$stage/env"

# Optional user-mode network with host-loopback port forwards
# (IOCAGED_VM_FORWARD="12150 12151"), for the demo.
net=""
if [ -n "${IOCAGED_VM_FORWARD:-}" ]; then
	fwd=""
	for p in $IOCAGED_VM_FORWARD; do
		fwd="$fwd,hostfwd=tcp:127.0.0.1:$p-:$p"
	done
	net="-netdev user,id=n0,restrict=on$fwd -device virtio-net-pci,netdev=n0"
fi

echo "[vm] booting guest ($(basename "$cache")) for:$names"
# Software CPU (TCG): KVM is present here but hangs this kernel. The whole
# run is bounded so that a wedged guest cannot hold CI (0: no bound).
# shellcheck disable=SC2086 # $net is a word list
timeout "${IOCAGED_VM_TIMEOUT:-3600}" qemu-system-x86_64 \
	-accel tcg,thread=multi -cpu max -smp 2 -m "${IOCAGED_VM_MEM:-4096}" \
	-nographic -no-reboot -nodefaults -serial stdio \
	-kernel "$cache/vmlinuz" -initrd "$cache/initramfs.cpio.gz" \
	-append "console=ttyS0 panic=-1 quiet loglevel=3" \
	-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on \
	-virtfs "local,path=$stage,mount_tag=work,security_model=none" \
	-drive "file=$stage/pool.img,if=virtio,format=raw,cache=unsafe" $net </dev/null ||
	echo "[vm] qemu exited with status $?"

# Every test's whole output, kept until the next run.
logs=${IOCAGED_VM_LOGS:-/var/tmp/iocaged-vm-logs}
if [ -d "$stage/logs" ]; then
	rm -rf "$logs" && cp -r "$stage/logs" "$logs" && echo "[vm] each test's output: $logs/"
fi

if [ ! -f "$stage/status" ]; then
	echo "[vm] FAILED: the guest did not report a result (stopped, crashed or timed out)"
	exit 1
fi
status=$(cat "$stage/status")
echo "[vm] guest tests exited with status $status"
exit "$status"
