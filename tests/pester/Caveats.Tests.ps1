# Issue 14: what makes a passthrough unsafe or slow, said before it bites. Simulated hosts built for each caveat, a REAL
# libvirtd (qemu:///system) for the VMs whose <cputune>/<numatune> the NUMA warning reads (domains named g14-<random>-...,
# removed afterwards), and, tagged RealKernel / RealKernelVga, the real kernel in the QEMU guest (tests/guest/README.md).

BeforeAll {
    Import-Module (Join-Path $env:GALLIUM_REPO 'tests/pester/TestHelpers.psm1') -Force
    Import-GalliumModule
    $H = [Gallium.Pci.Testing.StandardHost]

    function New-Topology { [Gallium.Pci.Testing.SimulatedHosts]::StandardTopology([Gallium.Pci.Testing.HostOptions]::new()) }
    # The warnings a command writes, as text, in order (its output and errors are dropped).
    function Get-Warnings([scriptblock] $Command) {
        $w = @(& $Command 3>&1 2>$null | Where-Object { $_ -is [System.Management.Automation.WarningRecord] } | ForEach-Object Message)
        Write-Output -NoEnumerate $w
    }
    function Get-KernelDriver([string] $Address) {
        $link = "/sys/bus/pci/devices/$Address/driver"
        if (Test-Path $link) { Split-Path -Leaf (Get-Item $link).LinkTarget } else { '(none)' }
    }
}

Describe 'Caveats in the group view (simulated host)' {
    BeforeAll { $kernel = New-SimulatedHost -Topology ((New-Topology).ExtraCommandLine('pcie_acs_override=downstream,multifunction')) }
    AfterAll { Remove-SimulatedHost }

    It 'Get-GalliumIommuGroup''s default table has a Caveats column naming each kind once per group' {
        $text = Get-GalliumIommuGroup -Id $kernel.GroupOf($H::Gpu) | Format-Table | Out-String -Width 250
        $text | Should -Match 'Caveats'
        ([regex]::Matches($text, 'BusResetOnly')).Count | Should -Be 1   # two functions, one kind
        $text | Should -Match 'AcsOverride'
        $chipset = Get-GalliumIommuGroup -Id $kernel.GroupOf($H::Smbus) | Format-Table | Out-String -Width 250
        $chipset | Should -Match 'ChipsetFunction'
    }

    It 'Format-List details every caveat with its reason, remedy and security meaning' {
        $text = Get-GalliumIommuGroup -Id $kernel.GroupOf($H::Gpu) | Format-List | Out-String -Width 250
        $text | Should -Match '\[BusResetOnly\] 0000:01:00\.0: Its only reset is a secondary bus reset of bus 0000:01, which resets 0000:01:00\.1 too'
        $text | Should -Match 'Remedy: Give every function on bus 0000:01 to the same VM'
        $text | Should -Match '\[AcsOverride\] pcie_acs_override=downstream,multifunction is on the kernel command line'
        $text | Should -Match 'Security: Devices the kernel now shows in separate groups'
    }

    It 'caveats are typed objects: kind, address and facts can be filtered on' {
        $g = Get-GalliumIommuGroup -Id $kernel.GroupOf($H::Gpu)
        $bus = @($g.Caveats | Where-Object Kind -eq 'BusResetOnly')
        $bus.Count | Should -Be 2
        $bus[0] | Should -BeOfType ([Gallium.Pci.BusResetOnlyCaveat])
        "$($bus[0].SharedWith)" | Should -Be $H::GpuAudio
        (Get-GalliumPciDevice -Address $H::Usb).Caveats.Kind | Should -Be 'NoReset'
        (Get-GalliumPciDevice -Address $H::OnboardVga).Caveats.Kind | Should -Be 'BootVga'
        $g.Caveats | Format-Table | Out-String -Width 200 | Should -Match '\(host\)'
    }

    It 'caveats cross a process boundary as typed objects (Export-Clixml / Import-Clixml rehydrates the group)' {
        $path = Join-Path $TestDrive 'group.xml'
        Get-GalliumIommuGroup -Id $kernel.GroupOf($H::Gpu) | Export-Clixml -Path $path
        $copy = Import-Clixml -Path $path
        $copy | Should -BeOfType ([Gallium.Pci.IommuGroup])
        @($copy.Caveats | ForEach-Object { "$($_.Kind)" }) | Should -Be @('BusResetOnly', 'BusResetOnly', 'AcsOverride')
        $copy.Caveats[0] | Should -BeOfType ([Gallium.Pci.BusResetOnlyCaveat])
        "$($copy.Caveats[0].SharedWith)" | Should -Be $H::GpuAudio
        $copy.Caveats[2].Parameter | Should -Be 'pcie_acs_override=downstream,multifunction'
        $copy.Devices[0].Caveats[0] | Should -BeOfType ([Gallium.Pci.BusResetOnlyCaveat])
    }
}

