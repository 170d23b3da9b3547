# Get-/Add-/Remove-/Repair-GalliumVmPciDevice against a REAL libvirtd (qemu:///system, started by tests/prepare-host.sh)
# and a simulated kernel for the host side (define does not check the host, REFERENCE §1). Test domains are diskless
# type='qemu' domains named with a random prefix and removed afterwards; a "running" VM is one started paused.

BeforeAll {
    Import-Module (Join-Path $env:GALLIUM_REPO 'tests/pester/TestHelpers.psm1') -Force
    Import-GalliumModule
    if (-not ('Gallium.PesterSupport.AnsweringHost' -as [type])) { Add-Type -Path (Join-Path $PSScriptRoot 'AnsweringHost.cs') }
    $H = [Gallium.Pci.Testing.StandardHost]
    try { $script:libvirt = [Gallium.Pci.Libvirt.LibvirtConnection]::Open('qemu:///system') }
    catch { throw "These tests need a running libvirtd on qemu:///system: run tests/libvirt/start-libvirtd.sh as root. ($_)" }
    $script:prefix = $(if ($env:GALLIUM_TEST_VM_PREFIX) { $env:GALLIUM_TEST_VM_PREFIX } else { 'gpester-' }) + [guid]::NewGuid().ToString('n').Substring(0, 8)

    function New-TestVm([string] $Suffix, [switch] $Uefi) {
        $name = "$script:prefix-$Suffix"
        $os = if ($Uefi) {
            "<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader><nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'/>"
        } else { '' }
        $xml = "<domain type='qemu'><name>$([System.Security.SecurityElement]::Escape($name))</name><memory unit='MiB'>64</memory>" +
            "<os><type arch='x86_64' machine='q35'>hvm</type>$os</os><features><acpi/></features><devices></devices></domain>"
        $script:libvirt.DefineDomain($xml) | Out-Null
        $name
    }
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
    foreach ($d in $script:libvirt.ListDomains()) {
        if ($d.Name.StartsWith($script:prefix)) {
            if ($d.State -ne 'ShutOff') { $script:libvirt.DestroyDomain($d.Name) }
            if ($d.IsPersistent) { $script:libvirt.UndefineDomain($d.Name) }
        }
    }
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
}
