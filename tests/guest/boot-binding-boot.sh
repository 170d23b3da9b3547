#!/usr/bin/env bash
# One boot of the boot-time binding proof (issue 13), run INSIDE the guest by tests/guest/boot-binding-test.sh
# (run-guest.sh --udev --initramfs-stage --persist-path ...; GALLIUM_GUEST_SHARE holds the logs and the kernel files).
# Usage: boot-binding-boot.sh BOOT MODULE_DIR    Prints one "PASS/FAIL [boot N] name" line per check; exit 1 on a failure.
set -uo pipefail
boot=${1:?boot number}
module=${2:?module directory}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
share=${GALLIUM_GUEST_SHARE:?}
ver=$(uname -r)
nic=0000:01:00.0 gpu=0000:05:00.0 audio=0000:05:00.1 other=0000:00:05.0 ctl=0000:00:05.1
image=/boot/initrd.img-$ver
failed=0

check() {   # check NAME COMMAND...
    local name=$1; shift
    if "$@"; then echo "PASS [boot $boot] $name"; else echo "FAIL [boot $boot] $name"; failed=$((failed + 1)); fi
}
driver_of() { local l; l=$(readlink "/sys/bus/pci/devices/$1/driver") && basename "$l" || echo none; }
override_of() { cat "/sys/bus/pci/devices/$1/driver_override"; }
on() { [ "$(driver_of "$1")" = "$2" ]; }
held() { on "$1" vfio-pci && [ "$(override_of "$1")" = vfio-pci ]; }
released() { on "$1" e1000e && [ "$(override_of "$1")" = '(null)' ]; }
# e1000e prints "e1000e 0000:01:00.0: ..." from its probe() (interrupt mode, MAC address, ...): none means never probed.
probed() { dmesg | grep -q "e1000e $1"; }
not_probed() { ! probed "$1"; }
# The early stage's kernel-log line for the device comes before e1000e's module init ("e1000e: Intel(R) PRO/1000").
early_before_e1000e() {
    local early e1000e
    early=$(dmesg | grep -n "gallium-vfio-apply: $1: driver_override set to vfio-pci (early" | head -n1 | cut -d: -f1)
    e1000e=$(dmesg | grep -n 'e1000e: Intel(R) PRO/1000 Network Driver' | head -n1 | cut -d: -f1)
    [ -n "$early" ] && [ -n "$e1000e" ] && [ "$early" -lt "$e1000e" ]
}
in_image() { lsinitramfs "$image" | grep -qx "$1"; }
not_in_image() { ! in_image "$1"; }
init_top_order() {   # gallium-vfio runs before udev in the image's init-top ORDER
    local order
    order=$(lsinitramfs "$image" >/dev/null && unmkinitramfs "$image" /tmp/irfs >/dev/null 2>&1 && sed -n 's|^/scripts/init-top/\([^ ]*\) .*|\1|p' /tmp/irfs/scripts/init-top/ORDER | tr '\n' ' ')
    echo "boot $boot: init-top ORDER in $image: $order"
    [[ " $order" == *" gallium-vfio "*" udev "* ]]
}

grep -q 'gallium.testguest=1' /proc/cmdline || { echo "boot-binding-boot: not the test guest" >&2; exit 2; }
mountpoint -q /persist || { echo "FAIL [boot $boot] guest booted with --persist-disk"; exit 1; }

