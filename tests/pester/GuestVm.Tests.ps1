# Runs only inside the QEMU test guest (tests/guest/run-guest.sh): a VM defined in the guest's own libvirtd really uses a
# device the module enabled and assigned (issue 5.6). The guest has no libvirtd of its own: BeforeAll starts one (its /run
# and /etc are throwaway there). tests/guest/vm-hostdev-smoke.sh proves the same steps without the module.

BeforeAll {
    Import-Module (Join-Path $env:GALLIUM_REPO 'tests/pester/TestHelpers.psm1') -Force
    Import-GalliumModule

    $script:Uri = 'qemu:///system'
    $script:Address = '0000:01:00.0'
    $script:Vm = "gallium-guestvm-$PID"

    function Get-KernelDriver([string] $Address) {
        $link = "/sys/bus/pci/devices/$Address/driver"
        if (Test-Path $link) { Split-Path -Leaf (Get-Item $link).LinkTarget } else { '(none)' }
    }
    function Invoke-Virsh {
        $out = & virsh -c $script:Uri @args 2>&1
        if ($LASTEXITCODE -ne 0) { throw "virsh $($args -join ' ') failed ($LASTEXITCODE): $out" }
        $out
    }
    # The files QEMU holds open, as the kernel shows them (/proc/<pid>/fd links).
    function Get-QemuOpenFiles([string] $VmName) {
        $qemuPid = (Get-Content "/run/libvirt/qemu/$VmName.pid" -Raw).Trim()
        Get-ChildItem "/proc/$qemuPid/fd" | ForEach-Object { $_.LinkTarget }
    }

    if ((Get-Content /proc/cmdline -Raw) -notmatch 'gallium\.testguest=1') { throw 'Not the test guest: these tests change /sys.' }
    & bash (Join-Path $env:GALLIUM_REPO 'tests/libvirt/start-libvirtd.sh') | Out-Host
    if ($LASTEXITCODE -ne 0) { throw "start-libvirtd.sh failed ($LASTEXITCODE)" }
    $script:Group = Split-Path -Leaf (Get-Item "/sys/bus/pci/devices/$script:Address/iommu_group").LinkTarget

    # A diskless TCG q35 VM: nothing to boot, it only has to start (paused) with the device (REFERENCE §7.2).
    $xml = Join-Path $TestDrive 'vm.xml'
    @"
<domain type='qemu'>
  <name>$script:Vm</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>
"@ | Set-Content $xml
    Invoke-Virsh define $xml | Out-Null
}

AfterAll {
    # Leave the guest as found even when a test failed half-way (the same guest boot runs other RealKernel suites).
    & virsh -c $script:Uri destroy $script:Vm 2>&1 | Out-Null
    & virsh -c $script:Uri undefine $script:Vm 2>&1 | Out-Null
    if ((Get-KernelDriver $script:Address) -eq 'vfio-pci') {
        Disable-GalliumPciPassthrough -Address $script:Address -Confirm:$false -ErrorAction Continue
    }
}

Describe 'A VM in the guest''s libvirtd uses a device the module enabled and assigned' -Tag RealKernel {
    It 'Enable-GalliumPciPassthrough puts 01:00.0 on vfio-pci and opens its /dev/vfio group node' {
        Enable-GalliumPciPassthrough -Address $Address -Confirm:$false
        Get-KernelDriver $Address | Should -Be 'vfio-pci'
        "/dev/vfio/$Group" | Should -Exist
    }

    It 'Add-GalliumVmPciDevice writes an unmanaged hostdev for it into the stopped VM''s definition' {
        Add-GalliumVmPciDevice -VmName $Vm -Address $Address -Confirm:$false
        $inactive = [xml] ((Invoke-Virsh dumpxml --inactive $Vm) -join "`n")
        $hostdevs = @($inactive.domain.devices.hostdev)
        $hostdevs.Count | Should -Be 1
        $hostdevs[0].managed | Should -Be 'no'
        $hostdevs[0].source.address.bus | Should -Be '0x01'
        $a = Get-GalliumVmPciDevice -VmName $Vm
        "$($a.Address)" | Should -Be $Address
        "$((Get-GalliumPciDevice -Address $Address).PassthroughState)" | Should -Be 'Assigned'
    }

    It 'the VM starts (paused) and its QEMU holds the /dev/vfio group node' {
        $libvirt = [Gallium.Pci.Libvirt.LibvirtConnection]::Open($Uri)
        try { $libvirt.StartDomain($Vm, $true) } finally { $libvirt.Dispose() }
        (Invoke-Virsh domstate $Vm | Select-Object -First 1).Trim() | Should -Be 'paused'
        Get-QemuOpenFiles $Vm | Should -Contain "/dev/vfio/$Group"
        # QEMU realised a vfio-pci device for exactly this host function (QOM, since bridges are unnumbered before firmware runs).
        $q = '{"execute":"qom-get","arguments":{"path":"/machine/peripheral/hostdev0","property":"host"}}'
        (Invoke-Virsh qemu-monitor-command $Vm $q) -join '' | Should -Match ([regex]::Escape("`"return`":`"$Address`""))
    }

    It 'Remove-GalliumVmPciDevice is refused while the VM runs, and nothing changes' {
        $err = $null
        try { Remove-GalliumVmPciDevice -VmName $Vm -Address $Address -Confirm:$false -ErrorAction Stop } catch { $err = $_ }
        $err.FullyQualifiedErrorId | Should -BeLike 'VmNotStopped,*'
        @(([xml] ((Invoke-Virsh dumpxml --inactive $Vm) -join "`n")).domain.devices.hostdev).Count | Should -Be 1
    }

    It 'Disable-GalliumPciPassthrough is refused while a VM holds the group, and the device stays on vfio-pci' {
        $err = $null
        try { Disable-GalliumPciPassthrough -Address $Address -Confirm:$false -ErrorAction Stop } catch { $err = $_ }
        $err.FullyQualifiedErrorId | Should -BeLike 'IommuGroupAssigned,*'
        Get-KernelDriver $Address | Should -Be 'vfio-pci'
    }

    It 'after the VM is destroyed, Remove takes the hostdev out and Disable returns the device to e1000e' {
        Invoke-Virsh destroy $Vm | Out-Null
        (Invoke-Virsh domstate $Vm | Select-Object -First 1).Trim() | Should -Be 'shut off'
        Remove-GalliumVmPciDevice -VmName $Vm -Address $Address -Confirm:$false
        $inactive = [xml] ((Invoke-Virsh dumpxml --inactive $Vm) -join "`n")
        $inactive.domain.devices.SelectNodes('hostdev').Count | Should -Be 0
        Disable-GalliumPciPassthrough -Address $Address -Confirm:$false
        Get-KernelDriver $Address | Should -Be 'e1000e'
        "/dev/vfio/$Group" | Should -Not -Exist
    }
}
