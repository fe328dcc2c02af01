#!/bin/sh
# Type-checks the whole project (library, binary, tests) for
# x86_64-unknown-freebsd, so FreeBSD-only code (the jail(2)/rctl runtime)
# cannot rot on these Linux machines. Uses Debian's rustc-web/cargo-web,
# which can build the FreeBSD standard library from rust-web-src
# (-Zbuild-std; rustup here has no FreeBSD target). Nothing is linked or run.
#
# The libzfs bindings are generated from the host's OpenZFS headers for this
# check (sys/build.rs explains why that is sound); PKG_CONFIG_ALLOW_CROSS lets
# the pkg-config crate find them although TARGET differs from HOST.
set -eu
cd "$(dirname "$0")/.."
echo "[freebsd] cargo check --target x86_64-unknown-freebsd"
RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 PKG_CONFIG_ALLOW_CROSS=1 \
	/usr/bin/cargo check --locked -q -Zbuild-std=std,panic_abort \
	--target x86_64-unknown-freebsd --workspace --all-targets \
	--target-dir target/freebsd-check
echo "[freebsd] FreeBSD check passed"
