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
# The first early-stage kernel-log line for the device (gallium-vfio-apply --early writes one when it sets an override)
# comes before e1000e's module init ("e1000e: Intel(R) PRO/1000"): no e1000e code ran before the override was in place.
early_before_e1000e() {
    local early e1000e
    early=$(dmesg | grep -n "gallium-vfio-apply: $1: driver_override set to vfio-pci (early" | head -n1 | cut -d: -f1)
    e1000e=$(dmesg | grep -n 'e1000e: Intel(R) PRO/1000 Network Driver' | head -n1 | cut -d: -f1)
    [ -n "$early" ] && [ -n "$e1000e" ] && [ "$early" -lt "$e1000e" ]
}
# udevadm test's log (udev 252): "...rules:5 ATTR '/sys/devices/.../<bdf>/driver_override' writing 'vfio-pci'" as the rule
# line is applied; the RUN programs ("run: '...'") only after every rule was processed.
attr_before_run() {
    local log=$1 bdf=$2 program attr run
    program=$(grep -n "'/usr/local/libexec/gallium/gallium-vfio-apply --wants $bdf'(out) 'vfio-pci'" "$log" | head -n1 | cut -d: -f1)
    attr=$(grep -n "ATTR '[^']*/$bdf/driver_override' writing 'vfio-pci'" "$log" | head -n1 | cut -d: -f1)
    run=$(grep -n "^run: '" "$log" | head -n1 | cut -d: -f1)
    [ -n "$program" ] && [ -n "$attr" ] && [ -n "$run" ] && [ "$program" -lt "$attr" ] && [ "$attr" -lt "$run" ]
}
stage_log() { grep -q "$1" "$share/initramfs-stage.log"; }

grep -q 'gallium.testguest=1' /proc/cmdline || { echo "boot-binding-boot: not the test guest" >&2; exit 2; }
mountpoint -q /persist || { echo "FAIL [boot $boot] guest booted with --persist-disk"; exit 1; }

# What the kernel says before any cmdlet (or pwsh) ran in this boot.
for d in $nic $gpu $audio $other; do echo "boot $boot: before any cmdlet: $d driver=$(driver_of $d) override=$(override_of $d)"; done
echo "boot $boot: init: $(cat "$share/init-e1000e" 2>/dev/null || echo 'loaded e1000e itself')"
echo "boot $boot: initramfs stage: $(tr '\n' ' ' < "$share/initramfs-stage.log" 2>/dev/null)"
grep -E 'gallium|udevd.service|trigger|settled' /run/gallium-sysinit.log | sed "s/^/boot $boot: sysinit: /"
dmesg | grep -E 'gallium-vfio-apply|e1000e: Intel|e1000e 0000:0[015]:00\.[01]: (Interrupt|eth)' | sed "s/^/boot $boot: dmesg: /"
check "init left e1000e to udev" grep -qx 'e1000e left to udev' "$share/init-e1000e"
check "e1000e is loaded (by udev or the initramfs stage) and bound $other" on $other e1000e
case $boot in
    1)
        check "fresh disk: $nic starts on e1000e, bound by udev's modalias load" on $nic e1000e ;;
    2)
        # udev's coldplug alone (no initramfs image exists yet): the early unit, then the rule.
        for d in $nic $gpu $audio; do
            check "$d is on vfio-pci with its override after the udev boot, before any cmdlet" held $d
            check "$d was never probed by e1000e (kernel log)" not_probed $d
            check "the early unit's override of $d comes before e1000e's module init" early_before_e1000e $d
        done
        check "the early unit ran before systemd-udevd started" bash -c \
            "grep -m1 -e 'gallium-vfio-early.service: exited 0' -e 'systemd-udevd.service' /run/gallium-sysinit.log | grep -q gallium"
        # udev's own account of an event (udevadm test applies the rules, RUN programs are only listed): rule order,
        # PROGRAM, ATTR, RUN list.
        SYSTEMD_IGNORE_CHROOT=1 udevadm test --action=add /sys/bus/pci/devices/$nic > "$share/udevadm-test.log" 2>&1
        check "udevadm test reads 70-gallium-vfio-$nic.rules before 80-drivers.rules" bash -c \
            "grep -n 'Reading rules file' '$share/udevadm-test.log' | grep -m1 -e 70-gallium-vfio -e 80-drivers.rules | grep -q 70-gallium"
        check "udevadm test: the rule's PROGRAM printed vfio-pci and its ATTR wrote driver_override while the rules were applied, before the RUN list" \
            attr_before_run "$share/udevadm-test.log" $nic
        check "udevadm test: the RUN list holds 80-drivers.rules' kmod load and the apply script" bash -c \
            "grep -q \"^run: 'kmod load'\" '$share/udevadm-test.log' && grep -q \"^run: '/usr/local/libexec/gallium/gallium-vfio-apply $nic'\" '$share/udevadm-test.log'" ;;
    3|4)
        # The image's stage ran first and loaded e1000e: the real root started with the host driver in the kernel.
        kind=$([ "$boot" = 3 ] && echo dracut || echo initramfs-tools)
        check "the $kind image's stage ran" stage_log "$kind image"
        check "e1000e was loaded in the $kind stage" stage_log 'e1000e loaded'
        check "$nic is on vfio-pci with its override after the $kind boot, before any cmdlet" held $nic
        check "$nic was never probed by e1000e (kernel log)" not_probed $nic
        # e1000e's module init happened in the stage, so an early line before it is the image's own hook.
        check "the $kind image's override of $nic comes before e1000e's module init" early_before_e1000e $nic
        for d in $gpu $audio; do
            check "$d (disabled) is back on e1000e, override (null)" released $d
            check "$d was probed by e1000e" probed $d
        done ;;
esac

# Boot 3 needs no cmdlet. Disable asks libvirt whether a VM holds the group (boots 2 and 4 disable).
[ "$boot" = 3 ] && { echo "boot $boot: $failed failure(s)"; exit $((failed > 0)); }
# Each under a watchdog (watchdog.sh): a hang prints where it hung and fails this boot, not the whole run's timeout.
. "$here/watchdog.sh"
if [ "$boot" = 2 ] || [ "$boot" = 4 ]; then
    watched 120 bash "$here/../libvirt/start-libvirtd.sh" >/dev/null || { echo "FAIL [boot $boot] libvirtd starts in the guest"; failed=$((failed + 1)); }
fi
watched 360 dotnet pwsh -NoProfile -NonInteractive -File "$here/BootBinding-Steps.ps1" -Boot "$boot" -ModulePath "$module" -Image "$image"
[ $? -eq 0 ] || failed=$((failed + 1))
echo "boot $boot: $failed failure(s)"
exit $((failed > 0))
