# Get-/Add-/Remove-/Repair-GalliumVmPciDevice against a REAL libvirtd (qemu:///system, started by tests/prepare-host.sh)
# and a simulated kernel for the host side (define does not check the host, REFERENCE §1). Test domains are diskless
# type='qemu' domains named with a random prefix and removed afterwards; a "running" VM is one started paused.

BeforeAll {
    Import-Module (Join-Path $env:GALLIUM_REPO 'tests/pester/TestHelpers.psm1') -Force
    Import-GalliumModule
    if (-not ('Gallium.PesterSupport.AnsweringHost' -as [type])) { Add-Type -Path (Join-Path $PSScriptRoot 'AnsweringHost.cs') }
    $H = [Gallium.Pci.Testing.StandardHost]
    $suite = Initialize-VmSuite
    $script:libvirt = $suite.Libvirt
    $script:prefix = $suite.Prefix

    function New-TestVm([string] $Suffix, [switch] $Uefi) { New-LibvirtTestVm -Libvirt $script:libvirt -Prefix $script:prefix -Suffix $Suffix -Uefi:$Uefi }
    function Get-VmXml([string] $Name) { $script:libvirt.GetDomain($Name).Xml }
    function Invoke-WithAnswer([string] $Answer, [string] $VmName, [string] $Address) {
        $answering = [Gallium.PesterSupport.AnsweringHost]::new($Answer)
        $iss = [initialsessionstate]::CreateDefault2()
        $iss.ImportPSModule($env:GALLIUM_MODULE_PATH)
        $iss.Variables.Add([System.Management.Automation.Runspaces.SessionStateVariableEntry]::new('GalliumHostContext', $global:GalliumHostContext, ''))
        $rs = [runspacefactory]::CreateRunspace($answering, $iss)
        $rs.Open()
        try {
            $ps = [powershell]::Create()
            $ps.Runspace = $rs
            $ps.AddCommand('Remove-GalliumVmPciDevice').AddParameter('VmName', $VmName).AddParameter('Address', $Address) | Out-Null
            $ps.Invoke() | Out-Null
            [pscustomobject]@{ Prompts = $answering.Prompts; Errors = @($ps.Streams.Error) }
        } finally { $rs.Dispose() }
    }

    $kernel = New-SimulatedHost -Kind Standard
}

AfterAll {
    Remove-LibvirtTestVm -Libvirt $script:libvirt -Prefix $script:prefix
    $script:libvirt.Dispose()
    Remove-SimulatedHost
}

