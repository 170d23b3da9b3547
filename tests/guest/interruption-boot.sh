#!/usr/bin/env bash
# Issue 11 on the real kernel, run INSIDE the guest by tests/guest/interruption-test.sh: the cmdlet's own process is
# SIGKILLed right after each kernel write k of an Enable and of a Disable of the four-device group (00:04.0, 00:04.1 root
# ports + 03:00.0, 04:00.0 e1000e), and the next command must find the group whole again; a Ctrl+C (SIGINT, handled by
# pwsh's console host) mid-change must roll it back at once. Prints one "PASS name" / "FAIL name" line per check.
# Usage: interruption-boot.sh MODULE_DIR
set -uo pipefail
module=${1:?module directory}
a=0000:03:00.0 b=0000:04:00.0
config=/etc/gallium        # the module's default state paths (the guest's throwaway overlay)
failed=0

grep -q 'gallium.testguest=1' /proc/cmdline || { echo "interruption-boot: not the test guest" >&2; exit 2; }
group=$(basename "$(readlink /sys/bus/pci/devices/$a/iommu_group)")
trace=$config/pending.d/group-$group

check() {   # check NAME COMMAND...
    local name=$1; shift
    if "$@"; then echo "PASS $name"; else echo "FAIL $name"; failed=$((failed + 1)); fi
}
driver_of() { local l; l=$(readlink "/sys/bus/pci/devices/$1/driver") && basename "$l" || echo none; }
override_of() { cat "/sys/bus/pci/devices/$1/driver_override"; }
state() { echo "$a $(driver_of $a)/$(override_of $a) $b $(driver_of $b)/$(override_of $b) records=$(ls $config/pci.d 2>/dev/null | tr '\n' ' ')trace=$([ -e "$trace" ] && echo yes || echo no)"; }
on_host() {
    [ "$(driver_of $a)" = e1000e ] && [ "$(driver_of $b)" = e1000e ] && [ "$(override_of $a)" = '(null)' ] && [ "$(override_of $b)" = '(null)' ] \
        && [ ! -e "$config/pci.d/$a" ] && [ ! -e "$config/pci.d/$b" ] && [ ! -e "$trace" ]
}
on_vfio() {
    [ "$(driver_of $a)" = vfio-pci ] && [ "$(driver_of $b)" = vfio-pci ] && [ "$(override_of $a)" = vfio-pci ] && [ "$(override_of $b)" = vfio-pci ] \
        && [ -f "$config/pci.d/$a" ] && [ -f "$config/pci.d/$b" ] && [ ! -e "$trace" ] && [ -c "/dev/vfio/$group" ]
}
pwsh_run() { dotnet pwsh -NoProfile -NonInteractive -Command "Import-Module '$module'; \$ProgressPreference = 'SilentlyContinue'; $1" < /dev/null 2>&1; }

# The cmdlet, signalled from inside its own pipeline: every verbose record passes through ForEach-Object as it is written,
# so arming at the k-th "write ... > /sys/..." record and signalling at the next record lands right after write k returned.
signalled() {   # signalled VERB K SIGNAL
    pwsh_run "\$n = 0; \$armed = \$false
        $1-GalliumPciPassthrough -Address $a -Confirm:\$false -Verbose 4>&1 | ForEach-Object {
            if (\$armed) { if ('$3' -eq 'KILL') { [Diagnostics.Process]::GetCurrentProcess().Kill() } else { kill -INT \$PID; \$armed = \$false } }
            if (\"\$_\" -match '^write .* > /sys/') { \$n++; if (\$n -eq $2) { \$armed = \$true } }
        }
        'the command ran to its end'"
}

echo "interruption: group $group, start: $(state)"
check "the group starts on e1000e with nothing recorded" on_host
writes=6   # Enable and Disable of two endpoints: two overrides, two unbinds, two probes each

for k in $(seq 1 $writes); do
    out=$(signalled Enable "$k" KILL); rc=$?
    check "Enable killed (SIGKILL, exit 137) right after kernel write $k" test "$rc" -eq 137
    echo "  after the kill: $(state)"
    check "Enable killed after write $k left its unfinished-change record" test -f "$trace"
    out=$(pwsh_run "\"state=\$((Get-GalliumPciDevice -Address $a).PassthroughState)\"
        Disable-GalliumPciPassthrough -Address $a -Confirm:\$false -WarningVariable w -WarningAction SilentlyContinue; \"warning=\$w\"")
    check "after the kill at write $k, Get-GalliumPciDevice shows Interrupted" grep -q '^state=Interrupted' <<<"$out"
    check "the next command (Disable) says it repaired the interrupted Enable" grep -q 'warning=.*was interrupted; returned it to how it was before' <<<"$out"
    check "the group is whole on e1000e again, nothing recorded (kill at Enable write $k)" on_host
done

out=$(pwsh_run "Enable-GalliumPciPassthrough -Address $a -Confirm:\$false")
check "Enable (to start the Disable kills)" on_vfio
for k in $(seq 1 $writes); do
    out=$(signalled Disable "$k" KILL); rc=$?
    check "Disable killed (SIGKILL, exit 137) right after kernel write $k" test "$rc" -eq 137
    echo "  after the kill: $(state)"
    out=$(pwsh_run "\"state=\$((Get-GalliumPciDevice -Address $a).PassthroughState)\"
        Enable-GalliumPciPassthrough -Address $a -Confirm:\$false -WarningVariable w -WarningAction SilentlyContinue; \"warning=\$w\"")
    check "after the kill at Disable write $k, Get-GalliumPciDevice shows Interrupted" grep -q '^state=Interrupted' <<<"$out"
    check "the next command (Enable) says it repaired the interrupted Disable" grep -q 'warning=.*was interrupted; returned it to how it was before' <<<"$out"
    check "the group is whole on vfio-pci again, recorded (kill at Disable write $k)" on_vfio
done

# Ctrl+C: pwsh's console host turns SIGINT into a pipeline stop; the change rolls back before the command returns.
out=$(signalled Disable 3 INT); rc=$?
echo "$out" | sed 's/^/  | /'
check "a Ctrl+C (SIGINT) mid-Disable stops the command" test "$rc" -ne 0
check "... and says the change was rolled back" grep -q 'was rolled back; the group is as it began' <<<"$out"
check "... and the group is whole on vfio-pci at once, with no record left to repair" on_vfio
out=$(pwsh_run "Disable-GalliumPciPassthrough -Address $a -Confirm:\$false")
out=$(signalled Enable 4 INT); rc=$?
check "a Ctrl+C (SIGINT) mid-Enable stops the command and rolls it back" test "$rc" -ne 0
check "... the group is whole on e1000e at once" on_host
echo "interruption: end: $(state); $failed failure(s)"
exit $((failed > 0))
