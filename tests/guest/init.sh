#!/bin/sh
# PID 1 of the test guest (busybox ash). Builds the root as REFERENCE §1: this machine's / over read-only 9p with a
# tmpfs overlay, then runs /run/gallium-share/cmd (written by run-guest.sh) in a chroot and reports its exit code.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# The cpio has no /dev/console node, so the kernel could not give us stdio: take the console now.
exec 0</dev/console 1>/dev/console 2>&1

say() { echo "[guest] $*"; }
# Never return from PID 1 (that panics with no exit code); power off instead.
die() { say "FATAL: $*"; sync; poweroff -f; sleep 5; }

ver="$(uname -r)"
while read -r ko; do
    case "$ko" in */e1000e.ko) continue ;; esac   # after the config: --udev leaves it to udev
    insmod "/lib/modules/$ver/$ko" || die "insmod $ko failed"
done < /etc/boot-modules

mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 share /mnt/share || die "cannot mount the share"
KMODDIR=""; CWD=""; LOAD=""; RAWOUT=0; INTERACTIVE=0; VERBOSE=0; PERSIST=0; UDEV=0; INITRD_STAGE=0; PERSIST_PATHS=""
. /mnt/share/config || die "cannot read the share's config"
# --udev: e1000e is not loaded here; udev's coldplug (80-drivers.rules' modalias kmod load) or an initramfs stage loads it.
if [ "$UDEV" = 1 ]; then
    echo "e1000e left to udev" > /mnt/share/init-e1000e
else
    ko=$(grep '/e1000e\.ko$' /etc/boot-modules) && { insmod "/lib/modules/$ver/$ko" || die "insmod $ko failed"; }
fi
[ "$VERBOSE" = 1 ] && say "modules loaded at $(cut -d' ' -f1 /proc/uptime)s"

# --persist-disk: an ext4 disk on the board's AHCI port that outlives this boot (the guest's "real" /etc and /var/lib).
if [ "$PERSIST" = 1 ]; then
    while read -r ko; do
        opts=""
        # QEMU 7.2's AHCI aborts some NCQ writes ("PRDT length for NCQ command (0x0)") and libata then resets the link:
        # plain DMA commands instead. (insmod, unlike modprobe, does not take libata.force= from the kernel command line.)
        case "$ko" in */libata.ko) opts="force=noncq" ;; esac
        # crc32c-intel/crct10dif-pclmul need CPU features TCG may lack; the generic versions cover them.
        insmod "/lib/modules/$ver/$ko" $opts 2>/dev/null || { [ "$VERBOSE" = 1 ] && say "insmod $ko failed (ignored)"; }
    done < /etc/disk-modules
    for _ in $(seq 1 100); do [ -b /dev/sda ] && break; sleep 0.1; done
    # QEMU 7.2's AHCI maps a command's PRDT through the vIOMMU one 4 KiB page at a time and aborts on a short map
    # ("ide_dma_cb: Assertion `prep_size >= 0 && ...' failed"): the PRDT of a command table near a page end crosses it
    # once a request has more than 8 segments (reproduced with 16 MiB O_DIRECT writes). Requests of at most 16 KiB have
    # at most 5 segments, whose PRDT fits in any slot.
    echo 16 > /sys/block/sda/queue/max_sectors_kb 2>/dev/null || say "warning: cannot limit sda's request size"
    mount -t ext4 /dev/sda /mnt/persist || die "cannot mount the persistent disk (/dev/sda, ext4)"
    mkdir -p /mnt/persist/gallium /mnt/persist/libvirt/etc-qemu /mnt/persist/libvirt/var-lib /mnt/persist/libvirt/var-cache
    [ "$VERBOSE" = 1 ] && say "persistent disk mounted at $(cut -d' ' -f1 /proc/uptime)s"
    # --initramfs-stage: the initrd.img-<this kernel> on the disk's /boot plays the initramfs' part (init-top, its udev, init-bottom).
    if [ "$INITRD_STAGE" = 1 ]; then
        sh /etc/initramfs-stage.sh "/mnt/persist/root/boot/initrd.img-$ver" > /mnt/share/initramfs-stage.log 2>&1 \
            || die "the initramfs stage failed: $(tail -n 3 /mnt/share/initramfs-stage.log)"
        [ "$VERBOSE" = 1 ] && say "initramfs stage done at $(cut -d' ' -f1 /proc/uptime)s"
    fi
fi

mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /mnt/host || die "cannot mount hostroot"
mount -t tmpfs -o mode=0755 tmpfs /mnt/up || die "tmpfs"
mkdir -p /mnt/up/u /mnt/up/w
mount -t overlay overlay -o lowerdir=/mnt/host,upperdir=/mnt/up/u,workdir=/mnt/up/w /newroot || die "overlay"
r=/newroot
mount -t proc proc $r/proc
mount -t sysfs sys $r/sys
mount -t devtmpfs dev $r/dev
mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $r/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $r/dev/shm
# The command's directory may live under /tmp or /run (CI clones there): keep it visible, and writable through the
# overlay, under the fresh tmpfs mounts below.
case "$CWD" in /tmp/*|/run/*) mkdir -p /mnt/cwd && mount --bind "$r$CWD" /mnt/cwd || die "cannot keep $CWD" ;; esac
mount -t tmpfs -o mode=1777 tmpfs $r/tmp
# A fresh /run: the host's /run holds its own pid files and libvirt sockets, which a guest daemon must not see.
mount -t tmpfs -o mode=0755 tmpfs $r/run
mkdir -p $r/run/gallium-share
case "$CWD" in /tmp/*|/run/*) mkdir -p "$r$CWD" && mount --bind /mnt/cwd "$r$CWD" || die "cannot bind $CWD" ;; esac
mount --bind /mnt/share $r/run/gallium-share
# The host userland has no /lib/modules for this kernel: bind the extracted tree so `modprobe vfio-pci` works.
if [ -n "$KMODDIR" ] && [ -d "/mnt/host$KMODDIR" ]; then
    mkdir -p "$r/lib/modules/$ver"
    mount --bind "/mnt/host$KMODDIR" "$r/lib/modules/$ver" || die "cannot bind $KMODDIR"
else
    say "warning: no module tree for $ver (KMODDIR='$KMODDIR'); modprobe will fail in the chroot"
fi
for m in $LOAD; do
    chroot $r /sbin/modprobe "$m" || say "warning: modprobe $m failed"
done

# The guest's libvirt starts empty: the host's domain definitions, state and logs (other test runs' VMs, which may
# name this guest's PCI addresses) must not appear in it.
for d in etc/libvirt/qemu var/lib/libvirt var/cache/libvirt var/log/libvirt; do
    mkdir -p "$r/$d" && mount -t tmpfs -o mode=0755 tmpfs "$r/$d" || die "tmpfs on /$d"
done

if [ "$PERSIST" = 1 ]; then
    # /persist/gallium is GALLIUM_STATE_ROOT (records, udev rules, apply script); libvirt's definitions live on the disk too.
    mkdir -p $r/persist $r/etc/libvirt/qemu $r/var/lib/libvirt $r/var/cache/libvirt
    mount --bind /mnt/persist $r/persist || die "bind /persist"
    mount --bind /mnt/persist/libvirt/etc-qemu $r/etc/libvirt/qemu || die "bind /etc/libvirt/qemu"
    mount --bind /mnt/persist/libvirt/var-lib $r/var/lib/libvirt || die "bind /var/lib/libvirt"
    mount --bind /mnt/persist/libvirt/var-cache $r/var/cache/libvirt || die "bind /var/cache/libvirt"
    # --persist-path P: P comes from the disk (root/P there), seeded from the root's own P the first time.
    for p in $PERSIST_PATHS; do
        d=/mnt/persist/root$p
        if [ ! -e "$d" ]; then
            mkdir -p "$d" && { [ ! -d "$r$p" ] || cp -a "$r$p/." "$d/"; } || die "cannot seed $d"
        fi
        mkdir -p "$r$p" && mount --bind "$d" "$r$p" || die "bind $p"
    done
fi
if [ "$PERSIST" = 1 ] && [ "$UDEV" != 1 ]; then
    # The boot unit's job (on a real host the udev rule or a systemd unit does it; this init runs no udev): apply every record.
    apply=/persist/gallium/usr/local/libexec/gallium/gallium-vfio-apply
    if [ -x "$r$apply" ]; then
        # With the PATH systemd gives a unit (and udevd its RUN programs): the script finds modprobe in sbin.
        chroot $r /usr/bin/env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$apply" --all \
            > $r/run/gallium-boot-apply.log 2>&1
        arc=$?
        echo "exit $arc" >> $r/run/gallium-boot-apply.log
        [ "$arc" = 0 ] || say "warning: $apply --all exited $arc (see /run/gallium-boot-apply.log)"
        [ "$VERBOSE" = 1 ] && say "$apply --all exited $arc at $(cut -d' ' -f1 /proc/uptime)s"
    else
        echo "no $apply" > $r/run/gallium-boot-apply.log
    fi
fi

if [ "$UDEV" = 1 ]; then
    # systemd's sysinit part that binds drivers, played with the real units and the real systemd-udevd (boot-sysinit.sh).
    cp /etc/boot-sysinit.sh $r/run/gallium-sysinit.sh
    chroot $r /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /bin/bash /run/gallium-sysinit.sh \
        > $r/run/gallium-sysinit.log 2>&1 || say "warning: the sysinit stage failed (see /run/gallium-sysinit.log)"
    [ "$VERBOSE" = 1 ] && say "udev coldplug settled at $(cut -d' ' -f1 /proc/uptime)s"
fi

[ "$RAWOUT" = 1 ] && stty -onlcr 2>/dev/null
[ "$VERBOSE" = 1 ] && say "running command at $(cut -d' ' -f1 /proc/uptime)s"
cd /
if [ "$INTERACTIVE" = 1 ]; then
    # cttyhack reopens the real serial tty so an interactive shell gets job control and ^C.
    setsid cttyhack chroot $r /usr/bin/env -i /bin/bash /run/gallium-share/cmd
else
    chroot $r /usr/bin/env -i /bin/bash /run/gallium-share/cmd < /dev/null
fi
rc=$?
[ "$VERBOSE" = 1 ] && say "command exited $rc at $(cut -d' ' -f1 /proc/uptime)s"
if [ "$PERSIST" = 1 ]; then
    # Daemons the command started (libvirtd, QEMU) hold files on the disk: stop everything, then unmount it cleanly.
    kill -TERM -1 2>/dev/null; sleep 0.5; kill -KILL -1 2>/dev/null; sleep 0.2
    for p in $PERSIST_PATHS; do umount "$r$p" 2>/dev/null; done
    for m in $r/var/cache/libvirt $r/var/lib/libvirt $r/etc/libvirt/qemu $r/persist; do umount $m 2>/dev/null; done
    umount /mnt/persist 2>/dev/null || mount -o remount,ro /mnt/persist || say "warning: the persistent disk was not unmounted cleanly"
fi
echo "$rc" > /mnt/share/rc.tmp && mv /mnt/share/rc.tmp /mnt/share/rc
sync
[ "$VERBOSE" = 1 ] || echo 0 > /proc/sys/kernel/printk   # keep "reboot: Power down" out of the command's output
umount $r/run/gallium-share 2>/dev/null
umount /mnt/share 2>/dev/null
poweroff -f
sleep 5