Describe 'Add, Remove and Disable: the product guide on a real libvirtd' {
    BeforeAll {
        $web = New-TestVm 'web1'
        $db = New-TestVm 'db1'
        Enable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false
    }

    It 'Add-GalliumVmPciDevice puts the enabled NIC in the stopped VM''s definition as managed=''no''' {
        Add-GalliumVmPciDevice -VmName $web -Address $H::FreeNic
        $xml = [xml](Get-VmXml $web)
        $hostdev = $xml.domain.devices.hostdev
        $hostdev.managed | Should -Be 'no'
        $hostdev.source.address.bus | Should -Be '0x05'
    }

    It 'Get-GalliumVmPciDevice shows the assignment, and Get-GalliumPciDevice shows the device Assigned to the VM' {
        $a = @(Get-GalliumVmPciDevice -VmName $web)
        $a.Count | Should -Be 1
        $a[0] | Should -BeOfType ([Gallium.Pci.VmPciAssignment])
        "$($a[0].Address)" | Should -Be $H::FreeNic
        "$($a[0].VmState)" | Should -Be 'ShutOff'
        $a[0].Managed | Should -BeFalse
        $d = Get-GalliumPciDevice -Address $H::FreeNic
        "$($d.PassthroughState)" | Should -Be 'Assigned'
        $d.AssignedTo | Should -Be @($web)
        @(Get-GalliumPciDevice -Address $H::FreeNic | Get-GalliumVmPciDevice).VmName | Should -Be @($web)
    }

    It 'Disable is refused with IommuGroupAssigned naming the VM, and nothing changes' {
        Disable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false -ErrorVariable errs -ErrorAction SilentlyContinue
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'IommuGroupAssigned,*'
        "$($errs[0].CategoryInfo.Category)" | Should -Be 'ResourceBusy'
        "$($errs[0])" | Should -Match ([regex]::Escape($web))
        $kernel.DriverOf($H::FreeNic) | Should -Be 'vfio-pci'
    }

    It 'Add to a second VM is refused with PciDeviceAssigned naming the first' {
        Add-GalliumVmPciDevice -VmName $db -Address $H::FreeNic -ErrorVariable errs -ErrorAction SilentlyContinue
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'PciDeviceAssigned,*'
        "$($errs[0].CategoryInfo.Category)" | Should -Be 'ResourceBusy'
        "$($errs[0])" | Should -Match ([regex]::Escape($web))
        ([xml](Get-VmXml $db)).domain.devices.hostdev | Should -BeNullOrEmpty
    }

    It 'Remove asks for confirmation: answered No, nothing is removed' {
        $r = Invoke-WithAnswer 'No' $web $H::FreeNic
        $r.Prompts.Count | Should -Be 1
        $r.Prompts[0] | Should -Match ([regex]::Escape($H::FreeNic))
        @(Get-GalliumVmPciDevice -VmName $web).Count | Should -Be 1
    }

    It 'Remove asks for confirmation: answered Yes, the device leaves the VM and is Enabled again' {
        $r = Invoke-WithAnswer 'Yes' $web $H::FreeNic
        $r.Prompts.Count | Should -Be 1
        $r.Errors | Should -BeNullOrEmpty
        @(Get-GalliumVmPciDevice -VmName $web) | Should -BeNullOrEmpty
        "$((Get-GalliumPciDevice -Address $H::FreeNic).PassthroughState)" | Should -Be 'Enabled'
    }

    It 'a removed device can be added to another VM' {
        Add-GalliumVmPciDevice -VmName $db -Address $H::FreeNic -PassThru | ForEach-Object VmName | Should -Be $db
    }

    It 'Remove of what the VM does not hold is a clear PciDeviceNotAssigned error and changes nothing' {
        $before = Get-VmXml $web
        Remove-GalliumVmPciDevice -VmName $web -Address $H::FreeNic -Force -ErrorVariable errs -ErrorAction SilentlyContinue
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'PciDeviceNotAssigned,*'
        "$($errs[0].CategoryInfo.Category)" | Should -Be 'ObjectNotFound'
        Get-VmXml $web | Should -Be $before
    }

    It 'Remove -Force -WhatIf still only reports' {
        Remove-GalliumVmPciDevice -VmName $db -Address $H::FreeNic -Force -WhatIf
        @(Get-GalliumVmPciDevice -VmName $db).Count | Should -Be 1
    }

    It 'piping a VM''s assignments into Remove removes them; then Disable is allowed' {
        Get-GalliumVmPciDevice -VmName $db | Remove-GalliumVmPciDevice -Confirm:$false
        @(Get-GalliumVmPciDevice -VmName $db) | Should -BeNullOrEmpty
        Disable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false
        $kernel.DriverOf($H::FreeNic) | Should -Be 'e1000e'
    }
}