# What the kernel says before any cmdlet (or pwsh) ran in this boot.
for d in $nic $gpu $audio $other; do echo "boot $boot: before any cmdlet: $d driver=$(driver_of $d) override=$(override_of $d)"; done
echo "boot $boot: init: $(cat "$share/init-e1000e" 2>/dev/null || echo 'loaded e1000e itself')"
echo "boot $boot: initramfs stage: $(tr '\n' ' ' < "$share/initramfs-stage.log" 2>/dev/null)"
grep -E 'gallium|udevd.service|trigger|settled' /run/gallium-sysinit.log | sed "s/^/boot $boot: sysinit: /"
dmesg | grep -E 'gallium-vfio-apply|e1000e: Intel|e1000e 0000:0[015]:00\.[01]: (Interrupt|eth)' | sed "s/^/boot $boot: dmesg: /"
check "init left e1000e to udev" grep -qx 'e1000e left to udev' "$share/init-e1000e"
check "e1000e is loaded (by udev) and bound $other" on $other e1000e
case $boot in
    1)
        check "fresh disk: no initramfs stage (no $image yet)" grep -q 'skipped' "$share/initramfs-stage.log"
        check "$nic starts on e1000e, bound by udev's modalias load" on $nic e1000e
        # The kernel package's files and an admin's initramfs-tools settings: e1000e in the initramfs (network boot),
        # gzip (the test init's busybox unpacks the image), only the listed modules (fast under TCG).
        cp "$share"/vmlinuz-"$ver" "$share"/config-"$ver" /boot/
        sed -i 's/^MODULES=.*/MODULES=list/; s/^COMPRESS=.*/COMPRESS=gzip/' /etc/initramfs-tools/initramfs.conf
        echo e1000e >> /etc/initramfs-tools/modules ;;
    2)
        check "no initramfs image yet: no initramfs stage" grep -q 'skipped' "$share/initramfs-stage.log"
        for d in $nic $gpu $audio; do
            check "$d is on vfio-pci with its override after the udev boot, before any cmdlet" held $d
            check "$d was never probed by e1000e (kernel log)" not_probed $d
        done
        check "the early unit ran before systemd-udevd" bash -c "grep -n . /run/gallium-sysinit.log | grep -m1 -e 'gallium-vfio-early.service: exited 0' -e 'systemd-udevd.service' | grep -q gallium"
        check "its kernel-log line for $nic comes before e1000e's module init" early_before_e1000e $nic
        # udev's own account of the event (udevadm test applies the rules without RUN): rule order, PROGRAM, ATTR, RUN list.
        SYSTEMD_IGNORE_CHROOT=1 udevadm test --action=add /sys/bus/pci/devices/$nic > "$share/udevadm-test.log" 2>&1
        check "udevadm test reads 70-gallium-vfio-$nic.rules before 80-drivers.rules" bash -c \
            "grep -n 'Reading rules file' '$share/udevadm-test.log' | grep -m1 -e 70-gallium-vfio -e 80-drivers.rules | grep -q 70-gallium"
        check "udevadm test: the rule's PROGRAM ran and its ATTR{driver_override} was applied before the RUN list" bash -c \
            "grep -qi 'gallium-vfio-apply --wants $nic' '$share/udevadm-test.log' && grep -qi 'driver_override' '$share/udevadm-test.log'"
        check "udevadm test: the RUN list holds kmod load and the apply script" bash -c \
            "grep -q \"run: 'kmod load'\" '$share/udevadm-test.log' && grep -q \"run: '/usr/local/libexec/gallium/gallium-vfio-apply $nic'\" '$share/udevadm-test.log'"
        # The kernel package's postinst: create the initramfs (it runs Gallium's hook).
        update-initramfs -c -k "$ver" > "$share/update-initramfs-create.log" 2>&1
        check "update-initramfs -c created $image" test -s "$image"
        check "the image carries e1000e, the apply script and the three records" bash -c \
            "lsinitramfs $image > /tmp/list && grep -q '/e1000e.ko' /tmp/list && grep -qx usr/local/libexec/gallium/gallium-vfio-apply /tmp/list && grep -qx etc/gallium/pci.d/$nic /tmp/list && grep -qx etc/gallium/pci.d/$gpu /tmp/list && grep -qx etc/gallium/pci.d/$audio /tmp/list"
        check "init-top: gallium-vfio comes before udev" init_top_order ;;
    3)
        check "the initramfs stage ran (image present)" grep -q 'initramfs-tools image' "$share/initramfs-stage.log"
        check "e1000e was loaded in the initramfs stage" grep -q 'e1000e loaded' "$share/initramfs-stage.log"
        check "$nic is on vfio-pci with its override after the initramfs boot, before any cmdlet" held $nic
        check "$nic was never probed by e1000e (kernel log)" not_probed $nic
        check "the initramfs' early line for $nic comes before e1000e's module init" early_before_e1000e $nic
        for d in $gpu $audio; do
            check "$d (disabled) is back on e1000e, override (null)" released $d
            check "$d was probed by e1000e" probed $d
        done ;;
    4)
        check "the initramfs stage ran" grep -q 'initramfs-tools image' "$share/initramfs-stage.log"
        check "$nic (disabled) is back on e1000e, override (null)" released $nic
        check "$nic was probed by e1000e" probed $nic
        check "no Gallium record is left" test -z "$(ls -A /etc/gallium/pci.d 2>/dev/null)"
        check "no driverctl record is left" test -z "$(ls -A /etc/driverctl.d 2>/dev/null)"
        check "no Gallium udev rule is left" bash -c '! ls /etc/udev/rules.d/*gallium* >/dev/null 2>&1'
        check "the image holds no Gallium record" bash -c "! lsinitramfs $image | grep -q '^etc/gallium/pci.d/.'" ;;
esac

# Disable asks libvirt whether a VM holds the group (boots 2 and 3 disable).
if [ "$boot" = 2 ] || [ "$boot" = 3 ]; then
    bash "$here/../libvirt/start-libvirtd.sh" >/dev/null || { echo "FAIL [boot $boot] libvirtd starts in the guest"; failed=$((failed + 1)); }
fi
dotnet pwsh -NoProfile -NonInteractive -File "$here/BootBinding-Steps.ps1" -Boot "$boot" -ModulePath "$module" -Image "$image"
[ $? -eq 0 ] || failed=$((failed + 1))
echo "boot $boot: $failed failure(s)"
exit $((failed > 0))
