#!/bin/sh
# First-stage init of the test guest (busybox). Loads the 9p stack, mounts the
# host's root read-only under a writable tmpfs overlay as the new root, a
# fresh /run, and the run's writable share (test binaries in, results out) on
# /mnt, then
# switch_roots into the host's root and runs /mnt/guest.sh with the host's sh.
# switch_root (not chroot): ZFS opens file vdevs from kernel threads, which
# resolve paths from the real root.
export PATH=/bin
die() { echo "[guest-init] $*"; echo o >/proc/sysrq-trigger; sleep 10; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in /lib/modules/*.ko; do
	insmod "$m" || die "insmod $m failed"
done
# The host's root, read-only, under a tmpfs overlay: the guest can create
# mountpoints (/iocage) and scratch files anywhere, and nothing reaches the host.
mkdir -p /lower /rw
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /lower || die "cannot mount the host root"
mount -t tmpfs tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot || die "cannot mount the overlay root"
mount -t 9p -o trans=virtio,version=9p2000.L,rw,msize=262144 work /newroot/mnt || die "cannot mount the work share"
mount -t tmpfs tmpfs /newroot/run
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
exec switch_root /newroot /bin/sh /mnt/guest.sh