Describe 'Add refuses what it must' {
    BeforeAll {
        $vm = New-TestVm 'refusals'
        Enable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false
    }
    AfterAll { Disable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false -ErrorAction SilentlyContinue }

    It 'a VM that is <State> is not stopped: VmNotStopped (InvalidOperation)' -TestCases @(@{ State = 'paused'; Paused = $true }, @{ State = 'running'; Paused = $false }) {
        $script:libvirt.StartDomain($vm, $Paused)
        try {
            Add-GalliumVmPciDevice -VmName $vm -Address $H::FreeNic -ErrorVariable errs -ErrorAction SilentlyContinue
            $errs[0].FullyQualifiedErrorId | Should -BeLike 'VmNotStopped,*'
            "$($errs[0].CategoryInfo.Category)" | Should -Be 'InvalidOperation'
            "$($errs[0])" | Should -Match $State
        } finally { $script:libvirt.DestroyDomain($vm) }
        ([xml](Get-VmXml $vm)).domain.devices.hostdev | Should -BeNullOrEmpty
    }

    It 'a device that is not enabled: PciDeviceNotEnabled, with the Enable command to run' {
        Add-GalliumVmPciDevice -VmName $vm -Address $H::Gpu -ErrorVariable errs -ErrorAction SilentlyContinue
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'PciDeviceNotEnabled,*'
        $errs[0].ErrorDetails.RecommendedAction | Should -Match "Enable-GalliumPciPassthrough -Address $([regex]::Escape($H::Gpu))"
    }

    It 'a VM that does not exist: VmNotFound (ObjectNotFound)' {
        Add-GalliumVmPciDevice -VmName "$prefix-nope" -Address $H::FreeNic -ErrorVariable errs -ErrorAction SilentlyContinue
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'VmNotFound,*'
        "$($errs[0].CategoryInfo.Category)" | Should -Be 'ObjectNotFound'
    }

    It 'libvirtd not reachable: LibvirtConnectionFailed (ConnectionError) naming the URI, and the command stops' {
        $uri = 'qemu:///system?socket=/nonexistent/libvirt-sock'
        $err = $null
        try { Add-GalliumVmPciDevice -VmName $vm -Address $H::FreeNic -Uri $uri } catch { $err = $_ }
        $err.FullyQualifiedErrorId | Should -BeLike 'LibvirtConnectionFailed,*'
        "$($err.CategoryInfo.Category)" | Should -Be 'ConnectionError'
        "$err" | Should -Match ([regex]::Escape($uri))
    }

    It '-WhatIf shows each hostdev it would add and changes nothing' {
        $before = Get-VmXml $vm
        $transcript = Join-Path $TestDrive 'whatif.txt'
        Start-Transcript -Path $transcript | Out-Null
        try { Add-GalliumVmPciDevice -VmName $vm -Address $H::FreeNic -WhatIf } finally { Stop-Transcript | Out-Null }
        @(Get-Content $transcript | Where-Object { $_ -match '^What if: .*hostdev 0000:05:00\.0' }).Count | Should -Be 1
        Get-VmXml $vm | Should -Be $before
    }

    It 'a VM name that is no VM is VmNotFound in Get-GalliumVmPciDevice too; a wildcard matching none is quiet' {
        Get-GalliumVmPciDevice -VmName "$prefix-nosuch" -ErrorVariable errs -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'VmNotFound,*'
        Get-GalliumVmPciDevice -VmName "$prefix-nosuch*" -ErrorVariable errs2 | Should -BeNullOrEmpty
        $errs2 | Should -BeNullOrEmpty
    }

    It 'refuses another host''s libvirt for commands that join VM definitions with this machine''s devices' -TestCases @(
        @{ Command = { Add-GalliumVmPciDevice -VmName x -Address 05:00.0 -Uri 'qemu+ssh://root@hv7.example/system' } },
        @{ Command = { Remove-GalliumVmPciDevice -VmName x -Address 05:00.0 -Force -Uri 'qemu+tls://hv7.example/system' } },
        @{ Command = { Disable-GalliumPciPassthrough -Address 05:00.0 -Confirm:$false -Uri 'qemu+ssh://hv7.example/system' } },
        @{ Command = { Get-GalliumPciDevice -Uri 'qemu+ssh://hv7.example/system' } }
    ) {
        $err = $null
        try { & $Command } catch { $err = $_ }
        $err.FullyQualifiedErrorId | Should -BeLike 'LibvirtUriNotLocal,*'
        $err.ErrorDetails.RecommendedAction | Should -Match 'Invoke-Command'
    }

    It 'works with VM names holding XML metacharacters, quotes and unicode' {
        $odd = New-TestVm "o'dd<&>""ü-名"
        Add-GalliumVmPciDevice -VmName $odd -Address $H::FreeNic
        (Get-GalliumVmPciDevice -VmName $odd).VmName | Should -Be $odd
        Remove-GalliumVmPciDevice -VmName $odd -Address $H::FreeNic -Confirm:$false
        @(Get-GalliumVmPciDevice -VmName $odd) | Should -BeNullOrEmpty
    }
}