Describe 'Enable warns once per caveat, also under -WhatIf, and refuses what breaks the host (simulated host)' {
    AfterEach { Remove-SimulatedHost }

    It '-WhatIf writes the group''s warnings and changes nothing; the real Enable writes the same ones' {
        $kernel = New-SimulatedHost -Topology ((New-Topology).InterruptRemapping($false))
        $before = $kernel.Snapshot()
        $whatIf = Get-Warnings { Enable-GalliumPciPassthrough -Address $H::Gpu -WhatIf }
        $whatIf.Count | Should -Be 3
        ($whatIf -match '^\[BusResetOnly\] 0000:01:00\.0: ').Count | Should -Be 1
        ($whatIf -match '^\[BusResetOnly\] 0000:01:00\.1: ').Count | Should -Be 1
        ($whatIf -match '^\[UnsafeInterrupts\] Interrupt remapping is off.*Remedy: Enable interrupt remapping').Count | Should -Be 1
        $kernel.Snapshot() | Should -Be $before

        $real = Get-Warnings { Enable-GalliumPciPassthrough -Address $H::Gpu -Confirm:$false }
        $real | Should -Be $whatIf
        $kernel.DriverOf($H::Gpu) | Should -Be 'vfio-pci'
    }

    It 'a group without caveats is enabled without a warning' {
        $kernel = New-SimulatedHost
        Get-Warnings { Enable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false } | Should -BeNullOrEmpty
        $kernel.DriverOf($H::FreeNic) | Should -Be 'vfio-pci'
    }

    It 'the chipset group is refused as PciDeviceHostCritical (-Confirm:$false does not override it), -AllowHostCritical does and warns' {
        $kernel = New-SimulatedHost
        $before = $kernel.Snapshot()
        Enable-GalliumPciPassthrough -Address $H::Smbus -Confirm:$false -ErrorVariable errs -ErrorAction SilentlyContinue
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'PciDeviceHostCritical,*'
        "$($errs[0].CategoryInfo.Category)" | Should -Be 'InvalidOperation'
        "$($errs[0])" | Should -Match 'ISA/LPC bridge'
        $kernel.Snapshot() | Should -Be $before

        $w = Get-Warnings { Enable-GalliumPciPassthrough -Address $H::Smbus -AllowHostCritical -Confirm:$false }
        ($w -match '^\[ChipsetFunction\]').Count | Should -Be 3
        $kernel.DriverOf($H::Smbus) | Should -Be 'vfio-pci'
    }

    It 'a GPU whose VRAM BAR efifb holds is refused with video=efifb:off as the recommended action' {
        $t = (New-Topology)
        $t.RootPort('0000:00:1e.0', 0x0a).Endpoint('0000:0a:00.0', 0x10de, 0x2684, 0x030000, $null).Mem32Bar(0, 16MB).Mem64Bar(1, 8GB).
            ResetMethods('flr').FirmwareFramebuffer('efifb', -1) | Out-Null
        $kernel = New-SimulatedHost -Topology $t
        Enable-GalliumPciPassthrough -Address 0000:0a:00.0 -Confirm:$false -ErrorVariable errs -ErrorAction SilentlyContinue
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'PciDeviceHostCritical,*'
        "$($errs[0])" | Should -Match 'firmware framebuffer efifb .* holds its BAR 1'
        $errs[0].ErrorDetails.RecommendedAction | Should -Match 'video=efifb:off or initcall_blacklist=sysfb_init'
        $kernel.DriverOf('0000:0a:00.0') | Should -BeNullOrEmpty

        $w = Get-Warnings { Enable-GalliumPciPassthrough -Address 0000:0a:00.0 -AllowHostCritical -WhatIf }
        $fb = @($w -match '^\[FirmwareFramebuffer\] 0000:0a:00\.0: A firmware framebuffer \(efifb\) holds BAR 1 \[mem 0x')
        $fb.Count | Should -Be 1
        $fb[0] | Should -Match 'Remedy: Boot with video=efifb:off \(or initcall_blacklist=sysfb_init\)'
    }
}

