#!/usr/bin/env bash
# One boot of the power-cut proof (issue 11), run INSIDE the guest with --persist-disk by tests/guest/interruption-test.sh.
#   boot 1: Enable the four-device group; right after the first record reached the disk, cut the power (sysrq 'b')
#   boot 2: before any cmdlet the group is wholly on e1000e (init's boot apply followed the unfinished change's start
#           state, not the half-written records); the next Enable repairs first, says so, then enables the whole group
#   boot 3: before any cmdlet the group is wholly on vfio-pci (complete records applied at boot)
# Usage: powercut-boot.sh BOOT MODULE_DIR
set -uo pipefail
boot=${1:?boot} module=${2:?module}
a=0000:03:00.0 b=0000:04:00.0
failed=0
grep -q 'gallium.testguest=1' /proc/cmdline || { echo "powercut-boot: not the test guest" >&2; exit 2; }
[ -n "${GALLIUM_STATE_ROOT:-}" ] || { echo "FAIL [boot $boot] guest booted with --persist-disk"; exit 1; }
config=$GALLIUM_STATE_ROOT/etc/gallium
group=$(basename "$(readlink /sys/bus/pci/devices/$a/iommu_group)")
trace=$config/pending.d/group-$group
check() { local name=$1; shift; if "$@"; then echo "PASS [boot $boot] $name"; else echo "FAIL [boot $boot] $name"; failed=$((failed + 1)); fi; }
driver_of() { local l; l=$(readlink "/sys/bus/pci/devices/$1/driver") && basename "$l" || echo none; }
override_of() { cat "/sys/bus/pci/devices/$1/driver_override"; }
echo "boot $boot: init's boot apply: $(tr '\n' ' ' < /run/gallium-boot-apply.log)"
echo "boot $boot: before any cmdlet: $a $(driver_of $a)/$(override_of $a), $b $(driver_of $b)/$(override_of $b); records: $(ls "$config/pci.d" 2>/dev/null | tr '\n' ' '); trace: $([ -e "$trace" ] && echo present || echo none)"
pwsh_run() { dotnet pwsh -NoProfile -NonInteractive -Command "Import-Module '$module'; \$ProgressPreference = 'SilentlyContinue'; $1" < /dev/null 2>&1; }

case $boot in
    1)
        check "fresh disk: nothing recorded" test ! -e "$config/pci.d/$a"
        # The narration of the write after the first record (that device's udev rule) comes right after the record was
        # written, fsynced and renamed into place: cut the power there.
        pwsh_run "Enable-GalliumPciPassthrough -Address $a -Confirm:\$false -Verbose 4>&1 | ForEach-Object {
            if (\"\$_\" -match '^write .*rules\.d/.*gallium-vfio-$a\.rules') { 'POWER-CUT now'; [IO.File]::WriteAllText('/proc/sysrq-trigger', 'b') } }"
        echo "FAIL [boot 1] the power cut did not happen"; exit 1 ;;
    2)
        check "the unfinished change's record survived the power cut" test -f "$trace"
        check "the first record is on the disk (half the group's records were written)" test -f "$config/pci.d/$a"
        check "$a is on e1000e after the boot: the half-written record was not applied" test "$(driver_of $a)" = e1000e
        check "$b is on e1000e after the boot" test "$(driver_of $b)" = e1000e
        check "no override is armed on either" test "$(override_of $a)$(override_of $b)" = '(null)(null)'
        out=$(pwsh_run "\"state=\$((Get-GalliumPciDevice -Address $a).PassthroughState)\"
            Enable-GalliumPciPassthrough -Address $a -Confirm:\$false -WarningVariable w -WarningAction SilentlyContinue; \"warning=\$w\"")
        printf '%s\n' "$out" | sed 's/^/  | /'
        check "Get-GalliumPciDevice shows the device Interrupted" grep -q '^state=Interrupted' <<<"$out"
        check "the next Enable says it repaired the interrupted Enable (before the last reboot)" grep -q 'warning=.*before the last reboot.*returned it to how it was before' <<<"$out"
        check "then the whole group is on vfio-pci" test "$(driver_of $a)$(driver_of $b)" = vfio-pcivfio-pci
        check "with both records and no unfinished change" test -f "$config/pci.d/$a" -a -f "$config/pci.d/$b" -a ! -e "$trace" ;;
    3)
        check "init applied the complete records (exit 0)" grep -qx 'exit 0' /run/gallium-boot-apply.log
        check "the whole group is on vfio-pci after the reboot, before any cmdlet" test "$(driver_of $a)$(driver_of $b)" = vfio-pcivfio-pci
        check "with the override armed on both" test "$(override_of $a)$(override_of $b)" = vfio-pcivfio-pci ;;
esac
exit $((failed > 0))
