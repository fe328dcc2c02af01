#!/bin/sh
# The linker for x86_64-unknown-freebsd when cross-building on Linux
# (tests/freebsd-build.sh sets it as CARGO_TARGET_X86_64_UNKNOWN_FREEBSD_LINKER;
# named like a C compiler because rustc takes a linker named *-ld for a bare
# ld(1) and passes it ld's options): clang drives lld for the FreeBSD target
# against a FreeBSD sysroot's crt objects and shared libraries, as cc(1) does
# on FreeBSD. lld refuses an executable that references a symbol none of
# those libraries defines.
#
#   IOCAGED_FREEBSD_SYSROOT       the sysroot (usr/include, lib, usr/lib)
#   IOCAGED_FREEBSD_CLANG_TARGET  default x86_64-unknown-freebsd13.5
#   IOCAGED_FREEBSD_LINKDIR       optional, searched first (tests/freebsd-build.sh
#                                 puts the sysroot's libraries' links there)
set -eu
sysroot=${IOCAGED_FREEBSD_SYSROOT:?IOCAGED_FREEBSD_SYSROOT must name a FreeBSD sysroot}
linkdir=${IOCAGED_FREEBSD_LINKDIR:-$sysroot/usr/lib}
exec clang --target="${IOCAGED_FREEBSD_CLANG_TARGET:-x86_64-unknown-freebsd13.5}" \
	--sysroot="$sysroot" -fuse-ld=lld -L"$linkdir" -L"$sysroot/lib" -L"$sysroot/usr/lib" "$@"
