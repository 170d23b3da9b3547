#!/usr/bin/env bash
# Issue 11's proofs on the real kernel in the QEMU guest:
#   1. one boot: SIGKILL of the cmdlet after each kernel write of Enable and Disable of a four-device group, each followed
#      by the next command repairing it; Ctrl+C (SIGINT) mid-change rolled back at once (interruption-boot.sh);
#   2. a power cut (sysrq 'b': immediate reset, no sync, no unmount) right after the first record of an Enable reached the
#      persistent disk, then two reboots (powercut-boot.sh): the boot applies the group's start state, never half its
#      records; the next command repairs; the next boot applies the now complete records.
# Usage: tests/guest/interruption-test.sh [--module DIR]
# Prints each check's PASS/FAIL line and last the marker build.ps1 counts (boot-sequence.sh).
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
module="$repo/out/Gallium.PciPassthrough"
[ "${1:-}" = --module ] && module="$(cd "${2:?}" && pwd)"
[ -f "$module/Gallium.PciPassthrough.psd1" ] || { echo "interruption-test: no module in $module (build it first)" >&2; exit 2; }
. "$here/boot-sequence.sh"
seq_init interruption-test
seq_step "kills and Ctrl+C (one boot)" bash "$here/run-guest.sh" --timeout 2400 -- bash "$here/interruption-boot.sh" "$module"

mkdir -p "$here/work"
disk="$(mktemp -u "$here/work/powercut-disk.XXXXXX.img")"
trap 'rm -f "$disk"' EXIT
# Boot 1 ends in the power cut: QEMU exits without the command's exit code (run-guest.sh reports 125).
seq_step --rc 125 "power cut, boot 1" bash "$here/run-guest.sh" --persist-disk "$disk" --timeout 600 -- bash "$here/powercut-boot.sh" 1 "$module"
seq_check "[boot 1] the power went right after the first record was written" \
    bash -c '[ "$1" -eq 125 ] && grep -q "^POWER-CUT" <<<"$2"' _ "$seq_rc" "$seq_out"
for boot in 2 3; do
    seq_step "power cut, boot $boot" bash "$here/run-guest.sh" --persist-disk "$disk" --timeout 600 -- bash "$here/powercut-boot.sh" "$boot" "$module"
done
seq_end
