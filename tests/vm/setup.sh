#!/bin/sh
# Host set-up for the real-ZFS test guest (and the FreeBSD compile check).
#
# Idempotent: every step checks whether its result is already there. Slow
# results (the guest kernel, the OpenZFS kernel modules, the initramfs) are
# cached under $IOCAGED_VM_CACHE keyed by kernel and OpenZFS version, so a
# second run costs seconds. Prints one line per step.
#
# Usage: tests/vm/setup.sh            (prints the cache directory at the end)
set -eu

CACHE_ROOT=${IOCAGED_VM_CACHE:-/var/cache/iocaged-vm}
export DEBIAN_FRONTEND=noninteractive

say() { printf '[setup] %s\n' "$*" >&2; }

need_root() {
	if [ "$(id -u)" != 0 ]; then
		say "must run as root (installs packages, builds kernel modules)"
		exit 1
	fi
}

# --- apt sources: contrib for bookworm, and bookworm-backports ------------
apt_sources() {
	src=/etc/apt/sources.list.d/iocaged-zfs.sources
	want='Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg'
	if [ -f "$src" ] && [ "$(cat "$src")" = "$want" ] && [ -f "$CACHE_ROOT/.apt-updated" ]; then
		return
	fi
	say "adding contrib and bookworm-backports to apt sources"
	printf '%s\n' "$want" >"$src"
	apt-get update -qq
	mkdir -p "$CACHE_ROOT"
	touch "$CACHE_ROOT/.apt-updated"
}

# --- packages --------------------------------------------------------------
# main: build tools, bindgen's libclang, PAM headers, the guest's busybox,
# gdb for the stacks of a test that timed out in the guest;
# bookworm-security: rustc-web/cargo-web/rust-web-src and lld for the FreeBSD
# build;
# backports: OpenZFS 2.3 userland + headers, and a QEMU that coexists with
# the preinstalled qemu-utils.
MAIN_PKGS="pkg-config libclang-dev clang libpam0g-dev busybox-static cpio kmod
 build-essential autoconf automake libtool gawk uuid-dev libblkid-dev libssl-dev
 zlib1g-dev libtirpc-dev libudev-dev libaio-dev libffi-dev python3
 rustc-web cargo-web rust-web-src lld shellcheck mandoc socat curl systemd gdb"
BPO_PKGS="libzfslinux-dev zfsutils-linux qemu-system-x86"

packages() {
	missing=""
	for p in $MAIN_PKGS $BPO_PKGS; do
		dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
	done
	[ -z "$missing" ] && return
	say "installing packages:$missing"
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $MAIN_PKGS >/dev/null
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends -t bookworm-backports $BPO_PKGS >/dev/null
}

# --- promtool ----------------------------------------------------------------
# Prometheus' own checker of the metrics exposition (tests/api_host.rs). Only
# the binary, taken out of Debian's package: installing the package would
# also install and start a Prometheus server.
install_promtool() {
	[ -x /usr/local/bin/promtool ] && return
	dir="$CACHE_ROOT/promtool"
	if [ ! -x "$dir/usr/bin/promtool" ]; then
		say "fetching promtool (Debian's prometheus package, unpacked, not installed)"
		rm -rf "$dir" && mkdir -p "$dir/deb"
		chown _apt "$dir/deb" 2>/dev/null || true
		(cd "$dir/deb" && apt-get download -qq prometheus >/dev/null) || { say "cannot download prometheus"; exit 1; }
		dpkg-deb -x "$dir"/deb/prometheus_*.deb "$dir" || { say "cannot unpack prometheus"; exit 1; }
		rm -rf "$dir/deb"
	fi
	ln -sf "$dir/usr/bin/promtool" /usr/local/bin/promtool
}

# --- versions ----------------------------------------------------------------
resolve_versions() {
	# The kernel package linux-image-amd64 points at today (ABI numbers move).
	KPKG=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1)
	[ -n "$KPKG" ] || { say "cannot resolve the kernel that linux-image-amd64 depends on"; exit 1; }
	KVER=${KPKG#linux-image-}
	ZVER_FULL=$(dpkg-query -W -f '${Version}' zfsutils-linux)
	ZVER=${ZVER_FULL%%-*}
	CACHE="$CACHE_ROOT/$KVER-zfs$ZVER"
	mkdir -p "$CACHE"
}

