#!/bin/sh
# Runs iocaged's tests on the FreeBSD machine: clippy, the host tests, then
# the tests that need real ZFS (on FreeBSD the kernel has it, so they run
# directly against the pool `tank` instead of in a QEMU guest, with the
# FreeBSD runtime; tests/rig/host.rs holds what differs).
set -eu
cd /iocaged
export IOCAGED_TEST_POOL=tank
if [ "$(sysctl -n kern.racct.enable 2>/dev/null || echo 0)" != 1 ]; then
	echo "[test] kern.racct.enable is not 1: reboot after provisioning" >&2
	exit 1
fi
echo "[test] lint (clippy sees the FreeBSD-only code here)"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "[test] host tests"
cargo test --locked --workspace
echo "[test] real-ZFS tests"
status=0
for f in tests/guest_*.rs; do
	name=$(basename "$f" .rs)
	cargo test --locked --test "$name" -- --test-threads=1 || status=1
done
exit $status