Describe 'A GPU with its audio function, and the large-BAR MMIO window' {
    BeforeAll {
        Enable-GalliumPciPassthrough -Address $H::Gpu -Confirm:$false
        Enable-GalliumPciPassthrough -Address $H::ComputeGpu -Confirm:$false
    }
    AfterAll {
        Disable-GalliumPciPassthrough -Address $H::Gpu -Confirm:$false -ErrorAction SilentlyContinue
        Disable-GalliumPciPassthrough -Address $H::ComputeGpu -Confirm:$false -ErrorAction SilentlyContinue
    }

    It 'adds both functions of the group in one guest slot, multifunction on function 0' {
        $vm = New-TestVm 'gpu' -Uefi
        Add-GalliumVmPciDevice -VmName $vm -Address $H::Gpu
        $hostdevs = @(([xml](Get-VmXml $vm)).domain.devices.hostdev)
        $hostdevs.Count | Should -Be 2
        $guest = $hostdevs | ForEach-Object { $_.address }
        ($guest | Select-Object -ExpandProperty slot -Unique).Count | Should -Be 1
        ($guest | Select-Object -ExpandProperty bus -Unique).Count | Should -Be 1
        ($guest | Where-Object function -eq '0x0').multifunction | Should -Be 'on'
    }

    It 'piping a GPU''s two assignments into Remove -WhatIf previews the group once' {
        $vm = $script:libvirt.ListDomains() | Where-Object Name -eq "$prefix-gpu" | ForEach-Object Name
        $transcript = Join-Path $TestDrive 'whatif-remove.txt'
        Start-Transcript -Path $transcript | Out-Null
        try { Get-GalliumVmPciDevice -VmName $vm | Remove-GalliumVmPciDevice -WhatIf } finally { Stop-Transcript | Out-Null }
        @(Get-Content $transcript | Where-Object { $_ -match '^What if: .*remove hostdev' }).Count | Should -Be 2
        @(Get-GalliumVmPciDevice -VmName $vm).Count | Should -Be 2
    }

    It 'adding a 128 GiB-BAR GPU to an OVMF VM writes the window fix into its definition, and -WhatIf says why' {
        $vm = New-TestVm 'h100' -Uefi
        $transcript = Join-Path $TestDrive 'whatif-h100.txt'
        Start-Transcript -Path $transcript | Out-Null
        try { Add-GalliumVmPciDevice -VmName $vm -Address $H::ComputeGpu -WhatIf } finally { Stop-Transcript | Out-Null }
        (Get-Content $transcript -Raw) | Should -Match 'MMIO window.*128 ?Gi?B'
        Add-GalliumVmPciDevice -VmName $vm -Address $H::ComputeGpu
        $xml = Get-VmXml $vm
        $xml | Should -Match 'maxphysaddr|X-PciMmio64Mb'
        $a = Get-GalliumVmPciDevice -VmName $vm
        $a.MmioNeededSize | Should -BeGreaterOrEqual ([uint64]128GB)
        $a.MmioFixNeeded | Should -BeFalse
        Remove-GalliumVmPciDevice -VmName $vm -Address $H::ComputeGpu -Confirm:$false
        Get-VmXml $vm | Should -Not -Match 'maxphysaddr|X-PciMmio64Mb'
    }

    It 'a SeaBIOS VM gets a refusal that says why' {
        $vm = New-TestVm 'seabios'
        Add-GalliumVmPciDevice -VmName $vm -Address $H::ComputeGpu -ErrorVariable errs -ErrorAction SilentlyContinue
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'VmFirmwareNotUefi,*'
        "$($errs[0])" | Should -Match 'OVMF|UEFI'
        ([xml](Get-VmXml $vm)).domain.devices.hostdev | Should -BeNullOrEmpty
    }

    It 'Repair-GalliumVmPciDevice fixes a VM that got a large-BAR GPU by hand' {
        $vm = New-TestVm 'byhand' -Uefi
        $script:libvirt.AttachDeviceToConfig($vm, [Gallium.Pci.Libvirt.DomainXml]::BuildHostdev([Gallium.Pci.PciAddress]::Parse($H::ComputeGpu), $false, $null, $false))
        (Get-GalliumVmPciDevice -VmName $vm).MmioFixNeeded | Should -BeTrue
        Repair-GalliumVmPciDevice -VmName $vm -WhatIf
        (Get-GalliumVmPciDevice -VmName $vm).MmioFixNeeded | Should -BeTrue
        Repair-GalliumVmPciDevice -VmName $vm -Confirm:$false
        (Get-GalliumVmPciDevice -VmName $vm).MmioFixNeeded | Should -BeFalse
        $script:libvirt.DetachDeviceFromConfig($vm, [Gallium.Pci.Libvirt.DomainXml]::BuildDetach([Gallium.Pci.PciAddress]::Parse($H::ComputeGpu)))
    }

    # One plan per VM: the large-BAR fix sized for everything the VM will hold.
    It 'Remove of a small GPU from a VM that keeps a 128 GiB GPU leaves the fix in place, and FixNeeded stays False' {
        foreach ($a in $H::Gpu, $H::ComputeGpu) { Clear-LibvirtTestDevice -Libvirt $script:libvirt -Prefix $script:prefix -Address $a }
        $vm = New-TestVm 'keepfix' -Uefi
        Add-GalliumVmPciDevice -VmName $vm -Address $H::ComputeGpu
        Add-GalliumVmPciDevice -VmName $vm -Address $H::Gpu
        $fix = [Gallium.Pci.Mmio.MmioDomainXml]::FixFingerprint($script:libvirt.GetDefinition($vm))
        Remove-GalliumVmPciDevice -VmName $vm -Address $H::Gpu -Force
        [Gallium.Pci.Mmio.MmioDomainXml]::FixFingerprint($script:libvirt.GetDefinition($vm)) | Should -Be $fix
        $a = @(Get-GalliumVmPciDevice -VmName $vm)
        @($a | ForEach-Object { "$($_.Address)" }) | Should -Be @($H::ComputeGpu)
        $a[0].MmioFixNeeded | Should -BeFalse
        Remove-GalliumVmPciDevice -VmName $vm -Address $H::ComputeGpu -Force
        [Gallium.Pci.Mmio.MmioDomainXml]::HasFix($script:libvirt.GetDefinition($vm)) | Should -BeFalse
    }

    It 'eight 128 GiB GPUs for one VM on a 39-bit host: -WhatIf and the real run refuse the whole set, naming the sum and the limit; the VM is unchanged' {
        $t = [Gallium.Pci.Testing.HostTopology]::Create().PhysicalAddressBits(39).RootComplex('0000:00:00.0', 0x8086, 0x3e30, 0x060000, $null)
        foreach ($i in 1..8) {   # buses 0x41-0x48: no address another test VM holds (one device, one VM holds across hosts in one libvirtd)
            $null = $t.RootPort(('0000:00:{0:x2}.0' -f $i), 0x40 + $i, 0x8086, 0xa338).Endpoint(('0000:{0:x2}:00.0' -f (0x40 + $i)), 0x10de, 0x2330, 0x030200, 'nvidia').
                Mem32Bar(0, 16MB, $false).Mem64Bar(1, 128GB, $true).Mem64Bar(3, 32MB, $true)
        }
        $eight = $t.Build([Gallium.Pci.Testing.SimulatedHosts]::CreateTempRoot())
        $standard = $global:GalliumHostContext
        $global:GalliumHostContext = $eight.CreateContext($true)
        try {
            Get-GalliumPciDevice -Class Display | Enable-GalliumPciPassthrough -Confirm:$false
            $vm = New-TestVm 'eight' -Uefi
            $before = $script:libvirt.GetDefinition($vm)
            foreach ($whatIf in $true, $false) {
                $transcript = Join-Path $TestDrive "eight-$whatIf.txt"
                Start-Transcript -Path $transcript | Out-Null
                try { Get-GalliumPciDevice -Class Display | Add-GalliumVmPciDevice -VmName $vm -WhatIf:$whatIf -ErrorVariable errs -ErrorAction SilentlyContinue }
                finally { Stop-Transcript | Out-Null }
                $errs.Count | Should -Be 1 -Because 'one plan for the VM, refused as a whole'
                $errs[0].FullyQualifiedErrorId | Should -BeLike 'MmioWindowBeyondHostAddressBits,*'
                "$($errs[0].CategoryInfo.Category)" | Should -Be 'LimitsExceeded'
                "$($errs[0])" | Should -Match '8 devices, 1 TiB of 64-bit BARs in all'
                "$($errs[0])" | Should -Match '39 physical address bits reach \(0x8000000000, 512 GiB\)'
                "$($errs[0])" | Should -Match 'at least \d+ physical address bits'
                "$($errs[0])" | Should -Match 'the first \d \(.*\) would fit'
                @(Get-Content $transcript | Where-Object { $_ -match '^What if:' }) | Should -BeNullOrEmpty -Because '-WhatIf promises nothing the real run would not do'
                $script:libvirt.GetDefinition($vm) | Should -Be $before
            }
        } finally {
            $global:GalliumHostContext = $standard
            $eight.DeleteTree()
        }
    }
}

