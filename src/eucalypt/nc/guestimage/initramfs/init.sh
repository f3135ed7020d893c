#!/bin/busybox sh
# eucalypt test-guest initramfs /init (runs under busybox, PID 1).
#
# 1. loads the virtio modules listed in /lib/modules/load.order (dependency order,
#    written by build.py) -- the Debian cloud kernel builds virtio as modules;
# 2. waits for the root disk /dev/vda (virtio-blk), mounts it (ext4 is built in);
# 3. switch_root's into it and execs its /sbin/init.
# With no disk it prints a clear error on the console and powers off.

# build.py puts the busybox applet symlinks into the archive.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t devtmpfs -o nosuid devtmpfs /dev
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
exec </dev/console >/dev/console 2>&1

say() { echo "eucalypt-initramfs: $*"; }

fail() {
    echo
    echo "=================================================================="
    echo "EUCALYPT-GUEST-ERROR: $*"
    echo "=================================================================="
    echo
    sleep 2
    poweroff -f
}

while read -r mod; do
    [ -n "$mod" ] || continue
    insmod "/lib/modules/$mod.ko" || say "insmod $mod failed"
done < /lib/modules/load.order

# Kernel command line: eucalypt.root=DEV (default /dev/vda),
# eucalypt.rootwait=SECONDS (default 10) to wait for it to appear.
ROOTDEV=/dev/vda
ROOTWAIT=10
for opt in $(cat /proc/cmdline); do
    case "$opt" in
        eucalypt.root=*) ROOTDEV="${opt#eucalypt.root=}" ;;
        eucalypt.rootwait=*) ROOTWAIT="${opt#eucalypt.rootwait=}" ;;
    esac
done

i=0
while [ ! -b "$ROOTDEV" ]; do
    i=$((i + 1))
    if [ "$i" -gt $((ROOTWAIT * 10)) ]; then
        fail "no root disk: $ROOTDEV did not appear. Attach the root filesystem as a virtio-blk disk (e.g. -drive file=rootfs,if=virtio)."
    fi
    sleep 0.1
done

mount -t ext4 -o rw,noatime "$ROOTDEV" /newroot || fail "cannot mount $ROOTDEV as ext4"
[ -x /newroot/sbin/init ] || fail "$ROOTDEV has no executable /sbin/init"

mount --move /dev /newroot/dev
umount /proc /sys 2>/dev/null
exec switch_root /newroot /sbin/init
