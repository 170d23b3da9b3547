#!/usr/bin/env bash
# Issue 11 on the real kernel, run INSIDE the guest by tests/guest/interruption-test.sh: the cmdlet's own process is
# SIGKILLed right after each kernel write k of an Enable and of a Disable of the four-device group (00:04.0, 00:04.1 root
# ports + 03:00.0, 04:00.0 e1000e), and the next command must find the group whole again; a Ctrl+C (SIGINT, handled by
# pwsh's console host) mid-change must roll it back at once. Each pwsh process (Interruption-Steps.ps1) first checks
# and repairs what the previous one left, then runs the next change and is signalled in it.
# Usage: interruption-boot.sh MODULE_DIR
set -uo pipefail
module=${1:?module directory}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
grep -q 'gallium.testguest=1' /proc/cmdline || { echo "interruption-boot: not the test guest" >&2; exit 2; }
failed=0
# Disable refuses while it cannot ask libvirt which VMs hold the group (a device held by a VM must not be taken back),
# so the guest runs its own libvirtd, as a hypervisor does.
if bash "$here/../libvirt/start-libvirtd.sh" >/dev/null; then echo "libvirtd started in the guest"; else echo "FAIL libvirtd starts in the guest"; exit 1; fi
writes=6   # Enable and Disable of two endpoints: two overrides, two unbinds, two probes each

step() {   # step EXPECTED_EXIT ARGS... ; prints the process's check lines, counts a wrong exit code as a failure
    local want=$1; shift
    local out rc
    out=$(dotnet pwsh -NoProfile -NonInteractive -File "$here/Interruption-Steps.ps1" -ModulePath "$module" "$@" < /dev/null 2>&1); rc=$?
    printf '%s\n' "$out"
    LAST=$out
    case $want in
        any) ;;
        # A Ctrl+C stops the script's pipeline: its last line never prints (pwsh -File may still exit 0 after a stop).
        stopped) if grep -q '^the command ran to its end' <<<"$out"; then echo "FAIL the command should have been stopped (it ran to its end; exit $rc)"; failed=$((failed + 1)); else echo "PASS stopped before its end (exit $rc)"; fi ;;
        *) if [ "$rc" -ne "$want" ]; then echo "FAIL exit $rc, expected $want"; failed=$((failed + 1)); else echo "PASS exit $rc"; fi ;;
    esac
    failed=$((failed + $(grep -c '^FAIL ' <<<"$out")))
}

echo "--- Enable killed after each kernel write; the next command (Disable) repairs"
step 137 -Expect Host -Command Enable -AfterWrite 1 -Label '[start] '
for k in $(seq 2 $writes); do
    step 137 -ExpectInterrupted -Repair Disable -Expect Host -Command Enable -AfterWrite "$k" -Label "[Enable killed after write $((k - 1))] "
done
echo "--- Disable killed after each kernel write; the next command (Enable) repairs"
step 0 -ExpectInterrupted -Repair Disable -Expect Host -Label "[Enable killed after write $writes] "
step 137 -Repair Enable -Expect Vfio -Command Disable -AfterWrite 1 -Label '[enabled] '
for k in $(seq 2 $writes); do
    step 137 -ExpectInterrupted -Repair Enable -Expect Vfio -Command Disable -AfterWrite "$k" -Label "[Disable killed after write $((k - 1))] "
done
echo "--- Ctrl+C (SIGINT) mid-change: rolled back before the command returns"
step stopped -ExpectInterrupted -Repair Enable -Expect Vfio -Command Disable -AfterWrite 3 -Signal INT -Label "[Disable killed after write $writes] "
if grep -q 'was rolled back; the group is as it began' <<<"$LAST"; then echo "PASS a Ctrl+C mid-Disable said the change was rolled back"; else echo "FAIL a Ctrl+C mid-Disable said the change was rolled back"; failed=$((failed + 1)); fi
step 0 -Expect Vfio -Label '[after the Ctrl+C of Disable, no repair needed] '
step stopped -Repair Disable -Expect Host -Command Enable -AfterWrite 4 -Signal INT -Label '[disabled again] '
if grep -q 'was rolled back; the group is as it began' <<<"$LAST"; then echo "PASS a Ctrl+C mid-Enable said the change was rolled back"; else echo "FAIL a Ctrl+C mid-Enable said the change was rolled back"; failed=$((failed + 1)); fi
step 0 -Expect Host -Label '[after the Ctrl+C of Enable, no repair needed] '
echo "interruption-boot: $failed failure(s)"
exit $((failed > 0))
