#!/bin/sh
# The one command that runs every test (README: "Running the tests"; CI runs
# it through .ci/run). On a fresh Debian 12 machine it first installs what it
# needs (tests/vm/setup.sh), then runs, in order:
#   lint    shellcheck of the shell scripts; cargo fmt and clippy when the
#           toolchain has them
#   host    cargo test: unit and integration tests that need no ZFS module
#   guest   the real-ZFS tests, inside the QEMU guest (tests/vm/run.sh)
#   freebsd build and link of everything for x86_64-unknown-freebsd against
#           FreeBSD 13.5 (OpenZFS 2.1.15), check with OpenZFS 2.2.7
#           (tests/freebsd-build.sh); skipped without its material
#   delivery the rc.d script, the vagrant scripts, the man page and the
#           systemd unit pass their checkers
# Every stage runs even when an earlier one failed; the exit status is
# non-zero when any failed, and the last line counts them (a stage that
# cannot run here, exit status 77, counts as skipped, never as passed).
set -u
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)

if [ "$(id -u)" != 0 ]; then
	echo "tests/all.sh must run as root (it installs packages and boots a VM with a ZFS pool)" >&2
	exit 1
fi

tests/vm/setup.sh >/dev/null || { echo "set-up failed"; exit 1; }

# rustup's cargo when there is one; Debian's cargo-web (installed by the
# set-up) otherwise, so that a machine without rustup still runs everything.
CARGO=${CARGO:-$(command -v cargo || echo /usr/bin/cargo)}
export CARGO

passed=0
failed=0
skipped=0
failures=""
stage() { # name command...; the command exits 77 when it cannot run here
	name=$1
	shift
	start=$(date +%s)
	echo "=== stage $name"
	"$@"
	rc=$?
	if [ "$rc" -eq 0 ]; then
		passed=$((passed + 1))
		echo "=== stage $name: ok ($(($(date +%s) - start)) s)"
	elif [ "$rc" -eq 77 ]; then
		skipped=$((skipped + 1))
		echo "=== stage $name: SKIPPED ($(($(date +%s) - start)) s)"
	else
		failed=$((failed + 1))
		failures="$failures $name"
		echo "=== stage $name: FAILED ($(($(date +%s) - start)) s)"
	fi
}

lint() {
	shellcheck -s sh tests/*.sh tests/vm/*.sh .ci/run || return 1
	if "$CARGO" fmt --version >/dev/null 2>&1; then
		"$CARGO" fmt --all -- --check || return 1
	else
		echo "note: rustfmt is not installed; format check not run"
	fi
	if "$CARGO" clippy --version >/dev/null 2>&1; then
		"$CARGO" clippy --locked -q --workspace --all-targets -- -D warnings || return 1
	else
		echo "note: clippy is not installed; lint not run"
	fi
}

host_tests() {
	"$CARGO" test --locked --workspace
}

guest_tests() {
	# The guest-only test targets (test = false in Cargo.toml), built here
	# and run in the guest.
	targets=""
	for f in tests/guest_*.rs; do
		targets="$targets --test $(basename "$f" .rs)"
	done
	# shellcheck disable=SC2086
	bins=$("$CARGO" test --locked --no-run $targets --message-format=json 2>/dev/null |
		grep '"kind":\["test"\]' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')
	# shellcheck disable=SC2086
	[ -n "$bins" ] || { echo "no guest test binaries were built"; "$CARGO" test --locked --no-run $targets; return 1; }
	# shellcheck disable=SC2086
	tests/vm/run.sh $bins
}

delivery() {
	shellcheck -s sh dist/freebsd/rc.d/iocaged vagrant/*.sh || return 1
	sh tests/rc.d-test.sh || return 1
	mandoc -T lint -W warning iocaged.8 || return 1
	# The unit, pointed at the binary just built (verify checks ExecStart).
	"$CARGO" build --locked -q --bin iocaged --bin iocaged-jail || return 1
	d=$(mktemp -d)
	sed "s|/usr/local/sbin/iocaged|$root/target/debug/iocaged|" dist/linux/iocaged.service >"$d/iocaged.service"
	systemd-analyze verify --man=no "$d/iocaged.service" || { rm -rf "$d"; return 1; }
	rm -rf "$d"
}

stage lint lint
stage host host_tests
stage guest guest_tests
stage freebsd tests/freebsd-build.sh
stage delivery delivery

echo
[ -z "$failures" ] || echo "failed stages:$failures"
summary="stages: $passed passed, $failed failed"
[ "$skipped" -eq 0 ] || summary="$summary, $skipped skipped"
echo "$summary"
cd "$root" && [ "$failed" -eq 0 ]
