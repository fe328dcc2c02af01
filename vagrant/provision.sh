#!/bin/sh
# Provisions the FreeBSD test machine (see Vagrantfile). Idempotent.
set -eu

say() { printf '[provision] %s\n' "$*"; }

say "packages: rust, llvm (libclang for bindgen), git, pkgconf"
env ASSUME_ALWAYS_YES=yes pkg install -q rust llvm git-lite pkgconf curl

# libzfs's headers are not installed on FreeBSD: they come from the system
# sources, which must match the running system.
release=$(freebsd-version -u | sed 's/-p[0-9]*$//; s/-RELEASE$//')
if [ ! -f /usr/src/sys/contrib/openzfs/include/libzfs.h ]; then
	say "fetching /usr/src for releng/$release"
	rm -rf /usr/src
	git clone -q --depth 1 -b "releng/$release" https://git.FreeBSD.org/src.git /usr/src
fi

# rctl needs RACCT, which is a boot-time tunable.
if ! grep -q '^kern.racct.enable=1' /boot/loader.conf 2>/dev/null; then
	say "enabling RACCT (takes effect after the reboot)"
	echo 'kern.racct.enable=1' >>/boot/loader.conf
fi

# ZFS at boot: zfs_enable makes rc(8) load zfs.ko and import the pools in
# the cache file (rc.d/zpool) and mount their datasets (rc.d/zfs). Without
# it the pool below would be gone after the provisioning reboot.
if [ "$(sysrc -n zfs_enable 2>/dev/null)" != YES ]; then
	say "enabling ZFS at boot (zfs_enable=YES)"
	sysrc zfs_enable=YES >/dev/null
fi
kldload -n zfs

# The test pool: a sparse file in /var/lib/iocaged-tank, where the Linux
# guest keeps its own (the tests make a second pool's file beside it).
if ! zpool list tank >/dev/null 2>&1; then
	say "creating pool tank on /var/lib/iocaged-tank/vdev0"
	mkdir -p /var/lib/iocaged-tank
	truncate -s 4G /var/lib/iocaged-tank/vdev0
	zpool create -O compression=lz4 tank /var/lib/iocaged-tank/vdev0
fi
say "done"
