#!/usr/bin/env bash
# The host steps of the boot-time binding proof (issue 13), run by boot-binding-test.sh between guest boots through
# host-chroot.sh: natively on this machine, in the guest's root (this machine's userland) with the guest disk's /etc,
# /boot, ... bound in, so the real initramfs generators read exactly what Enable wrote in the guest.
# Usage (inside host-chroot.sh): boot-binding-host.sh images|restore KERNEL_VERSION
#   images   what the kernel package's postinst does once records exist: installs the kernel's files in /boot and
#            runs update-initramfs -c (initramfs-tools, Gallium's hook runs); keeps that image in the share; then, as on a
#            dracut host, builds a dracut 059 image (dracut unpacked into the throwaway root, never installed) with
#            the module Enable wrote, and puts that one in /boot for the next boot
#   restore  puts the initramfs-tools image back in /boot, for the boot that plays it
# Prints one "PASS/FAIL [host] name" line per check. The share is /run/gallium-share (logs, kernel files, the image copy);
# the dracut packages are in /run/gallium-dracut, the module Enable wrote in /run/gallium-dracut-modules.
set -uo pipefail
mode=${1:?images or restore} ver=${2:?kernel version}
share=/run/gallium-share
image=/boot/initrd.img-$ver
nic=0000:01:00.0
failed=0
check() {   # check NAME COMMAND...
    local name=$1; shift
    if "$@"; then echo "PASS [host] $name"; else echo "FAIL [host] $name"; failed=$((failed + 1)); fi
}
listed() { grep -qx "$1" "$2"; }

case $mode in
    images)
        # The kernel package's files (linux-version list and mkinitramfs read them) and the admin's initramfs-tools
        # settings: e1000e in the initramfs (network boot), gzip (the test init's busybox unpacks it), only the listed
        # modules (the image stays small).
        cp "$share/vmlinuz-$ver" "$share/config-$ver" /boot/
        sed -i 's/^MODULES=.*/MODULES=list/; s/^COMPRESS=.*/COMPRESS=gzip/' /etc/initramfs-tools/initramfs.conf
        grep -qx e1000e /etc/initramfs-tools/modules || echo e1000e >> /etc/initramfs-tools/modules
        t0=$(date +%s)
        update-initramfs -c -k "$ver" > "$share/update-initramfs-create.log" 2>&1
        echo "host: update-initramfs -c -k $ver: exit $?, $(( $(date +%s) - t0 ))s"
        check "update-initramfs -c created $image" test -s "$image"
        lsinitramfs "$image" > /tmp/list
        check "the initramfs-tools image carries e1000e, the apply script and $nic's record" bash -c \
            "grep -q '/e1000e.ko\$' /tmp/list && grep -qx usr/local/libexec/gallium/gallium-vfio-apply /tmp/list && grep -qx etc/gallium/pci.d/$nic /tmp/list"
        check "and no record of group 12 (disabled before it was built)" bash -c "! grep -q '^etc/gallium/pci.d/0000:05:' /tmp/list"
        check "and stat and id, which klibc lacks and the script needs" bash -c "grep -qx usr/bin/stat /tmp/list && grep -qx usr/bin/id /tmp/list"
        unmkinitramfs "$image" /tmp/irfs
        order=$(sed -n 's|^/scripts/init-top/\([^ ]*\) .*|\1|p' /tmp/irfs/scripts/init-top/ORDER | tr '\n' ' ')
        echo "host: init-top ORDER in the initramfs-tools image: $order"
        check "init-top: gallium-vfio runs before udev" bash -c "[[ ' $order' == *' gallium-vfio '*' udev '* ]]"
        cp "$image" "$share/initrd.img-$ver.initramfs-tools"

        # A dracut host: dracut 059 from Debian's packages, unpacked over this throwaway root (/lib etc. are symlinks).
        for deb in /run/gallium-dracut/dracut_*.deb /run/gallium-dracut/dracut-core_*.deb; do
            dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C /
        done
        check "Enable installed the dracut module (90gallium-vfio) where dracut's modules are" \
            test -x /run/gallium-dracut-modules/90gallium-vfio/module-setup.sh
        cp -a /run/gallium-dracut-modules/90gallium-vfio /usr/lib/dracut/modules.d/
        # base (its shell init, modules.d/99base/init.sh, sources the pre-udev hooks, then starts udevd and the
        # coldplug) plus Gallium's module, named here only to keep the image small: a default dracut run includes it
        # because its check() succeeds. gzip and no early microcode archive: the test init's busybox unpacks it.
        t0=$(date +%s)
        dracut --no-hostonly --no-early-microcode --gzip --force -m "base gallium-vfio" --add-drivers e1000e \
            --kver "$ver" "$image" > "$share/dracut.log" 2>&1
        echo "host: dracut: exit $?, $(( $(date +%s) - t0 ))s"
        lsinitrd "$image" > /tmp/dracut-list 2>&1
        # ls -l lines: the path is the last field (before " -> " for a link).
        sed -n 's/ -> .*//; /^[-dlcbps][-rwxsStT]\{9\}/ s/.* //p' /tmp/dracut-list > /tmp/dracut-paths
        grep -E 'gallium|pre-udev' /tmp/dracut-paths | sed 's/^/host: dracut image: /'
        check "the dracut image holds Gallium's pre-udev hook" listed usr/lib/dracut/hooks/pre-udev/00-gallium-vfio-early.sh /tmp/dracut-paths
        check "the dracut image holds the apply script and $nic's record, none of group 12" bash -c \
            "grep -qx usr/local/libexec/gallium/gallium-vfio-apply /tmp/dracut-paths && grep -qx etc/gallium/pci.d/$nic /tmp/dracut-paths && ! grep -q '^etc/gallium/pci.d/0000:05:' /tmp/dracut-paths"
        check "the dracut image holds e1000e and udev's 80-drivers.rules (the modalias load)" bash -c \
            "grep -q '/e1000e.ko' /tmp/dracut-paths && grep -q 'rules.d/80-drivers.rules' /tmp/dracut-paths"
        check "the dracut image holds stat, id, readlink and cat for the script" bash -c \
            "for b in stat id readlink cat; do grep -Eqx \"(usr/)?bin/\$b\" /tmp/dracut-paths || exit 1; done" ;;
    restore)
        cp "$share/initrd.img-$ver.initramfs-tools" "$image"
        check "the initramfs-tools image is back in /boot" cmp -s "$share/initrd.img-$ver.initramfs-tools" "$image" ;;
    *) echo "boot-binding-host: unknown mode $mode" >&2; exit 2 ;;
esac
exit $((failed > 0))
