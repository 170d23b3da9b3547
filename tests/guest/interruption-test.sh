#!/usr/bin/env bash
# Issue 11's proofs on the real kernel in the QEMU guest:
#   1. one boot: SIGKILL of the cmdlet after each kernel write of Enable and Disable of a four-device group, each followed
#      by the next command repairing it; Ctrl+C (SIGINT) mid-change rolled back at once (interruption-boot.sh);
#   2. a power cut (sysrq 'b': immediate reset, no sync, no unmount) right after the first record of an Enable reached the
#      persistent disk, then two reboots (powercut-boot.sh): the boot applies the group's start state, never half its
#      records; the next command repairs; the next boot applies the now complete records.
# Usage: tests/guest/interruption-test.sh [--module DIR]
# Prints each check's PASS/FAIL line and last the marker build.ps1 counts: GALLIUM-PESTER-RESULT {"Passed":N,...}
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
module="$repo/out/Gallium.PciPassthrough"
[ "${1:-}" = --module ] && module="$(cd "${2:?}" && pwd)"
[ -f "$module/Gallium.PciPassthrough.psd1" ] || { echo "interruption-test: no module in $module (build it first)" >&2; exit 2; }
passed=0 failed=0
count() {   # count OUTPUT RC EXPECTED_RC LABEL
    local p f
    printf '%s\n' "$1"
    p=$(grep -c '^PASS ' <<<"$1"); f=$(grep -c '^FAIL ' <<<"$1")
    if [ "$2" -ne "$3" ] && [ "$f" -eq 0 ]; then echo "FAIL [$4] the guest run exited $2 (expected $3) without a failed check"; f=1; fi
    passed=$((passed + p)) failed=$((failed + f))
}

start=$(date +%s)
echo "=== interruption-test: kills and Ctrl+C (one boot) ==="
out="$(bash "$here/run-guest.sh" --timeout 2400 -- bash "$here/interruption-boot.sh" "$module" 2>&1)"; rc=$?
count "$out" "$rc" 0 kills

mkdir -p "$here/work"
disk="$(mktemp -u "$here/work/powercut-disk.XXXXXX.img")"
trap 'rm -f "$disk"' EXIT
for boot in 1 2 3; do
    echo "=== interruption-test: power cut, boot $boot ==="
    out="$(bash "$here/run-guest.sh" --persist-disk "$disk" --timeout 600 -- bash "$here/powercut-boot.sh" "$boot" "$module" 2>&1)"; rc=$?
    # Boot 1 ends in the power cut: QEMU exits without the command's exit code (run-guest.sh reports 125).
    if [ "$boot" = 1 ]; then
        count "$out" "$rc" 125 "power cut boot 1"
        if grep -q '^POWER-CUT' <<<"$out" && [ "$rc" -eq 125 ]; then echo "PASS [boot 1] the power went right after the first record was written"; passed=$((passed + 1))
        else echo "FAIL [boot 1] the power cut did not happen where it should (exit $rc)"; failed=$((failed + 1)); fi
    else
        count "$out" "$rc" 0 "power cut boot $boot"
    fi
done
echo "interruption-test: $passed passed, $failed failed in $(( $(date +%s) - start ))s"
echo "GALLIUM-PESTER-RESULT {\"Passed\":$passed,\"Failed\":$failed,\"Skipped\":0}"
exit $((failed > 0))
