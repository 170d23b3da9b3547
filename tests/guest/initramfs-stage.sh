#!/bin/sh
# The initramfs' part of a boot, played by the test guest's init (busybox) with a real initramfs image built on the
# guest's persistent disk (update-initramfs / dracut in an earlier boot): the image is unpacked into a tmpfs and its own
# boot scripts run there in a chroot, in the order its generator gave them, with its own udev and modules:
#   initramfs-tools: /scripts/init-top in ORDER (Gallium's gallium-vfio, then udev: systemd-udevd + coldplug + settle),
#                    then load_modules (/conf/modules), then udevd stops (`udevadm control --exit`, as init-bottom/udev)
#   dracut:          the pre-udev hooks in name order, then systemd-udevd + coldplug + settle, then udevd stops
#                    (dracut's shell init order, modules.d/99base/init.sh)
# What they load stays loaded: the real root then starts with e1000e already in the kernel, as on a host whose
# initramfs carries the NIC driver. Usage: initramfs-stage.sh IMAGE   (no IMAGE: nothing to do, exit 0)
img=$1
if [ ! -f "$img" ]; then echo "initramfs-stage: no $img, skipped"; exit 0; fi
set -e
now() { cut -d' ' -f1 /proc/uptime; }
echo "initramfs-stage: $img at $(now)s"
irfs=/irfs
mkdir -p $irfs
mount -t tmpfs -o mode=0755 tmpfs $irfs
# busybox can only gunzip: the test's initramfs.conf says COMPRESS=gzip (and no early microcode archive is prepended).
magic=$(head -c 2 "$img" | od -An -tx1 | tr -d ' \n')
[ "$magic" = 1f8b ] || { echo "initramfs-stage: $img is not one gzip'd cpio (magic $magic)"; exit 1; }
( cd $irfs && zcat "$img" | cpio -idm 2>/dev/null )
for m in proc sys dev; do mkdir -p $irfs/$m && mount --bind /$m $irfs/$m; done
mkdir -p $irfs/run && mount -t tmpfs -o mode=0755 tmpfs $irfs/run

if [ -f $irfs/scripts/init-top/ORDER ]; then
    echo "initramfs-stage: initramfs-tools image; init-top ORDER: $(sed -n 's|^/scripts/init-top/\([^ ]*\) .*|\1|p' $irfs/scripts/init-top/ORDER | tr '\n' ' ')"
    chroot $irfs /bin/sh -c '
        export PATH=/sbin:/usr/sbin:/bin:/usr/bin quiet=y SYSTEMD_IGNORE_CHROOT=1
        mkdir -p /var/lock /run/initramfs
        . /conf/initramfs.conf
        . /scripts/functions
        run_scripts /scripts/init-top
        load_modules
        udevadm control --exit'
elif [ -f $irfs/lib/dracut-lib.sh ]; then
    echo "initramfs-stage: dracut image; pre-udev hooks: $(ls $irfs/lib/dracut/hooks/pre-udev 2>/dev/null | tr '\n' ' ')"
    # As modules.d/99base/init.sh: the image's own source_hook pre-udev, its udevd, the two triggers, settle.
    chroot $irfs /bin/sh -c '
        export PATH=/usr/sbin:/usr/bin:/sbin:/bin SYSTEMD_IGNORE_CHROOT=1
        . /lib/dracut-lib.sh
        source_conf /etc/conf.d
        source_hook pre-udev
        "$systemdutildir"/systemd-udevd --daemon --resolve-names=never
        udevadm trigger --type=subsystems --action=add > /dev/null 2>&1
        udevadm trigger --type=devices --action=add > /dev/null 2>&1
        udevadm settle --timeout=120 || true
        udevadm control --exit'
else
    echo "initramfs-stage: $img is neither an initramfs-tools nor a dracut image"
    exit 1
fi
echo "initramfs-stage: done at $(now)s; e1000e $( [ -d /sys/module/e1000e ] && echo loaded || echo 'not loaded')"
sleep 0.2   # udevd's exit
for m in run dev sys proc; do umount $irfs/$m 2>/dev/null || umount -l $irfs/$m; done
umount $irfs || umount -l $irfs