Describe 'Checks that cannot be sidestepped: objects from another host, VM names, URIs, the system libvirt' {
    BeforeAll {
        Enable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false
        $vm = New-TestVm 'checks'
        # Host B: another simulated host, the same NIC model in the same slot; its device object exported as an admin would.
        $hostB = [Gallium.Pci.Testing.SimulatedHosts]::Amd([Gallium.Pci.Testing.SimulatedHosts]::CreateTempRoot())
        $here = $global:GalliumHostContext
        $global:GalliumHostContext = $hostB.CreateContext($true)
        try {
            Get-GalliumPciDevice -Address $H::FreeNic | Export-Clixml (Join-Path $TestDrive 'nic-from-b.clixml')
            Get-GalliumIommuGroup | Where-Object { @($_.Devices | ForEach-Object { "$($_.Address)" }) -contains $H::FreeNic } | Export-Clixml (Join-Path $TestDrive 'group-from-b.clixml')
        } finally { $global:GalliumHostContext = $here }
    }
    AfterAll {
        $hostB.DeleteTree()
        Disable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false -ErrorAction SilentlyContinue
    }

    It 'a device exported on host B comes back as a live device that says where it was read' {
        $nic = Import-Clixml (Join-Path $TestDrive 'nic-from-b.clixml')
        $nic | Should -BeOfType ([Gallium.Pci.PciDevice])
        $nic.Host.MachineId | Should -Be $hostB.MachineId
        $nic.Host.Name | Should -Be $hostB.HostName
    }

    It 'piped into <Command> here, it is refused PciDeviceNotOnThisHost with the remedy, and nothing changes' -TestCases @(
        @{ Command = 'Add-GalliumVmPciDevice' }, @{ Command = 'Enable-GalliumPciPassthrough' }, @{ Command = 'Disable-GalliumPciPassthrough' }
    ) {
        $nic = Import-Clixml (Join-Path $TestDrive 'nic-from-b.clixml')
        $p = @{ ErrorVariable = 'errs'; ErrorAction = 'SilentlyContinue' }
        if ($Command -eq 'Add-GalliumVmPciDevice') { $p.VmName = $vm } else { $p.Confirm = $false }
        $driver = $kernel.DriverOf($H::FreeNic)
        $nic | & $Command @p
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'PciDeviceNotOnThisHost,*'
        "$($errs[0].CategoryInfo.Category)" | Should -Be 'InvalidArgument'
        "$($errs[0])" | Should -Match ([regex]::Escape($hostB.HostName))
        $errs[0].ErrorDetails.RecommendedAction | Should -Match "Invoke-Command -HostName $([regex]::Escape($hostB.HostName))"
        $errs[0].ErrorDetails.RecommendedAction | Should -Match "-Address $([regex]::Escape($H::FreeNic))"
        $kernel.DriverOf($H::FreeNic) | Should -Be $driver
        ([xml](Get-VmXml $vm)).domain.devices.hostdev | Should -BeNullOrEmpty
    }

    It 'an IOMMU group exported on host B is refused by Enable here' {
        $group = Import-Clixml (Join-Path $TestDrive 'group-from-b.clixml')
        $group | Enable-GalliumPciPassthrough -WhatIf -ErrorVariable errs -ErrorAction SilentlyContinue
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'PciDeviceNotOnThisHost,*'
    }

    It 'the same address given as -Address acts on this host''s device, as the remedy says' {
        $nic = Import-Clixml (Join-Path $TestDrive 'nic-from-b.clixml')
        Add-GalliumVmPciDevice -VmName $vm -Address $nic.Address
        @(Get-GalliumVmPciDevice -VmName $vm | ForEach-Object { "$($_.Address)" }) | Should -Be @($H::FreeNic)
        Remove-GalliumVmPciDevice -VmName $vm -Address $H::FreeNic -Force
    }

    It 'a VM name with <What> is VmNameInvalid (InvalidArgument) and never edits the VM its prefix names' -TestCases @(
        @{ What = 'a NUL'; Char = [char]0 }, @{ What = 'a tab'; Char = [char]9 }, @{ What = 'an escape'; Char = [char]27 }
    ) {
        $name = "$vm$Char" + 'x'
        foreach ($c in @{ Command = 'Add-GalliumVmPciDevice'; With = @{ Address = $H::FreeNic } }, @{ Command = 'Remove-GalliumVmPciDevice'; With = @{ Address = $H::FreeNic; Force = $true } },
            @{ Command = 'Get-GalliumVmPciDevice'; With = @{} }, @{ Command = 'Repair-GalliumVmPciDevice'; With = @{ Confirm = $false } }) {
            $with = $c.With
            $errs = $null
            & $c.Command -VmName $name @with -ErrorAction SilentlyContinue -ErrorVariable errs | Out-Null
            $errs.Count | Should -BeGreaterThan 0 -Because "$($c.Command) must refuse the name"
            $errs[0].FullyQualifiedErrorId | Should -BeLike 'VmNameInvalid,*'
            "$($errs[0].CategoryInfo.Category)" | Should -Be 'InvalidArgument'
            "$($errs[0])" | Should -Not -Match ([regex]::Escape([string]$Char))
        }
        ([xml](Get-VmXml $vm)).domain.devices.hostdev | Should -BeNullOrEmpty
    }

    It 'a -VmName wildcard that does not parse is VmNamePatternInvalid (InvalidArgument) for <Command>, and the other names still run' -TestCases @(
        @{ Command = 'Get-GalliumVmPciDevice'; With = @{} }, @{ Command = 'Repair-GalliumVmPciDevice'; With = @{ WhatIf = $true } }
    ) {
        $errs = $null
        $out = & $Command -VmName "$vm[", $vm @With -ErrorAction SilentlyContinue -ErrorVariable errs
        @($errs).Count | Should -Be 1
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'VmNamePatternInvalid,*'
        "$($errs[0].CategoryInfo.Category)" | Should -Be 'InvalidArgument'
        "$($errs[0])" | Should -Match 'VmName'
    }

    It 'a malformed -Uri is LibvirtUriInvalid, never "another host''s libvirt": <Uri>' -TestCases @(
        @{ Uri = 'qemu:///sys tem' }, @{ Uri = 'not a uri' }, @{ Uri = "qemu:///system`0" }, @{ Uri = 'system' }
    ) {
        foreach ($command in { Add-GalliumVmPciDevice -VmName $vm -Address $H::FreeNic -Uri $Uri }, { Remove-GalliumVmPciDevice -VmName $vm -Address $H::FreeNic -Force -Uri $Uri },
            { Repair-GalliumVmPciDevice -Uri $Uri -Confirm:$false }, { Get-GalliumVmPciDevice -Uri $Uri }, { Disable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false -Uri $Uri }) {
            $err = $null
            try { & $command } catch { $err = $_ }
            $err.FullyQualifiedErrorId | Should -BeLike 'LibvirtUriInvalid,*'
            "$($err.CategoryInfo.Category)" | Should -Be 'InvalidArgument'
        }
    }

    It 'Disable asks qemu:///system whatever LIBVIRT_DEFAULT_URI says: a group a system VM holds stays on vfio-pci' {
        Add-GalliumVmPciDevice -VmName $vm -Address $H::FreeNic
        $saved = $env:LIBVIRT_DEFAULT_URI
        try {
            $env:LIBVIRT_DEFAULT_URI = 'test:///default'   # a libvirt that knows none of this host's VMs
            Disable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false -ErrorVariable errs -ErrorAction SilentlyContinue
        } finally { $env:LIBVIRT_DEFAULT_URI = $saved }
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'IommuGroupAssigned,*'
        "$($errs[0])" | Should -Match ([regex]::Escape($vm))
        $kernel.DriverOf($H::FreeNic) | Should -Be 'vfio-pci'
        Remove-GalliumVmPciDevice -VmName $vm -Address $H::FreeNic -Force
    }

    It 'Disable -Uri <Uri> is refused <Id> before anything changes (only the system libvirt can say nothing holds the group)' -TestCases @(
        @{ Uri = 'test:///default'; Id = 'LibvirtUriNotSystem' }, @{ Uri = 'qemu:///session'; Id = 'LibvirtUriNotSystem' }, @{ Uri = 'qemu+ssh://hv7.example/system'; Id = 'LibvirtUriNotLocal' }
    ) {
        $err = $null
        try { Disable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false -Uri $Uri } catch { $err = $_ }
        $err.FullyQualifiedErrorId | Should -BeLike "$Id,*"
        $err.ErrorDetails.RecommendedAction | Should -Not -BeNullOrEmpty
        $kernel.DriverOf($H::FreeNic) | Should -Be 'vfio-pci'
    }

    It 'Disable -Uri qemu:///system?socket=... (the system daemon on its socket) is accepted' {
        Disable-GalliumPciPassthrough -Address $H::FreeNic -Uri 'qemu:///system?socket=/run/libvirt/libvirt-sock' -WhatIf -ErrorVariable errs
        $errs | Should -BeNullOrEmpty
    }
}