Describe 'Test-GalliumPciPassthrough: not ready, ready but unsafe, ready (simulated host)' {
    AfterEach { Remove-SimulatedHost }

    It 'says <Status> for remapping <Remapping>, allow_unsafe_interrupts <Allow>, extra command line "<Extra>"' -TestCases @(
        @{ Remapping = $true; Allow = $false; Extra = ''; Status = 'Ready'; Ready = $true }
        @{ Remapping = $false; Allow = $false; Extra = ''; Status = 'NotReady'; Ready = $false }
        @{ Remapping = $false; Allow = $true; Extra = ''; Status = 'ReadyButUnsafe'; Ready = $true }
        @{ Remapping = $true; Allow = $false; Extra = 'pcie_acs_override=downstream'; Status = 'ReadyButUnsafe'; Ready = $true }
    ) {
        $t = (New-Topology).InterruptRemapping($Remapping).AllowUnsafeInterrupts($Allow)
        if ($Extra) { $t.ExtraCommandLine($Extra) | Out-Null }
        New-SimulatedHost -Topology $t | Out-Null
        $r = Test-GalliumPciPassthrough
        "$($r.Status)" | Should -Be $Status
        $r.IsReady | Should -Be $Ready
        Test-GalliumPciPassthrough -Quiet | Should -Be $Ready
        $r.AllowUnsafeInterrupts | Should -Be $Allow
        $text = $r | Format-List | Out-String -Width 250
        $text | Should -Match "Status\s+: $Status"
        if ($Status -eq 'ReadyButUnsafe') {
            $text | Should -Match 'Risks\s+: \['
            $text | Should -Match 'Remedy: '
            $text | Should -Match 'Security: '
        }
        if ($Status -eq 'NotReady') { "$($r.Problems)" | Should -Match 'allow_unsafe_interrupts=1' }
    }
}

Describe 'Get-GalliumPciDevice -NumaNode (simulated host)' {
    BeforeAll {
        $t = (New-Topology).NumaNodes('0-3', '4-7')
        $t.RootPort('0000:00:1e.0', 0x0a).Endpoint('0000:0a:00.0', 0x8086, 0x10d3, 0x020000, 'e1000e').Mem32Bar(0, 128KB).NumaNode(1) | Out-Null
        $t.RootPort('0000:00:1e.1', 0x0b).Endpoint('0000:0b:00.0', 0x8086, 0x10d3, 0x020000, 'e1000e').Mem32Bar(0, 128KB).NumaNode(0) | Out-Null
        $kernel = New-SimulatedHost -Topology $t
    }
    AfterAll { Remove-SimulatedHost }

    It 'keeps only the functions on the given nodes; a function whose node is unknown matches none' {
        @(Get-GalliumPciDevice -NumaNode 1 | ForEach-Object { "$($_.Address)" }) | Should -Be @('0000:0a:00.0')
        @(Get-GalliumPciDevice -NumaNode 0, 1 | ForEach-Object { "$($_.Address)" }) | Should -Be @('0000:0a:00.0', '0000:0b:00.0')
        @(Get-GalliumPciDevice -NumaNode 2) | Should -BeNullOrEmpty
        @(Get-GalliumPciDevice -Class Ethernet -NumaNode 0).Count | Should -Be 1
    }

    It 'rejects a negative node at binding' {
        { Get-GalliumPciDevice -NumaNode -1 -ErrorAction Stop } | Should -Throw -ErrorId 'ParameterArgumentValidationError,*'
    }
}

