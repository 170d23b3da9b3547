#!/usr/bin/env bash
# Issue 13's proof: at boot an enabled device is never touched by its host driver. Four boots of the test guest on one
# persistent disk, booted as a systemd host binds drivers (run-guest.sh --udev: init loads no e1000e; the early units
# sysinit.target wants, then the real systemd-udevd's coldplug, whose 80-drivers.rules modalias rule loads e1000e) and,
# once the disk has /boot/initrd.img-<kernel>, with that real initramfs-tools image's stage first (--initramfs-stage:
# its init-top scripts, its udev loading e1000e). The module runs with its real paths (/etc/gallium, /etc/udev/rules.d,
# /etc/systemd/system, /etc/initramfs-tools, /boot, ... come from the disk), so update-initramfs reads what Enable wrote.
#   boot 1 (udev): Enable 01:00.0 (group 10) and 05:00.0 (group 12, two functions)
#   boot 2 (udev): all three on vfio-pci before any cmdlet, no e1000e probe of them; the "kernel package" creates the
#                  initramfs (e1000e in it); Disable group 12 warns that it is stale, -UpdateInitramfs regenerates it
#   boot 3 (initramfs + udev): 01:00.0 on vfio-pci, never probed by e1000e; 05:00.x back on e1000e; a driverctl
#                  override round-trips through Enable/Disable; drift is refused by Add and repaired by Enable;
#                  Disable 01:00.0 -UpdateInitramfs
#   boot 4 (initramfs + udev): 01:00.0 back on e1000e; no record of any kind is left
# Usage: tests/guest/boot-binding-test.sh [--module DIR] [--keep]   (DIR default: out/Gallium.PciPassthrough)
# Prints PASS/FAIL lines, a summary, and last the marker line build.ps1 counts:
#   GALLIUM-PESTER-RESULT {"Passed":N,"Failed":N,"Skipped":0}
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
for tool in update-initramfs lsinitramfs udevadm driverctl; do
    command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 \
        || { echo "boot-binding-test: $tool is missing (tests/prepare-host.sh installs udev, initramfs-tools, driverctl)" >&2; exit 2; }
done

mkdir -p "$here/work/runs"
kdir="$(bash "$here/fetch-kernel.sh" | tail -n1)"
share="$(mktemp -d "$here/work/runs/boot-binding.XXXXXX")"
disk="$share/disk.img"                     # run-guest.sh creates it (sparse ext4) on the first boot
[ "$keep" = 1 ] || trap 'rm -rf "$share"' EXIT
# What the kernel package installs in /boot (linux-version list and mkinitramfs read them); boot 1 copies them there.
cp "$kdir"/boot/vmlinuz-* "$kdir"/boot/config-* "$share/"
paths=(/etc/gallium /etc/udev/rules.d /usr/local/libexec/gallium /etc/systemd/system /etc/initramfs-tools
       /etc/driverctl.d /boot /var/lib/initramfs-tools)
args=(--persist-disk "$disk" --udev --initramfs-stage --share "$share" --timeout 900)
for p in "${paths[@]}"; do args+=(--persist-path "$p"); done

passed=0 failed=0
start=$(date +%s)
for boot in 1 2 3 4; do
    echo "=== boot-binding-test: boot $boot ==="
    t0=$(date +%s)
    rm -f "$share/initramfs-stage.log" "$share/init-e1000e"
    out="$(bash "$here/run-guest.sh" "${args[@]}" -- bash "$here/boot-binding-boot.sh" "$boot" "$module" 2>&1)"
    rc=$?
    printf '%s\n' "$out"
    p=$(grep -c '^PASS ' <<<"$out")
    f=$(grep -c '^FAIL ' <<<"$out")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL [boot $boot] the guest run exited $rc without a failed check"
        f=1
    fi
    passed=$((passed + p)) failed=$((failed + f))
    echo "=== boot-binding-test: boot $boot: $p passed, $f failed, $(( $(date +%s) - t0 ))s ==="
done
kept=""; [ "$keep" = 1 ] && kept="; disk and logs kept in $share"
echo "boot-binding-test: $passed passed, $failed failed in $(( $(date +%s) - start ))s$kept"
echo "GALLIUM-PESTER-RESULT {\"Passed\":$passed,\"Failed\":$failed,\"Skipped\":0}"
exit $((failed > 0))
