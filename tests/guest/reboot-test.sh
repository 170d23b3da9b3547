#!/usr/bin/env bash
# Persistence proved by real reboots (issue 7.2): three boots of the test guest against one persistent disk.
#   boot 1: Enable 0000:01:00.0 and add it to a defined VM            (records, rule, script, VM definition -> disk)
#   boot 2: before any cmdlet, 01:00.0 is on vfio-pci (init ran gallium-vfio-apply --all); the VM still holds it and
#           starts with it; then Remove it from the VM and Disable it
#   boot 3: before any cmdlet, 01:00.0 is back on e1000e; the VM is still defined, without the device
# Usage: tests/guest/reboot-test.sh [--module DIR] [--keep-disk]     (DIR default: out/Gallium.PciPassthrough)
# Prints each check's PASS/FAIL line, a summary and the marker line build.ps1 counts (boot-sequence.sh); exit code 1
# when any check failed (a boot that fails without a FAIL line counts as one failure).
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
module="$repo/out/Gallium.PciPassthrough"
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --module) module="$(cd "${2:?}" && pwd)"; shift ;;
        --keep-disk) keep=1 ;;
        *) echo "reboot-test: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ -f "$module/Gallium.PciPassthrough.psd1" ] || { echo "reboot-test: no module in $module (build it first)" >&2; exit 2; }

mkdir -p "$here/work"
disk="$(mktemp -u "$here/work/reboot-disk.XXXXXX.img")"   # run-guest.sh creates it (sparse ext4) on the first boot
[ "$keep" = 1 ] || trap 'rm -f "$disk"' EXIT
. "$here/boot-sequence.sh"
seq_init reboot-test
for boot in 1 2 3; do
    seq_step "boot $boot" bash "$here/run-guest.sh" --persist-disk "$disk" --timeout 600 -- bash "$here/reboot-boot.sh" "$boot" "$module"
done
kept=""; [ "$keep" = 1 ] && kept="disk kept: $disk"
seq_end "$kept"
