#!/bin/sh
# The demo guest (PID 1, like guest.sh): a pool "tank" with an iocage layout
# and a few jails, iocaged serving it, and the guest's ports 12150/12151
# forwarded from the host's loopback by QEMU. iocaged listens on the guest's
# loopback (plaintext is only allowed there); socat hands it the forwarded
# connections. Requests authenticate with the API key printed at start.
# shellcheck source=tests/vm/guest-common.sh
. /mnt/guest-common.sh
IOCAGED=/mnt/bin/iocaged

load_zfs
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0
make_pool tank 2G

# busybox_root DIR: a tiny system for a jail to start from (the host's static
# busybox; /etc/rc leaves a long-running process, as a service would).
busybox_root() {
	mkdir -p "$1/bin" "$1/etc" "$1/dev" "$1/proc" "$1/tmp" "$1/root"
	cp /bin/busybox "$1/bin/busybox"
	for a in sh sleep hostname ps cat echo id ls uptime df; do ln -s busybox "$1/bin/$a"; done
	printf '#!/bin/sh\nsleep 100000 &\n' >"$1/etc/rc"
	printf '#!/bin/sh\n' >"$1/etc/rc.shutdown"
	echo 'root:x:0:0:root:/root:/bin/sh' >"$1/etc/passwd"
	echo 'wheel:x:0:root' >"$1/etc/group"
}

# An iocage 1.7.x-style layout: the root, defaults, three jails.
P=org.freebsd.iocage
zfs create -o mountpoint=/iocage tank/iocage
zfs create -o $P:memoryuse=8G:log -o $P:devfs_ruleset=4 tank/iocage/.defaults
zfs create tank/iocage/jails
n=0
for tag in web db cache; do
	n=$((n + 1))
	uuid=$(cat /proc/sys/kernel/random/uuid)
	zfs create -o $P:tag=$tag -o $P:type=jail -o $P:boot=on -o $P:release=14.1-RELEASE \
		-o $P:host_hostname="$uuid" -o $P:host_hostuuid="$uuid" -o $P:vnet=off \
		-o $P:ip4_addr="lo0|127.0.1.$n" -o $P:notes="demo jail $n" -o $P:mount_procfs=1 \
		"tank/iocage/jails/$uuid"
	zfs create "tank/iocage/jails/$uuid/root"
	busybox_root "/iocage/jails/$uuid/root"
done
zfs set org.freebsd.ioc:active=yes tank
say "pool tank: $(zfs list -H -o name -r tank/iocage/jails -d 1 | wc -l) datasets under tank/iocage/jails"

# A release mirror on the guest's loopback, laid out as FreeBSD's
# (<mirror>/<arch>/<release>/MANIFEST and base.txz), for fetchrelease: the
# demo has no network, so its "release" is one more busybox system.
mirror=/tmp/mirror/releases/amd64/14.2-RELEASE
mkdir -p "$mirror" /tmp/demo-release /etc/iocaged
busybox_root /tmp/demo-release
tar -C /tmp/demo-release -cJf "$mirror/base.txz" .
printf 'base.txz\t%s\t%s\tbase\t"Base system (MANDATORY)"\ton\n' \
	"$(sha256sum "$mirror/base.txz" | cut -d' ' -f1)" "$(tar -tJf "$mirror/base.txz" | wc -l)" >"$mirror/MANIFEST"
busybox httpd -p 127.0.0.1:8080 -h /tmp/mirror
printf 'release_mirror = "http://127.0.0.1:8080/releases"\nrelease_arch = "amd64"\n' >/etc/iocaged/demo.toml

# A write key for the demo (kept in the guest's overlay, gone when it stops).
KEY=$("$IOCAGED" key add demo --role write --file /etc/iocaged/keys) || finish 93
"$IOCAGED" serve --config /etc/iocaged/demo.toml --websocket 127.0.0.1:12150 --rest 127.0.0.1:12151 \
	--keys /etc/iocaged/keys &
pid=$!
for p in 12150 12151; do
	socat "TCP-LISTEN:$p,bind=10.0.2.15,fork,reuseaddr" "TCP:127.0.0.1:$p" &
done
say "iocaged is up. API key: $KEY"
say "from the host: curl -H 'Authorization: Bearer $KEY' -X PUT localhost:12151/sysadm/iocage -d '{\"action\":\"listjails\"}'"
say "stop with Ctrl-C on the host (or kill the qemu process)"
wait "$pid"
finish $?