Describe 'Add-GalliumVmPciDevice warns about NUMA placement against real libvirt definitions' {
    BeforeAll {
        try { $script:libvirt = [Gallium.Pci.Libvirt.LibvirtConnection]::Open('qemu:///system') }
        catch { throw "These tests need a running libvirtd on qemu:///system: run tests/libvirt/start-libvirtd.sh as root. ($_)" }
        $script:prefix = 'g14-' + [guid]::NewGuid().ToString('n').Substring(0, 8)
        function New-TestVm([string] $Suffix, [string] $Tuning, [int] $Vcpus = 2) {
            $name = "$script:prefix-$Suffix"
            $script:libvirt.DefineDomain("<domain type='qemu'><name>$name</name><memory unit='MiB'>64</memory>" +
                "<vcpu placement='static'>$Vcpus</vcpu>$Tuning<os><type arch='x86_64' machine='q35'>hvm</type></os>" +
                "<features><acpi/></features><devices></devices></domain>") | Out-Null
            $name
        }
        # Two NUMA nodes; NICs 0a, 0c on node 1 and 0b, 0d on node 0, each alone in its group, enabled (on vfio-pci) at boot.
        $t = (New-Topology).NumaNodes('0-3', '4-7')
        $t.RootPort('0000:00:1e.0', 0x0a).Endpoint('0000:0a:00.0', 0x8086, 0x10d3, 0x020000, 'e1000e').Mem32Bar(0, 128KB).
            ResetMethods('flr').NumaNode(1).OnVfio() | Out-Null
        $t.RootPort('0000:00:1e.1', 0x0b).Endpoint('0000:0b:00.0', 0x8086, 0x10d3, 0x020000, 'e1000e').Mem32Bar(0, 128KB).
            ResetMethods('flr').NumaNode(0).OnVfio() | Out-Null
        $t.RootPort('0000:00:1e.2', 0x0c).Endpoint('0000:0c:00.0', 0x8086, 0x10d3, 0x020000, 'e1000e').Mem32Bar(0, 128KB).
            ResetMethods('flr').NumaNode(1).OnVfio() | Out-Null
        $t.RootPort('0000:00:1e.3', 0x0d).Endpoint('0000:0d:00.0', 0x8086, 0x10d3, 0x020000, 'e1000e').Mem32Bar(0, 128KB).
            ResetMethods('flr').NumaNode(0).OnVfio() | Out-Null
        $kernel = New-SimulatedHost -Topology $t
        # On vfio-pci is not enough for Add: the records make them Enabled (NotPersisted devices are refused).
        Enable-GalliumPciPassthrough -Address 0000:0a:00.0, 0000:0b:00.0, 0000:0c:00.0, 0000:0d:00.0 -WarningAction SilentlyContinue
        $pinned0 = "<cputune><vcpupin vcpu='0' cpuset='0'/><vcpupin vcpu='1' cpuset='1'/></cputune><numatune><memory mode='strict' nodeset='0'/></numatune>"
    }
    AfterAll {
        foreach ($d in $script:libvirt.ListDomains()) {
            if ($d.Name.StartsWith($script:prefix)) { $script:libvirt.UndefineDomain($d.Name) }
        }
        $script:libvirt.Dispose()
        Remove-SimulatedHost
    }

    It '-WhatIf on a VM pinned to node 0 warns about the NIC on node 1, naming both, and changes nothing' {
        $vm = New-TestVm 'pinned0-whatif' $pinned0
        $w = Get-Warnings { Add-GalliumVmPciDevice -VmName $vm -Address 0000:0a:00.0 -WhatIf }
        $w.Count | Should -Be 1
        $w[0] | Should -Match "^\[NumaMismatch\] 0000:0a:00\.0: It is on NUMA node 1, but VM '$vm' is pinned to node 0"
        $w[0] | Should -Match "Remedy: Pin the VM's vCPUs to CPUs of node 1"
        ([xml]$script:libvirt.GetDomain($vm).Xml).domain.devices.hostdev | Should -BeNullOrEmpty
    }

    It 'the real Add warns the same and adds; Get-GalliumVmPciDevice shows the device node next to the VM''s nodes' {
        $vm = New-TestVm 'pinned0' $pinned0
        $w = Get-Warnings { Add-GalliumVmPciDevice -VmName $vm -Address 0000:0a:00.0 }
        ($w -match '^\[NumaMismatch\]').Count | Should -Be 1
        $a = Get-GalliumVmPciDevice -VmName $vm
        $a.DeviceNumaNode | Should -Be 1
        $a.VmNumaNodes | Should -Be @(0)
        $a.NumaMismatch | Should -BeTrue
        $text = $a | Format-Table | Out-String -Width 250
        $text | Should -Match 'Node\s+VmNodes'
        $text | Should -Match '\s1\s+0!'
    }

    It 'a NIC on the VM''s own node is added without a warning' {
        $vm = New-TestVm 'pinned0-near' $pinned0
        Get-Warnings { Add-GalliumVmPciDevice -VmName $vm -Address 0000:0b:00.0 } | Should -BeNullOrEmpty
        (Get-GalliumVmPciDevice -VmName $vm).NumaMismatch | Should -BeFalse
    }

    It 'a VM pinned to node 1 by the vcpu element''s cpuset is warned about the NIC on node 0' {
        $vm = "$script:prefix-cpuset1"
        $script:libvirt.DefineDomain("<domain type='qemu'><name>$vm</name><memory unit='MiB'>64</memory>" +
            "<vcpu placement='static' cpuset='4-7'>2</vcpu><os><type arch='x86_64' machine='q35'>hvm</type></os><devices></devices></domain>") | Out-Null
        $w = Get-Warnings { Add-GalliumVmPciDevice -VmName $vm -Address 0000:0d:00.0 -WhatIf }
        $w.Count | Should -Be 1
        $w[0] | Should -Match "^\[NumaMismatch\] 0000:0d:00\.0: It is on NUMA node 0, but VM '$vm' is pinned to node 1"
    }

    It 'an unpinned VM on the two-node host gets an information record, not a warning' {
        $vm = New-TestVm 'unpinned' ''
        $out = Add-GalliumVmPciDevice -VmName $vm -Address 0000:0c:00.0 -WhatIf -WarningVariable w -WarningAction SilentlyContinue 6>&1
        $w | Should -BeNullOrEmpty
        $info = @($out | Where-Object { $_ -is [System.Management.Automation.InformationRecord] })
        $info.Count | Should -Be 1
        $info[0].Tags | Should -Contain 'NumaUnpinned'
        $info[0].MessageData | Should -BeOfType ([Gallium.Pci.NumaUnpinnedCaveat])
        "$($info[0].MessageData)" | Should -Match "NUMA node 1 of 2, and VM '$vm' is not pinned"
    }
}

