#!/usr/bin/env bash
# Inside the test guest only: a VM started by the guest's own libvirtd really opens a passed-through device (issue 5.6).
# No module involved: moves 0000:01:00.0 to vfio-pci by hand (REFERENCE §4.4), defines a diskless type='qemu' q35 domain
# holding it as a managed='no' <hostdev> (REFERENCE §5.1), starts it paused and checks that its QEMU holds
# /dev/vfio/<group>; then destroys and undefines the domain and returns the device to e1000e.
# Usage: tests/guest/run-guest.sh -- bash tests/guest/vm-hostdev-smoke.sh      (prints one PASS/FAIL line per check)
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bdf=0000:01:00.0
vm=gallium-smoke-$$
uri=qemu:///system
dev=/sys/bus/pci/devices/$bdf
failed=0

grep -q 'gallium.testguest=1' /proc/cmdline || { echo "vm-hostdev-smoke: not the test guest; refusing to touch /sys" >&2; exit 2; }
check() {   # check NAME COMMAND...: one line per check
    local name=$1; shift
    if "$@"; then echo "PASS $name"; else echo "FAIL $name"; failed=$((failed + 1)); fi
}
driver_of() { basename "$(readlink "$1/driver" 2>/dev/null)" 2>/dev/null || echo none; }

t0=$(date +%s.%N)
bash "$here/../libvirt/start-libvirtd.sh" || { echo "FAIL libvirtd starts in the guest"; exit 1; }
echo "libvirtd up after $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $t0 }")s"

group=$(basename "$(readlink $dev/iommu_group)")
modprobe vfio-pci
echo vfio-pci > $dev/driver_override
[ -e $dev/driver ] && echo $bdf > $dev/driver/unbind
echo $bdf > /sys/bus/pci/drivers_probe
check "01:00.0 on vfio-pci" test "$(driver_of $dev)" = vfio-pci
check "/dev/vfio/$group exists" test -c /dev/vfio/$group

xml=$(mktemp)
cat > "$xml" <<XML
<domain type='qemu'>
  <name>$vm</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <hostdev mode='subsystem' type='pci' managed='no'>
      <source><address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></source>
    </hostdev>
  </devices>
</domain>
XML
virsh -c $uri define "$xml" >/dev/null
t1=$(date +%s.%N)
virsh -c $uri start --paused $vm
echo "start --paused took $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $t1 }")s"
check "domain state is paused" test "$(virsh -c $uri domstate $vm 2>/dev/null)" = paused
pid=$(cat /run/libvirt/qemu/$vm.pid 2>/dev/null)
echo "qemu pid ${pid:-none}; its /dev/vfio descriptors:"
[ -n "$pid" ] && ls -l /proc/$pid/fd 2>/dev/null | grep /dev/vfio
check "qemu holds /dev/vfio/$group" bash -c "ls -l /proc/${pid:-0}/fd 2>/dev/null | grep -q ' -> /dev/vfio/$group\$'"
# Before firmware runs, bridges have no bus numbers (HMP "info pci" shows bus 0 only): ask QOM for the device instead.
qom() { virsh -c $uri qemu-monitor-command $vm "{\"execute\":\"qom-get\",\"arguments\":{\"path\":\"/machine/peripheral/hostdev0\",\"property\":\"$1\"}}"; }
echo "inner VM's hostdev0: $(qom type) host=$(qom host)"
check "the inner VM has a vfio-pci device for $bdf" bash -c "[[ '$(qom type)' == *'\"vfio-pci\"'* && '$(qom host)' == *'\"$bdf\"'* ]]"

virsh -c $uri destroy $vm >/dev/null
virsh -c $uri undefine $vm >/dev/null
echo > $dev/driver_override
echo $bdf > $dev/driver/unbind
echo $bdf > /sys/bus/pci/drivers_probe
check "01:00.0 back on e1000e" test "$(driver_of $dev)" = e1000e
[ $failed -eq 0 ] && echo "vm-hostdev-smoke: all checks passed" || echo "vm-hostdev-smoke: $failed check(s) failed"
exit $((failed > 0))
