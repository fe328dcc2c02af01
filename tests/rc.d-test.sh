#!/bin/sh
# Runs the FreeBSD rc.d script (dist/freebsd/rc.d/iocaged, or the script
# given as $1) under a stub rc.subr (tests/rc.d-stub/rc.subr) that records
# the command line `service iocaged start` would execute, and checks it:
# daemon(8) runs iocaged, iocaged_flags reach `iocaged serve` (not
# daemon(8)), iocaged_binary and iocaged_config are honoured, and nothing
# starts without iocaged_enable. Part of the delivery stage of tests/all.sh.
set -eu
cd "$(dirname "$0")/.."
script=${1:-dist/freebsd/rc.d/iocaged}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
passed=0

# The script under test, reading the stub instead of /etc/rc.subr.
sed "s|^\. /etc/rc.subr\$|. $(pwd)/tests/rc.d-stub/rc.subr|" "$script" >"$tmp/iocaged"
grep -q "rc.d-stub/rc.subr" "$tmp/iocaged" || { echo "FAIL: $script does not source /etc/rc.subr"; exit 1; }
touch "$tmp/iocaged.toml"

# check NAME RC.CONF-TEXT EXPECTED-COMMAND-LINE ("" = nothing started)
check() {
	printf '%s\n' "$2" >"$tmp/rc.conf"
	rm -f "$tmp/record"
	if ! RC_CONF="$tmp/rc.conf" RC_RECORD="$tmp/record" sh "$tmp/iocaged" start >"$tmp/out" 2>&1; then
		echo "FAIL: $1: the script failed:"
		sed 's/^/    /' "$tmp/out"
		failed=$((failed + 1))
		return
	fi
	got=$(cat "$tmp/record" 2>/dev/null || true)
	if [ "$got" = "$3" ]; then
		echo "ok: $1"
		passed=$((passed + 1))
	else
		echo "FAIL: $1"
		echo "    expected: $3"
		echo "    got:      $got"
		failed=$((failed + 1))
	fi
}

daemon="/usr/sbin/daemon -P /var/run/iocaged.pid -r -S -T iocaged"
conf="iocaged_config=$tmp/iocaged.toml"

check "defaults" "iocaged_enable=YES
$conf" \
	"$daemon /usr/local/sbin/iocaged serve --config $tmp/iocaged.toml"
check "iocaged_flags go to iocaged serve, not to daemon(8)" "iocaged_enable=YES
$conf
iocaged_flags='--log debug --rest 0.0.0.0:12151'" \
	"$daemon /usr/local/sbin/iocaged serve --config $tmp/iocaged.toml --log debug --rest 0.0.0.0:12151"
check "iocaged_binary names the executable daemon(8) runs" "iocaged_enable=YES
$conf
iocaged_binary=/opt/iocaged/bin/iocaged" \
	"$daemon /opt/iocaged/bin/iocaged serve --config $tmp/iocaged.toml"
check "not enabled: nothing runs" "iocaged_enable=NO
$conf" ""

echo "rc.d: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