Describe 'Add-GalliumVmPciDevice writes the group''s caveats too' {
    BeforeAll {
        $script:libvirt = [Gallium.Pci.Libvirt.LibvirtConnection]::Open('qemu:///system')
        $script:prefix = 'g14-' + [guid]::NewGuid().ToString('n').Substring(0, 8)
        $kernel = New-SimulatedHost -Topology ((New-Topology).InterruptRemapping($false).AllowUnsafeInterrupts($true))
        Enable-GalliumPciPassthrough -Address $H::LegacyAudio -Confirm:$false -WarningAction SilentlyContinue
    }
    AfterAll {
        foreach ($d in $script:libvirt.ListDomains()) { if ($d.Name.StartsWith($script:prefix)) { $script:libvirt.UndefineDomain($d.Name) } }
        $script:libvirt.Dispose()
        Remove-SimulatedHost
    }

    It 'no reset for both endpoints behind the PCI bridge and the unsafe interrupts the host allows, one warning each' {
        $vm = "$script:prefix-legacy"
        $script:libvirt.DefineDomain("<domain type='qemu'><name>$vm</name><memory unit='MiB'>64</memory><os><type arch='x86_64' machine='q35'>hvm</type></os><devices></devices></domain>") | Out-Null
        $w = Get-Warnings { Add-GalliumVmPciDevice -VmName $vm -Address $H::LegacyNic }
        ($w -match '^\[NoReset\] 0000:07:0[01]\.0: It has no reset method').Count | Should -Be 2
        ($w -match '^\[UnsafeInterrupts\] Interrupt remapping is off and vfio_iommu_type1\.allow_unsafe_interrupts=Y').Count | Should -Be 1
        $w.Count | Should -Be 3
        @(Get-GalliumVmPciDevice -VmName $vm).Count | Should -Be 2
    }
}