Describe 'A stop (Ctrl+C) at any point of Add or Remove finishes or rolls back the VM edit, and says which' {
    BeforeAll {
        Enable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false
        Enable-GalliumPciPassthrough -Address $H::ComputeGpu -Confirm:$false
        function Get-State([string] $Vm) {
            $xml = $script:libvirt.GetDefinition($Vm)
            (@([Gallium.Pci.Libvirt.DomainXml]::ReadPciHostdevs($xml) | ForEach-Object { "$($_.Address)" }) -join ',') + ' ' + [Gallium.Pci.Mmio.MmioDomainXml]::FixFingerprint($xml)
        }
    }
    AfterAll {
        Disable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false -ErrorAction SilentlyContinue
        Disable-GalliumPciPassthrough -Address $H::ComputeGpu -Confirm:$false -ErrorAction SilentlyContinue
    }

    It '<Command> of <Address>: stopped at each of its verbose records, the VM is as it began or as the command ends it, and the warning says which' -TestCases @(
        @{ Command = 'Add-GalliumVmPciDevice'; Address = '0000:02:00.0' }, @{ Command = 'Remove-GalliumVmPciDevice'; Address = '0000:05:00.0' }   # the H100, the free NIC
    ) {
        $setup = {
            $v = New-TestVm "stop-$([guid]::NewGuid().ToString('n').Substring(0, 6))" -Uefi
            if ($Command -like 'Remove*') { Add-GalliumVmPciDevice -VmName $v -Address $Address }
            $v
        }
        $parameters = { param($v) @{ VmName = $v; Address = $Address; Verbose = $true } + $(if ($Command -like 'Remove*') { @{ Force = $true } } else { @{} }) }
        $reference = & $setup
        $start = Get-State $reference
        $run = Complete-GatedCommand (Start-GatedCommand $Command (& $parameters $reference))
        $run.Errors | Should -BeNullOrEmpty
        $end = Get-State $reference
        $end | Should -Not -Be $start
        $points = $run.Verbose.Count
        $script:libvirt.UndefineDomain($reference)
        $undone = 0
        for ($k = 1; $k -le $points; $k++) {
            $v = & $setup
            $r = Complete-GatedCommand (Start-GatedCommand $Command (& $parameters $v) -StopAtVerbose $k)
            $r.Stopped | Should -BeTrue -Because "the stop at verbose record $k wins"
            $state = Get-State $v
            $state | Should -BeIn @($start, $end) -Because "record ${k}: whole or nothing"
            $said = $r.Warnings -join ' '
            if ($said -match 'every step already made was undone') { $state | Should -Be $start; $undone++ }
            if ($said -match 'the change is complete') { $state | Should -Be $end }
            if ($Command -like 'Remove*') { Remove-GalliumVmPciDevice -VmName $v -Address $Address -Force -ErrorAction SilentlyContinue }
            $script:libvirt.UndefineDomain($v)
        }
        $undone | Should -BeGreaterThan 0 -Because 'a stop inside the change is rolled back and said so'
    }
}
