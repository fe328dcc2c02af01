#!/bin/sh
# The FreeBSD build stage (tests/all.sh, stage "freebsd"): builds and links
# the daemon and every test binary for x86_64-unknown-freebsd on this Linux
# host as FreeBSD would build them, then compiles everything again with the
# next OpenZFS's headers.
#
#   1. build: FreeBSD 13.5's system headers (OpenPAM) and OpenZFS 2.1.15's
#      headers (what FreeBSD 13.x ships) through the FreeBSD path of
#      sys/build.rs, linked by lld (tests/freebsd-cc.sh) against FreeBSD
#      13.5's own libraries; a symbol FreeBSD lacks fails the link.
#   2. check: the same with OpenZFS 2.2.7's headers (FreeBSD 14.x: the
#      cfg(zfs_2_2) code).
#   3. the results: FreeBSD ELF executables (OS/ABI FreeBSD, interpreter
#      /libexec/ld-elf.so.1) that need exactly the expected libraries, and a
#      linker that refuses an undefined symbol.
#
# Material (../shared/freebsd beside the checkout, see its README), each
# overridable:
#   IOCAGED_FREEBSD_SHARED     default: <checkout>/../shared/freebsd
#   IOCAGED_FREEBSD_SYSROOT    default: $IOCAGED_FREEBSD_SHARED/sysroot-13.5
#   IOCAGED_OPENZFS_SRC        default: $IOCAGED_FREEBSD_SHARED/openzfs-2.1.15
#   IOCAGED_OPENZFS_SRC_2_2    default: $IOCAGED_FREEBSD_SHARED/openzfs-2.2.7
# Without the folder and without IOCAGED_FREEBSD_SYSROOT the stage is
# skipped (exit status 77), never passed.
#
# Build products live outside the checkout, so that the next run (a fresh
# clone too) only rebuilds the project's own crates:
#   IOCAGED_FREEBSD_TARGET_DIR default: /var/cache/iocaged-build/freebsd-target
#                              (the 2.2.7 check uses <that>-zfs22)
#
# Toolchain: Debian's rustc-web/cargo-web, which build FreeBSD's standard
# library from rust-web-src (-Zbuild-std; rustup here has no FreeBSD
# target), clang and lld (tests/vm/setup.sh installs them).
set -eu
LC_ALL=C
export LC_ALL
cd "$(dirname "$0")/.."
root=$(pwd)
say() { echo "[freebsd] $*"; }

shared=${IOCAGED_FREEBSD_SHARED:-$(dirname "$root")/shared/freebsd}
if [ -z "${IOCAGED_FREEBSD_SYSROOT:-}" ] && [ ! -d "$shared" ]; then
	say "SKIPPED: no FreeBSD build material: $shared does not exist and IOCAGED_FREEBSD_SYSROOT is not set"
	say "(set IOCAGED_FREEBSD_SYSROOT, IOCAGED_OPENZFS_SRC and IOCAGED_OPENZFS_SRC_2_2, or IOCAGED_FREEBSD_SHARED)"
	exit 77
fi
sysroot=${IOCAGED_FREEBSD_SYSROOT:-$shared/sysroot-13.5}
zfs21=${IOCAGED_OPENZFS_SRC:-$shared/openzfs-2.1.15}
zfs22=${IOCAGED_OPENZFS_SRC_2_2:-$shared/openzfs-2.2.7}
for d in "$sysroot/usr/include/security" "$sysroot/lib" "$zfs21/include" "$zfs22/include"; do
	[ -d "$d" ] || { say "FAILED: $d is missing (incomplete FreeBSD build material)"; exit 1; }
done
for t in /usr/bin/cargo /usr/bin/rustc clang ld.lld readelf; do
	command -v "$t" >/dev/null || { say "FAILED: $t is not installed (tests/vm/setup.sh installs it)"; exit 1; }
done

# The clang target of the sysroot's release: __FreeBSD_version 1305000 is 13.5.
fbver=$(sed -n 's/^#define[[:space:]]*__FreeBSD_version[[:space:]]*\([0-9]*\).*/\1/p' "$sysroot/usr/include/sys/param.h")
[ -n "$fbver" ] || { say "FAILED: no __FreeBSD_version in $sysroot/usr/include/sys/param.h"; exit 1; }
clang_target="x86_64-unknown-freebsd$((fbver / 100000)).$((fbver / 1000 % 100))"

