#!/usr/bin/env bash
# Issue 13's proof: at boot an enabled device is never touched by its host driver. Four boots of the test guest on one
# persistent disk, booted as a systemd host binds drivers (run-guest.sh --udev: init loads no e1000e; the early units
# sysinit.target wants, then the real systemd-udevd's coldplug, whose 80-drivers.rules modalias rule loads e1000e), the
# last two with a real initramfs image's stage first (--initramfs-stage: its own scripts and udev load e1000e). The module
# runs with its real paths (/etc/gallium, /etc/udev/rules.d, /etc/systemd/system, /etc/initramfs-tools, /boot, ... come
# from the disk), so the boot tools read exactly what Enable wrote.
#   boot 1 (udev):              Enable 01:00.0 (group 10) and 05:00.0 (group 12, two functions)
#   boot 2 (udev coldplug):     all three on vfio-pci before any cmdlet, never probed by e1000e, the early unit's
#                               override before e1000e's module init; drift shown and repaired; a driverctl override
#                               round-trips through Enable/Disable; Disable group 12
#   host (native, host-chroot.sh; the kernel package's postinst): update-initramfs -c (Gallium's hook), then a dracut
#                               059 image with Gallium's module in /boot
#   boot 3 (dracut stage + udev): 01:00.0 held by the dracut image's pre-udev hook, never probed although the image's
#                               udev loaded e1000e; 05:00.x (disabled) back on e1000e
#   host: the initramfs-tools image back in /boot
#   boot 4 (initramfs-tools stage + udev): the same through init-top; Enable warns that the image loads e1000e and lacks
#                               the record; Disable warns that it still holds one, -UpdateInitramfs regenerates it;
#                               no record of any kind is left
# Usage: tests/guest/boot-binding-test.sh [--module DIR] [--keep]   (DIR default: out/Gallium.PciPassthrough)
# Prints PASS/FAIL lines, a summary and the marker line build.ps1 counts (boot-sequence.sh). Needs root (host-chroot.sh).
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
module="$repo/out/Gallium.PciPassthrough"
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --module) module="$(cd "${2:?}" && pwd)"; shift ;;
        --keep) keep=1 ;;
        *) echo "boot-binding-test: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ -f "$module/Gallium.PciPassthrough.psd1" ] || { echo "boot-binding-test: no module in $module (build it first)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "boot-binding-test: needs root (the host steps use a mount namespace and a loop device)" >&2; exit 2; }
for tool in update-initramfs lsinitramfs unmkinitramfs udevadm driverctl unshare; do
    command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 \
        || { echo "boot-binding-test: $tool is missing (tests/prepare-host.sh installs udev, initramfs-tools, driverctl)" >&2; exit 2; }
done

mkdir -p "$here/work/runs"
kdir="$(bash "$here/fetch-kernel.sh" | tail -n1)"
dracut="$(bash "$here/fetch-dracut.sh" | tail -n1)"
ver="$(basename "$(ls -d "$kdir"/lib/modules/*/ | head -n1)")"
share="$(mktemp -d "$here/work/runs/boot-binding.XXXXXX")"
disk="$share/disk.img"                     # run-guest.sh creates it (sparse ext4) on the first boot
[ "$keep" = 1 ] || trap 'rm -rf "$share"' EXIT
# What the kernel package installs in /boot (linux-version list and mkinitramfs read them); the host step copies them there.
cp "$kdir/boot/vmlinuz-$ver" "$kdir/boot/config-$ver" "$share/"
paths=(/etc/gallium /etc/udev/rules.d /usr/local/libexec/gallium /etc/systemd/system /etc/initramfs-tools
       /etc/driverctl.d /boot /var/lib/initramfs-tools /usr/lib/dracut/modules.d)
guest=(--persist-disk "$disk" --udev --share "$share" --timeout 900)
for p in "${paths[@]}"; do guest+=(--persist-path "$p"); done
# The host steps see the same paths, except dracut's module directory: the dracut unpacked there brings its own.
host=(--disk "$disk" --kernel "$kdir" --bind "$share:/run/gallium-share" --bind "$dracut:/run/gallium-dracut"
      --bind "$here/boot-binding-host.sh:/run/boot-binding-host.sh" --persist-path /usr/lib/dracut/modules.d:/run/gallium-dracut-modules)
for p in "${paths[@]}"; do [ "$p" = /usr/lib/dracut/modules.d ] || host+=(--persist-path "$p"); done
boot() { bash "$here/run-guest.sh" "${guest[@]}" "${@:2}" -- bash "$here/boot-binding-boot.sh" "$1" "$module"; }

. "$here/boot-sequence.sh"
seq_init boot-binding-test
seq_step "boot 1" boot 1
seq_step "boot 2" boot 2
seq_step "host: initramfs-tools and dracut images" bash "$here/host-chroot.sh" "${host[@]}" -- bash /run/boot-binding-host.sh images "$ver"
seq_step "boot 3" boot 3 --initramfs-stage
seq_step "host: initramfs-tools image back" bash "$here/host-chroot.sh" "${host[@]}" -- bash /run/boot-binding-host.sh restore "$ver"
seq_step "boot 4" boot 4 --initramfs-stage
kept=""; [ "$keep" = 1 ] && kept="disk and logs kept in $share"
seq_end "$kept"
