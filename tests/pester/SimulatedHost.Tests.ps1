# New-GalliumSimulatedHost (issue 15): the test kit users' own Pester suites get with the module. Each preset is the host it
# names, it becomes the host of the caller's scope only, VM commands go to libvirt's test driver (never to this machine's
# qemu:///system), and what one command changes the next one sees.

BeforeAll {
    Import-Module (Join-Path $env:GALLIUM_REPO 'tests/pester/TestHelpers.psm1') -Force
    Import-GalliumModule
    . (Join-Path $env:GALLIUM_REPO 'tests/package/CleanSession.ps1')
    $G = [Gallium.Pci.Testing.GpuServerHost]
    $S = [Gallium.Pci.Testing.StandardHost]
    function Get-SystemVmNames {
        $c = [Gallium.Pci.Libvirt.LibvirtConnection]::Open('qemu:///system', $true)
        try { @($c.ListDomains().Name | Sort-Object) } finally { $c.Dispose() }
    }
}

Describe 'New-GalliumSimulatedHost' {
    AfterEach {
        if ($sim) { $sim.Dispose() }
        Remove-Variable -Name GalliumHostContext -ErrorAction Ignore
    }

    It 'is loaded only when used: Import-Module and a read of the real host do not load the simulated kernel' {
        $probe = @'
Import-Module $env:PROBE_MODULE
Get-GalliumPciDevice -WarningAction SilentlyContinue | Out-Null
"BEFORE=$([bool]([AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { $_.GetName().Name -eq 'Gallium.Pci.Testing' }))"
$h = New-GalliumSimulatedHost
"AFTER=$([bool]([AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { $_.GetName().Name -eq 'Gallium.Pci.Testing' }))"
$h.Dispose()
'@
        $work = Join-Path $TestDrive 'probe'
        New-Item -ItemType Directory -Path "$work/home" -Force | Out-Null
        $env:PROBE_MODULE = $env:GALLIUM_MODULE_PATH
        try { $out = Invoke-CleanPwsh -HomeDirectory "$work/home" -WorkingDirectory $work -Command $probe }
        finally { Remove-Item env:PROBE_MODULE }
        $out | Should -Contain 'BEFORE=False'
        $out | Should -Contain 'AFTER=True'
    }

    It 'builds the GPU server: two H100s on the host, one enabled and free, one held by train-01 that needs the MMIO fix' {
        $sim = New-GalliumSimulatedHost -Preset GpuServer
        $sim.Preset | Should -Be 'GpuServer'
        $state = @{}
        Get-GalliumPciDevice -Class 'Display' | ForEach-Object { $state["$($_.Address)"] = "$($_.PassthroughState)" }
        $state[$G::Gpu0] | Should -Be 'Host'
        $state[$G::Gpu1] | Should -Be 'Host'
        $state[$G::Gpu2] | Should -Be 'Enabled'
        $state[$G::Gpu3] | Should -Be 'Assigned'
        $held = @(Get-GalliumVmPciDevice)
        $held.VmName | Should -Be @($G::TrainingVm)
        $held[0].MmioFixNeeded | Should -BeTrue
        (Test-GalliumPciPassthrough).IsReady | Should -BeTrue
    }

    It 'builds the workstation (IOMMU on, nothing enabled, VMs win11 and web1) and the IOMMU-off host' {
        $sim = New-GalliumSimulatedHost
        $sim.Preset | Should -Be 'Workstation'
        (Test-GalliumPciPassthrough).IommuEnabled | Should -BeTrue
        @(Get-GalliumPciDevice -PassthroughState Enabled, Assigned) | Should -BeNullOrEmpty
        $sim.VmNames | Should -Be @('web1', 'win11')
        $sim.Dispose()

        $sim = New-GalliumSimulatedHost -Preset IommuOff
        "$((Test-GalliumPciPassthrough).IommuProblem)" | Should -Be 'DisabledOnKernelCommandLine'
        { Enable-GalliumPciPassthrough -Address $sim.Functions.Gpu -Confirm:$false } | Should -Throw -ErrorId 'IommuNotEnabled*'
        $sim.DriverOf($sim.Functions.Gpu) | Should -Be 'nvidia'
    }

    It 'is the host of the caller''s scope only: a script block''s host is gone when the block ends' {
        $outer = Get-Variable -Name GalliumHostContext -ValueOnly -ErrorAction Ignore
        $inner = & {
            $h = New-GalliumSimulatedHost -Preset GpuServer
            [pscustomobject]@{ Host = $h; Devices = @(Get-GalliumPciDevice).Count; Context = $GalliumHostContext }
        }
        try {
            $inner.Devices | Should -Be $inner.Host.Kernel.DeviceAddresses.Count
            $inner.Context | Should -Be $inner.Host.Context
            Get-Variable -Name GalliumHostContext -ValueOnly -ErrorAction Ignore | Should -Be $outer
        } finally { $inner.Host.Dispose() }
    }

    It 'keeps what a runbook changes from one command to the next, in its own libvirt and never in qemu:///system' {
        $before = Get-SystemVmNames
        $sim = New-GalliumSimulatedHost -Preset GpuServer
        Enable-GalliumPciPassthrough -Address $G::Gpu1 -Confirm:$false
        Add-GalliumVmPciDevice -VmName $G::SpareVm -Address $G::Gpu1 -Confirm:$false
        $a = Get-GalliumVmPciDevice -VmName $G::SpareVm
        "$($a.Address)" | Should -Be $G::Gpu1
        $a.MmioFixNeeded | Should -BeFalse -Because 'Add sized the window, and the definition kept the fix through the test driver'
        "$((Get-GalliumPciDevice -Address $G::Gpu1).PassthroughState)" | Should -Be 'Assigned'
        Repair-GalliumVmPciDevice -VmName $G::TrainingVm -Confirm:$false
        (Get-GalliumVmPciDevice -VmName $G::TrainingVm).MmioFixNeeded | Should -BeFalse
        Remove-GalliumVmPciDevice -VmName $G::SpareVm -Address $G::Gpu1 -Force
        Get-GalliumVmPciDevice -VmName $G::SpareVm | Should -BeNullOrEmpty
        Get-SystemVmNames | Should -Be $before
        $sim.LibvirtUri | Should -BeLike 'test:///*'
    }

    It 'does not see this machine''s VMs: a VM in qemu:///system holding the same address leaves the simulated GPU as it is' {
        $name = 'g15-' + [guid]::NewGuid().ToString('n').Substring(0, 8)
        $system = [Gallium.Pci.Libvirt.LibvirtConnection]::Open('qemu:///system')
        try {
            $system.DefineDomain("<domain type='qemu'><name>$name</name><memory unit='MiB'>64</memory><os><type arch='x86_64' machine='q35'>hvm</type></os><devices>" +
                "<hostdev mode='subsystem' type='pci' managed='no'><source><address domain='0x0000' bus='0x$($G::Gpu2.Substring(5, 2))' slot='0x00' function='0x0'/></source></hostdev></devices></domain>") | Out-Null
            $sim = New-GalliumSimulatedHost -Preset GpuServer
            "$((Get-GalliumPciDevice -Address $G::Gpu2).PassthroughState)" | Should -Be 'Enabled'
            @(Get-GalliumVmPciDevice).VmName | Should -Not -Contain $name
        } finally {
            $system.UndefineDomain($name)
            $system.Dispose()
        }
    }

    It 'Disable asks the simulated host''s own libvirt which VMs hold a group: Gpu3, held by train-01 there, stays enabled' {
        $sim = New-GalliumSimulatedHost -Preset GpuServer
        { Disable-GalliumPciPassthrough -Address $G::Gpu3 -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'IommuGroupAssigned*'
        $sim.DriverOf($G::Gpu3) | Should -Be 'vfio-pci'
        Disable-GalliumPciPassthrough -Address $G::Gpu2 -Confirm:$false
        $sim.DriverOf($G::Gpu2) | Should -Be 'nvidia'
    }

    It '-Unprivileged: reads work, changes are refused with RootRequired and nothing changes' {
        $sim = New-GalliumSimulatedHost -Preset GpuServer -Unprivileged
        $sim.IsRoot | Should -BeFalse
        @(Get-GalliumPciDevice).Count | Should -BeGreaterThan 0
        { Enable-GalliumPciPassthrough -Address $G::Gpu0 -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'RootRequired*'
        $sim.DriverOf($G::Gpu0) | Should -Be 'nvidia'
    }

    It '-VmName defines more stopped UEFI VMs; -Path builds the host where asked' {
        $path = Join-Path ([IO.Path]::GetTempPath()) ('gallium-sim-path-' + [guid]::NewGuid().ToString('n').Substring(0, 8))
        $sim = New-GalliumSimulatedHost -Path $path -VmName 'db1', 'db2'
        $sim.RootDirectory | Should -Be $path
        $sim.VmNames | Should -Be @('db1', 'db2', 'web1', 'win11')
        Add-GalliumVmPciDevice -VmName db1 -Address $S::FreeNic -Confirm:$false -ErrorAction SilentlyContinue -ErrorVariable e
        "$($e[0].FullyQualifiedErrorId)" | Should -BeLike 'PciDeviceNotEnabled,*' -Because 'nothing is enabled on the workstation'
        $sim.Dispose()
        Test-Path $path | Should -BeFalse
    }

    It '-LibvirtUri test:///path: a test-driver file of your own, held open so that changes persist, its running VM refused' {
        $node = Join-Path $TestDrive 'node.xml'
        Set-Content -LiteralPath $node -Value "<node><domain type='test'><name>running-vm</name><memory>1048576</memory><os><type>hvm</type></os></domain></node>"
        $sim = New-GalliumSimulatedHost -LibvirtUri "test://$node"
        $sim.VmNames | Should -Be @('running-vm')
        Enable-GalliumPciPassthrough -Address $S::FreeNic -Confirm:$false
        Add-GalliumVmPciDevice -VmName running-vm -Address $S::FreeNic -Confirm:$false -ErrorAction SilentlyContinue -ErrorVariable e
        "$($e[0].FullyQualifiedErrorId)" | Should -BeLike 'VmNotStopped,*'
    }

    It '-NoHostContext: two hosts side by side, each command pointed at one with the variable, neither sees the other' {
        $sim = New-GalliumSimulatedHost -Preset GpuServer -NoHostContext
        $other = New-GalliumSimulatedHost -Preset Workstation -NoHostContext
        try {
            Get-Variable -Name GalliumHostContext -ErrorAction Ignore | Should -BeNullOrEmpty
            $GalliumHostContext = $other.Context
            Enable-GalliumPciPassthrough -Address $S::FreeNic -Confirm:$false
            $other.DriverOf($S::FreeNic) | Should -Be 'vfio-pci'
            $GalliumHostContext = $sim.Context
            @(Get-GalliumVmPciDevice).VmName | Should -Be @($G::TrainingVm)
        } finally { $other.Dispose() }
    }

    It 'lists what it made in its own view: preset, folder, libvirt, the VMs and the functions by role' {
        $sim = New-GalliumSimulatedHost -Preset GpuServer
        $text = $sim | Out-String -Width 80
        $text | Should -Match 'GpuServer'
        $text | Should -Match ([regex]::Escape($sim.LibvirtUri.Substring(0, 20)))
        $text | Should -Match 'train-01'
        $text | Should -Match "Gpu3\s+$([regex]::Escape($G::Gpu3))"
        foreach ($line in $text -split "`n") { $line.TrimEnd().Length | Should -BeLessOrEqual 80 }
        # The workstation's roles are longer (ComputeGpuRootPort): the addresses still line up in one column.
        $other = New-GalliumSimulatedHost -NoHostContext
        try {
            $rows = @(($other | Out-String -Width 80) -split "`n" | Where-Object { $_ -match '[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]\s*$' })
            $rows.Count | Should -Be $other.Functions.Count
            @($rows | ForEach-Object { $_.TrimEnd().Length } | Sort-Object -Unique).Count | Should -Be 1
        } finally { $other.Dispose() }
    }
}