Describe 'Caveats read from the real kernel (QEMU guest)' -Tag RealKernel {
    It 'runs on the disposable test guest, never on a real host' {
        Get-Content /proc/cmdline -Raw | Should -Match 'gallium\.testguest=1'
    }

    It 'reads reset_method as the kernel writes it: e1000e behind a root port "pm bus", pci-testdev "bus", on bus 0 "pm"' {
        (Get-Content /sys/bus/pci/devices/0000:01:00.0/reset_method -Raw).Trim() | Should -Be 'pm bus'
        (Get-GalliumPciDevice -Address 0000:01:00.0).ResetMethods | Should -Be @('pm', 'bus')
        (Get-GalliumPciDevice -Address 0000:00:05.0).ResetMethods | Should -Be @('pm')
        (Get-GalliumPciDevice -Address 0000:01:00.0).Caveats | Should -BeNullOrEmpty
        $testdev = Get-GalliumPciDevice -Address 0000:02:00.0
        $testdev.ResetMethods | Should -Be @('bus')
        $c = @($testdev.Caveats)
        $c.Count | Should -Be 1
        "$($c[0].Kind)" | Should -Be 'BusResetOnly'
        @($c[0].SharedWith).Count | Should -Be 0
        "$($c[0].Reason)" | Should -Match 'secondary bus reset of bus 0000:02'
    }

    It 'a function restricted to a bus reset (reset_method written for real) gets the caveat, and default brings its PM reset back' {
        $path = '/sys/bus/pci/devices/0000:01:00.0/reset_method'
        try {
            [System.IO.File]::WriteAllText($path, 'bus')
            (Get-Content $path -Raw).Trim() | Should -Be 'bus'
            $c = @((Get-GalliumPciDevice -Address 0000:01:00.0).Caveats)
            @($c | ForEach-Object { "$($_.Kind)" }) | Should -Be @('BusResetOnly')
            @($c[0].SharedWith).Count | Should -Be 0          # alone behind its root port
            $g = Get-GalliumIommuGroup -InputObject (Get-GalliumPciDevice -Address 0000:01:00.0)
            @($g.Caveats | ForEach-Object { "$($_.Kind)" }) | Should -Be @('BusResetOnly')
        } finally {
            [System.IO.File]::WriteAllText($path, 'default')
        }
        (Get-Content $path -Raw).Trim() | Should -Be 'pm bus'
        (Get-GalliumPciDevice -Address 0000:01:00.0).Caveats | Should -BeNullOrEmpty
    }

    It 'the kernel refuses a bus reset for a function that shares its bus (05:00.0 with 05:00.1): EINVAL, list unchanged' {
        # 05:00.0 lists "pm bus" only because its methods were probed before 05:00.1 was added; a bus reset now probes -ENOTTY.
        $path = '/sys/bus/pci/devices/0000:05:00.0/reset_method'
        (Get-Content $path -Raw).Trim() | Should -Be 'pm bus'
        (Get-Content /sys/bus/pci/devices/0000:05:00.1/reset_method -Raw).Trim() | Should -Be 'pm'
        { [System.IO.File]::WriteAllText($path, 'bus') } | Should -Throw '*Invalid argument*'
        (Get-Content $path -Raw).Trim() | Should -Be 'pm bus'
    }

    It 'the ICH9 chipset group (LPC, SATA, SMBus) is refused as host-critical and nothing changes' {
        $before = @('0000:00:1f.0', '0000:00:1f.2', '0000:00:1f.3' | ForEach-Object { Get-KernelDriver $_ })
        $g = Get-GalliumIommuGroup -InputObject (Get-GalliumPciDevice -Address 0000:00:1f.3)
        @($g.Caveats | Where-Object Kind -eq 'ChipsetFunction' | ForEach-Object { "$($_.Address)" }) | Should -Be @('0000:00:1f.0', '0000:00:1f.3')
        Enable-GalliumPciPassthrough -Address 0000:00:1f.3 -Confirm:$false -ErrorVariable errs -ErrorAction SilentlyContinue
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'PciDeviceHostCritical,*'
        "$($errs[0])" | Should -Match 'SMBus controller'
        @('0000:00:1f.0', '0000:00:1f.2', '0000:00:1f.3' | ForEach-Object { Get-KernelDriver $_ }) | Should -Be $before
    }

    It 'reads the real allow_unsafe_interrupts once vfio is loaded: N here, and remapping on means ready' {
        $wasLoaded = Test-Path /sys/module/vfio_pci
        & modprobe vfio-pci
        try {
            (Get-Content /sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts -Raw).Trim() | Should -Be 'N'
            $r = Test-GalliumPciPassthrough
            $r.InterruptRemapping | Should -BeTrue
            $r.AllowUnsafeInterrupts | Should -BeFalse
            "$($r.Status)" | Should -Be 'Ready'
        } finally {
            if (-not $wasLoaded) { & modprobe -r vfio_pci }   # leave the guest as the other suites expect it
        }
    }

    It 'sees no firmware framebuffer in the real /proc/iomem of a guest without a display' {
        Get-Content /proc/iomem -Raw | Should -Match '0000:01:00\.0'
        @([Gallium.Pci.Host.IoMem]::Read([Gallium.Pci.Host.HostContext]::FromEnvironment().Procfs).FirmwareFramebuffers) | Should -BeNullOrEmpty
        (Get-GalliumIommuGroup).Caveats | Where-Object Kind -eq 'FirmwareFramebuffer' | Should -BeNullOrEmpty
    }
}