# --- kernel image and its modules -------------------------------------------
kernel() {
	[ -f "$CACHE/vmlinuz" ] && [ -d "$CACHE/kmod" ] && return
	say "fetching kernel $KPKG"
	d=$(mktemp -d /var/tmp/iocaged-kernel.XXXXXX); chmod 755 "$d"
	(cd "$d" && apt-get download -qq -o APT::Sandbox::User=root "$KPKG")
	dpkg-deb -x "$d"/*.deb "$d/x"
	cp "$d/x/boot/vmlinuz-$KVER" "$CACHE/vmlinuz.tmp"
	rm -rf "$CACHE/kmod"
	mv "$d/x/lib/modules/$KVER" "$CACHE/kmod"
	mv "$CACHE/vmlinuz.tmp" "$CACHE/vmlinuz"
	rm -rf "$d"
}

# --- OpenZFS kernel modules built from zfs-dkms's source ---------------------
zfs_modules() {
	[ -f "$CACHE/zfs/zfs.ko" ] && [ -f "$CACHE/zfs/spl.ko" ] && return
	hdr="linux-headers-$KVER"
	if ! dpkg-query -W -f '${Status}' "$hdr" 2>/dev/null | grep -q 'ok installed'; then
		say "installing $hdr"
		apt-get install -y -qq --no-install-recommends "$hdr" >/dev/null
	fi
	say "building OpenZFS $ZVER modules for $KVER (takes a few minutes)"
	d=$(mktemp -d /var/tmp/iocaged-zfs.XXXXXX); chmod 755 "$d"
	(cd "$d" && apt-get download -qq -o APT::Sandbox::User=root "zfs-dkms=$ZVER_FULL")
	dpkg-deb -x "$d"/zfs-dkms_*.deb "$d/x"
	src=$(find "$d/x/usr/src" -maxdepth 1 -name 'zfs-*' | head -n1)
	common=$(readlink -f "/usr/src/linux-headers-$KVER/Makefile" | sed 's|/Makefile$||')
	[ -d "$common" ] || common="/usr/src/linux-headers-${KVER%-amd64}-common"
	(
		cd "$src"
		./configure -q --with-config=kernel \
			--with-linux="/usr/src/linux-headers-${KVER%-amd64}-common" \
			--with-linux-obj="/usr/src/linux-headers-$KVER" >"$d/configure.log" 2>&1 ||
			{ tail -n 30 "$d/configure.log" >&2; exit 1; }
		make -s -C module -j"$(nproc)" >"$d/make.log" 2>&1 ||
			{ tail -n 30 "$d/make.log" >&2; exit 1; }
	)
	mkdir -p "$CACHE/zfs.tmp"
	cp "$src/module/spl.ko" "$src/module/zfs.ko" "$CACHE/zfs.tmp/"
	rm -rf "$CACHE/zfs"
	mv "$CACHE/zfs.tmp" "$CACHE/zfs"
	rm -rf "$d"
}

# Order in which the guest loads kernel modules: the 9p/virtio stack, then
# spl and zfs, each preceded by whatever in-tree module it depends on.
# virtio_blk, ext4 and the crc32c it mounts with: the disk the pool's file
# lives on (run.sh). veth, bridge and ipvlan: the jails' networks
# (guest_network; the guest cannot load modules on demand).
GUEST_MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
 9pnet 9pnet_virtio netfs fscache 9p overlay virtio_net virtio_blk crc32c_generic ext4 dummy
 veth bridge ipvlan"
module_order() {
	# Keyed by the list, so that a changed list is computed again.
	ORDER="$CACHE/modules.$(echo "$GUEST_MODULES" | md5sum | cut -c1-16).order"
	[ -f "$ORDER" ] && return
	say "computing guest module load order"
	out="$ORDER.tmp"
	: >"$out"
	# sh has no local variables: only $1 survives the recursion, so every
	# test of "already listed" recomputes the name from it.
	listed() { grep -q "/$(basename "$1")\$" "$out"; }
	add() { # $1: path of a .ko
		listed "$1" && return
		for dep in $(modinfo -F depends "$1" | tr ',' ' '); do
			p=$(find "$CACHE/kmod/kernel" -name "$dep.ko" | head -n1)
			[ -n "$p" ] && add "$p"
		done
		listed "$1" || echo "$1" >>"$out"
	}
	for m in $GUEST_MODULES; do
		p=$(find "$CACHE/kmod/kernel" -name "$m.ko" | head -n1)
		[ -n "$p" ] && add "$p"
	done
	add "$CACHE/zfs/spl.ko"
	add "$CACHE/zfs/zfs.ko"
	mv "$out" "$ORDER"
}

# --- initramfs: busybox, the module list, the first-stage init ---------------
initramfs() {
	here=$(cd "$(dirname "$0")" && pwd)
	stamp=$(cat "$here/initramfs-init.sh" "$ORDER" | md5sum | cut -c1-16)
	[ -f "$CACHE/initramfs.$stamp.cpio.gz" ] && { ln -sf "initramfs.$stamp.cpio.gz" "$CACHE/initramfs.cpio.gz"; return; }
	say "building initramfs"
	d=$(mktemp -d /var/tmp/iocaged-initrd.XXXXXX); chmod 755 "$d"
	mkdir -p "$d/bin" "$d/proc" "$d/sys" "$d/dev" "$d/newroot" "$d/lib/modules"
	cp /bin/busybox "$d/bin/busybox"
	for a in sh mount umount insmod switch_root mkdir cat echo sleep poweroff; do
		ln -s busybox "$d/bin/$a"
	done
	# Only the 9p stack goes into the initramfs; spl/zfs are loaded later from
	# the host's root (the cache directory), keeping the image small.
	i=0
	while read -r ko; do
		case $ko in "$CACHE/zfs/"*) continue ;; esac
		i=$((i + 1))
		cp "$ko" "$d/lib/modules/$(printf '%02d' $i)-$(basename "$ko")"
	done <"$ORDER"
	cp "$here/initramfs-init.sh" "$d/init"
	chmod +x "$d/init"
	(cd "$d" && find . | cpio -o -H newc --quiet | gzip -1 >"$CACHE/initramfs.$stamp.cpio.gz")
	ln -sf "initramfs.$stamp.cpio.gz" "$CACHE/initramfs.cpio.gz"
	rm -rf "$d"
}

need_root
apt_sources
packages
install_promtool
resolve_versions
kernel
zfs_modules
module_order
initramfs
say "ready: kernel $KVER, OpenZFS $ZVER, cache $CACHE"
echo "$CACHE"
