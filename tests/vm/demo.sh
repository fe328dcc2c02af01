#!/bin/sh
# Try iocaged as a user would: boots the test guest with a small demo pool
# (three jails), runs `iocaged serve` in it and forwards the guest's ports
# 12150 (WebSocket) and 12151 (REST) to this host's loopback. Runs until
# interrupted (Ctrl-C). Does its own set-up on a fresh Debian 12 machine.
#
#   curl -H "Authorization: Bearer <key it prints>" -X PUT localhost:12151/sysadm/iocage -d '{"action":"listjails"}'
set -eu
cd "$(dirname "$0")/../.."
tests/vm/setup.sh >/dev/null
CARGO=${CARGO:-$(command -v cargo || echo /usr/bin/cargo)}
"$CARGO" build --locked --release --bin iocaged --bin iocaged-jail
# The demo guest runs the staged binary itself (/mnt/bin/iocaged), not as a
# test; the jail helpers' binary is staged next to it, as it is installed.
IOCAGED_VM_GUEST_SCRIPT=tests/vm/demo-guest.sh IOCAGED_VM_FORWARD="12150 12151" IOCAGED_VM_TIMEOUT=0 \
	exec tests/vm/run.sh target/release/iocaged target/release/iocaged-jail