target_dir=${IOCAGED_FREEBSD_TARGET_DIR:-/var/cache/iocaged-build/freebsd-target}
mkdir -p "$target_dir" "$target_dir-zfs22" ||
	{ say "FAILED: cannot create $target_dir (set IOCAGED_FREEBSD_TARGET_DIR)"; exit 1; }

# Cheap settings for this stage: no debug info, no incremental state (a
# fresh clone could not reuse it).
IOCAGED_FREEBSD_SYSROOT=$sysroot
IOCAGED_FREEBSD_CLANG_TARGET=$clang_target
RUSTC=/usr/bin/rustc
RUSTC_BOOTSTRAP=1
CARGO_PROFILE_DEV_DEBUG=0
CARGO_INCREMENTAL=0
# The linker from a path that does not change with the checkout: cargo
# rebuilds everything when the linker's path changes (a fresh clone in
# another folder would), so a copy named after its content lives beside the
# build products.
linker=$target_dir/freebsd-cc-$(cksum <tests/freebsd-cc.sh | cut -d' ' -f1).sh
[ -x "$linker" ] || { cp tests/freebsd-cc.sh "$linker.new" && chmod 755 "$linker.new" && mv "$linker.new" "$linker"; } ||
	{ say "FAILED: cannot write $linker"; exit 1; }
CARGO_TARGET_X86_64_UNKNOWN_FREEBSD_LINKER=$linker
export IOCAGED_FREEBSD_SYSROOT IOCAGED_FREEBSD_CLANG_TARGET RUSTC RUSTC_BOOTSTRAP \
	CARGO_PROFILE_DEV_DEBUG CARGO_INCREMENTAL CARGO_TARGET_X86_64_UNKNOWN_FREEBSD_LINKER
unset PKG_CONFIG_ALLOW_CROSS

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

elapsed() { echo "$(($(date +%s) - $1)) s"; }

# The sysroot's symbolic links may be stored as small files naming their
# target (../shared/freebsd's are: usr/lib/libzfs.so holds
# "../../lib/libzfs.so.4"), which the linker would read as linker scripts.
# Real links to what they name go into a directory searched first.
linkdir=$tmp/libs
mkdir "$linkdir"
for f in "$sysroot"/lib/* "$sysroot"/usr/lib/*; do
	if [ ! -f "$f" ] || [ -L "$f" ] || [ "$(wc -c <"$f")" -ge 256 ]; then continue; fi
	real=$f
	for _ in 1 2 3 4; do # a link to a link
		[ "$(wc -c <"$real")" -lt 256 ] || break
		t=$(cat "$real")
		case $t in "" | *[!A-Za-z0-9._/+-]*) break ;; esac # a linker script
		case $t in /*) real=$sysroot$t ;; *) real=$(dirname "$real")/$t ;; esac
		[ -f "$real" ] || { real=; break; }
	done
	if [ -n "$real" ] && [ "$real" != "$f" ]; then ln -sf "$real" "$linkdir/$(basename "$f")"; fi
done
IOCAGED_FREEBSD_LINKDIR=$linkdir
export IOCAGED_FREEBSD_LINKDIR

# --- 1. build with OpenZFS 2.1.15, link against FreeBSD 13.5 --------------
say "build for $clang_target: sysroot $sysroot, OpenZFS $(sed -n 's/^Version:[[:space:]]*//p' "$zfs21/META") ($zfs21), target dir $target_dir"
start=$(date +%s)
# Every target: library, binaries, unit and integration tests
# (--all-targets), and the guest-only tests, which --all-targets leaves out
# (test = false) and which cargo does not take together with it (--test '*').
fb_cargo() { # subcommand [args...]: cargo for FreeBSD, both target sets
	sub=$1
	shift
	for set in --all-targets "--test=*"; do
		/usr/bin/cargo "$sub" --locked -Zbuild-std=std,panic_abort --target x86_64-unknown-freebsd \
			--workspace "$set" "$@" || return 1
	done
}
IOCAGED_OPENZFS_SRC=$zfs21
export IOCAGED_OPENZFS_SRC
if ! fb_cargo build --target-dir "$target_dir" \
	--message-format=json-render-diagnostics >"$tmp/build.json"; then
	say "FAILED: the FreeBSD build (OpenZFS 2.1.15) did not build or link"
	exit 1