Describe 'A firmware framebuffer on the real kernel (QEMU guest with a VGA display, run-guest.sh --vga)' -Tag RealKernelVga {
    BeforeAll { $vga = '0000:00:10.0' }

    It 'runs on the disposable test guest, never on a real host' {
        Get-Content /proc/cmdline -Raw | Should -Match 'gallium\.testguest=1'
    }

    It 'finds vesafb inside the VGA function''s BAR 0 in the real /proc/iomem, with the range and the parameter that frees it' {
        Get-Content /proc/iomem -Raw | Should -Match '(?m)^\s+fd000000-fdffffff : vesafb$'
        $d = Get-GalliumPciDevice -Address $vga
        $d.IsBootVga | Should -BeTrue
        $fb = @($d.Caveats | Where-Object Kind -eq 'FirmwareFramebuffer')
        $fb.Count | Should -Be 1
        $fb[0].Holder | Should -Be 'vesafb'
        $fb[0].BarIndex | Should -Be 0
        '0x{0:x}-0x{1:x}' -f $fb[0].Start, $fb[0].End | Should -Be '0xfd000000-0xfdffffff'
        $fb[0].KernelParameters | Should -Be @('video=vesafb:off', 'initcall_blacklist=sysfb_init')
        # The guest's stdvga has no reset method at all (no reset_method file): QEMU says "no available reset mechanism".
        '/sys/bus/pci/devices/0000:00:10.0/reset_method' | Should -Not -Exist
        @($d.Caveats | ForEach-Object { "$($_.Kind)" }) | Should -Be @('FirmwareFramebuffer', 'BootVga', 'NoReset')
    }

    It 'Enable is refused as host-critical (the framebuffer and the console), -WhatIf shows the warnings, nothing changes' {
        $before = Get-KernelDriver $vga
        $w = Get-Warnings { Enable-GalliumPciPassthrough -Address $vga -AllowHostCritical -WhatIf }
        ($w -match '^\[FirmwareFramebuffer\] 0000:00:10\.0: A firmware framebuffer \(vesafb\) holds BAR 0 \[mem 0xfd000000-0xfdffffff\]').Count | Should -Be 1
        ($w -match '^\[NoReset\]').Count | Should -Be 1
        Enable-GalliumPciPassthrough -Address $vga -Confirm:$false -ErrorVariable errs -ErrorAction SilentlyContinue
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'PciDeviceHostCritical,*'
        "$($errs[0])" | Should -Match 'firmware framebuffer vesafb'
        "$($errs[0])" | Should -Match 'framebuffer console'
        $errs[0].ErrorDetails.RecommendedAction | Should -Match 'video=vesafb:off'
        Get-KernelDriver $vga | Should -Be $before
        Get-Content /proc/iomem -Raw | Should -Match 'vesafb'
    }

    It 'with -AllowHostCritical vfio-pci takes the device and the kernel removes the framebuffer (the host loses that console)' {
        Enable-GalliumPciPassthrough -Address $vga -AllowHostCritical -Confirm:$false -WarningAction SilentlyContinue
        Get-KernelDriver $vga | Should -Be 'vfio-pci'
        # Kernel 6.1's vfio-pci removes conflicting firmware framebuffers of a VGA-class device when it binds
        # (aperture_remove_conflicting_pci_devices): vesafb is gone from /proc/iomem.
        Get-Content /proc/iomem -Raw | Should -Not -Match 'vesafb'
        (Get-GalliumPciDevice -Address $vga).Caveats | Where-Object Kind -eq 'FirmwareFramebuffer' | Should -BeNullOrEmpty
        # With the framebuffer gone, VFIO can claim the BARs: a QEMU in the guest opens the device (status prelaunch).
        $qmp = '{"execute":"qmp_capabilities"}', '{"execute":"query-status"}', '{"execute":"quit"}' -join "`n"
        $out = $qmp | & timeout 300 qemu-system-x86_64 -accel tcg -M q35 -m 128 -nographic -nodefaults -S -device "vfio-pci,host=$vga" -qmp stdio 2>&1
        ($out -join "`n") | Should -Match '"status": "prelaunch"'
        ($out -join "`n") | Should -Match 'no available reset mechanism'   # QEMU's own word for the NoReset caveat
        (& dmesg) -join "`n" | Should -Not -Match "$vga.*can't reserve"
    }
}
