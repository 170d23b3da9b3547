#!/usr/bin/env bash
# One boot of the reboot persistence test (issue 7.2), run INSIDE the guest by tests/guest/reboot-test.sh with
# --persist-disk (GALLIUM_STATE_ROOT=/persist/gallium; libvirt's definitions on the same disk).
# Usage: reboot-boot.sh BOOT MODULE_DIR     BOOT = 1 (enable + assign), 2 (survived? then unassign + disable), 3 (gone?)
# Prints one "PASS name" / "FAIL name" line per check; exit code 1 when any check failed.
set -uo pipefail
boot=${1:?boot number}
module=${2:?module directory}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bdf=0000:01:00.0
vm=gallium-reboot
uri=qemu:///system
dev=/sys/bus/pci/devices/$bdf
failed=0

check() {   # check NAME COMMAND...
    local name=$1; shift
    if "$@"; then echo "PASS [boot $boot] $name"; else echo "FAIL [boot $boot] $name"; failed=$((failed + 1)); fi
}
driver_of() { local l; l=$(readlink "$1/driver") && basename "$l" || echo none; }

grep -q 'gallium.testguest=1' /proc/cmdline || { echo "reboot-boot: not the test guest" >&2; exit 2; }
[ -n "${GALLIUM_STATE_ROOT:-}" ] && mountpoint -q /persist || { echo "FAIL [boot $boot] guest booted with --persist-disk"; exit 1; }
record=$GALLIUM_STATE_ROOT/etc/gallium/pci.d/$bdf
group=$(basename "$(readlink $dev/iommu_group)")

# What the kernel says before any cmdlet (or pwsh) has run in this boot: only init's boot-time apply has acted.
echo "boot $boot: init's gallium-vfio-apply: $(tr '\n' ' ' < /run/gallium-boot-apply.log)"
echo "boot $boot: before any cmdlet: $bdf driver=$(driver_of $dev) override=$(cat $dev/driver_override)"
case $boot in
    1)
        check "fresh disk: no record for $bdf yet" test ! -e "$record"
        check "$bdf starts on e1000e" test "$(driver_of $dev)" = e1000e ;;
    2)
        check "init applied the persisted records (gallium-vfio-apply --all exit 0)" grep -qx 'exit 0' /run/gallium-boot-apply.log
        check "$bdf is on vfio-pci after the reboot, before any cmdlet" test "$(driver_of $dev)" = vfio-pci
        check "its driver_override is vfio-pci again" test "$(cat $dev/driver_override)" = vfio-pci
        check "/dev/vfio/$group exists" test -c /dev/vfio/$group ;;
    3)
        check "$bdf is on e1000e after the reboot, before any cmdlet" test "$(driver_of $dev)" = e1000e
        check "its driver_override is (null)" test "$(cat $dev/driver_override)" = '(null)'
        check "no record for $bdf on the disk" test ! -e "$record" ;;
esac

if bash "$here/../libvirt/start-libvirtd.sh" >/dev/null; then
    echo "boot $boot: libvirtd started in the guest"
else
    echo "FAIL [boot $boot] libvirtd starts in the guest"; exit 1
fi
defined() { virsh -q -c $uri dominfo $vm >/dev/null 2>&1; }
# A <hostdev> whose <source> names the host function (REFERENCE §5.1). No `grep -q` in a pipe: under pipefail the
# writer's SIGPIPE would turn a match into a failure.
holds() {
    local xml
    xml=$(virsh -c $uri dumpxml --inactive $vm 2>/dev/null) || return 1
    xml=$(sed -n '/<hostdev /,/<\/hostdev>/p' <<<"$xml" | sed -n '/<source>/,/<\/source>/p')
    [[ $xml == *"<address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>"* ]]
}
holds_not() { defined && ! holds; }
case $boot in
    1)
        # A persistent, diskless TCG q35 VM; its definition lands in /etc/libvirt/qemu, i.e. on the disk.
        xml=$(mktemp)
        printf '%s\n' "<domain type='qemu'><name>$vm</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>" \
            "<os><type arch='x86_64' machine='q35'>hvm</type></os>" \
            "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>" > "$xml"
        check "VM $vm defined (persistent)" virsh -q -c $uri define "$xml" ;;
    2)
        check "VM $vm is still defined after the reboot" defined
        check "its persistent definition still holds $bdf" holds ;;
    3)
        check "VM $vm is still defined after the second reboot" defined
        check "its definition no longer holds $bdf" holds_not ;;
esac

# The cmdlet part of this boot (prints its own PASS/FAIL lines).
. "$here/watchdog.sh"   # a hang prints where it hung and fails this boot, not the whole run's timeout
watched 360 dotnet pwsh -NoProfile -NonInteractive -File "$here/Reboot-Steps.ps1" -Boot "$boot" -ModulePath "$module" \
    -VmName $vm -Address $bdf -Group "$group"
prc=$?
[ $prc -eq 0 ] || failed=$((failed + 1))
echo "boot $boot: $failed failure(s)"
exit $((failed > 0))