fi
say "built in $(elapsed "$start")"
sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' "$tmp/build.json" | sort -u >"$tmp/executables"
daemon=$target_dir/x86_64-unknown-freebsd/debug/iocaged

# --- 2. check with OpenZFS 2.2.7 -----------------------------------------
say "check with OpenZFS $(sed -n 's/^Version:[[:space:]]*//p' "$zfs22/META") ($zfs22), target dir $target_dir-zfs22"
start=$(date +%s)
IOCAGED_OPENZFS_SRC=$zfs22
if ! fb_cargo check -q --target-dir "$target_dir-zfs22"; then
	say "FAILED: the FreeBSD check with OpenZFS 2.2.7 did not compile"
	exit 1
fi
say "checked in $(elapsed "$start")"

# --- 3. what was built -----------------------------------------------------
status=0
fail() { say "FAILED: $*"; status=1; }

# Each pass compiled the OpenZFS version it was given (cfg(zfs_2_2) or not).
cfg_of() { # target dir -> "2.2" or "2.1"
	if grep -qs 'rustc-cfg=zfs_2_2' "$1"/x86_64-unknown-freebsd/debug/build/iocaged-sys-*/output; then echo 2.2; else echo 2.1; fi
}
[ "$(cfg_of "$target_dir")" = 2.1 ] || fail "the 2.1.15 build compiled the OpenZFS 2.2 code (cfg zfs_2_2)"
[ "$(cfg_of "$target_dir-zfs22")" = 2.2 ] || fail "the 2.2.7 check did not compile the OpenZFS 2.2 code (cfg zfs_2_2)"

# The libraries the daemon needs on FreeBSD, and nothing else: OpenZFS's
# (libzfs, libzfs_core, libnvpair), OpenPAM, and what Rust's std and the
# libc crate link for FreeBSD (libc, libthr for pthreads, libgcc_s for
# unwinding, libexecinfo for backtraces, libutil, libkvm, libprocstat,
# libmemstat, librt, libm; lld drops those it needs no symbol from).
expected="libc.so.7 libgcc_s.so.1 libm.so.5 libnvpair.so.2 libpam.so.6 libthr.so.3 libzfs.so.4 libzfs_core.so.2"
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ' | sed 's/ $//'; }
allowed=" $expected "
count=0
[ -s "$tmp/executables" ] || fail "the build reported no executables"
[ -f "$daemon" ] || fail "no daemon at $daemon"
grep -qx "$daemon" "$tmp/executables" || echo "$daemon" >>"$tmp/executables"
while read -r exe; do
	count=$((count + 1))
	name=${exe#"$target_dir"/}
	readelf -h "$exe" | grep -q 'OS/ABI:.*FreeBSD' || fail "$name: not a FreeBSD ELF ($(readelf -h "$exe" | grep 'OS/ABI'))"
	readelf -l "$exe" | grep -q 'interpreter: /libexec/ld-elf.so.1' || fail "$name: interpreter is not /libexec/ld-elf.so.1"
	got=$(needed "$exe")
	if [ "$exe" = "$daemon" ]; then
		[ "$got" = "$expected" ] || fail "$name needs [$got], expected exactly [$expected]"
		say "iocaged: $(file -b "$exe" | cut -d, -f1-3); NEEDED $got"
	else
		for lib in $got; do
			case $allowed in *" $lib "*) ;; *) fail "$name needs $lib, which is not expected" ;; esac
		done
	fi
done <"$tmp/executables"
say "$count executables checked"

# The linker refuses a symbol that no FreeBSD library defines (lld's
# default for executables; this proves the wrapper keeps it so).
printf 'int iocaged_no_such_symbol(void);\nint main(void) { return iocaged_no_such_symbol(); }\n' >"$tmp/undef.c"
if "$CARGO_TARGET_X86_64_UNKNOWN_FREEBSD_LINKER" -o "$tmp/undef" "$tmp/undef.c" >"$tmp/undef.log" 2>&1; then
	fail "the linker accepted an undefined symbol"
elif ! grep -q 'undefined symbol: iocaged_no_such_symbol' "$tmp/undef.log"; then
	fail "the undefined-symbol probe failed for another reason: $(cat "$tmp/undef.log")"
fi

[ "$status" -eq 0 ] && say "FreeBSD build passed"
exit "$status"
