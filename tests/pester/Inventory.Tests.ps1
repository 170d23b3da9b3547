# Get-GalliumPciDevice, Get-GalliumIommuGroup and Test-GalliumPciPassthrough against simulated kernels
# (src/Gallium.Pci.Testing; addresses in [Gallium.Pci.Testing.StandardHost]) and, read-only, this machine's real /sys.

BeforeAll {
    Import-Module (Join-Path $env:GALLIUM_REPO 'tests/pester/TestHelpers.psm1') -Force
    Import-GalliumModule
    $H = [Gallium.Pci.Testing.StandardHost]
}

Describe 'Get-GalliumPciDevice on a simulated host' {
    BeforeAll { $kernel = New-SimulatedHost -Kind Standard }
    AfterAll { Remove-SimulatedHost }

    It 'lists every function as a typed PciDevice, sorted by address' {
        $all = @(Get-GalliumPciDevice)
        $all.Count | Should -Be $kernel.DeviceAddresses.Count
        $all | ForEach-Object { $_ | Should -BeOfType ([Gallium.Pci.PciDevice]) }
        $text = $all | ForEach-Object { "$($_.Address)" }
        $text | Should -Be ($text | Sort-Object)
    }

    It 'names devices from pci.ids as lspci does and reads drivers, groups and BARs' {
        $gpu = Get-GalliumPciDevice -Address $H::Gpu
        $gpu.VendorName | Should -Be 'NVIDIA Corporation'
        $gpu.DeviceName | Should -Match 'AD102'
        $gpu.ClassName | Should -Be 'VGA compatible controller'
        $gpu.Driver | Should -Be 'nvidia'
        $gpu.PassthroughState | Should -Be 'Host'
        $gpu.IommuGroup | Should -Be $kernel.GroupOf($H::Gpu)
        ($gpu.Bars | Where-Object Is64BitPrefetchable | Measure-Object -Sum Size).Sum | Should -Be ([uint64](32GB + 32MB))
        $gpu.Bar64Size | Should -Be ([uint64](32GB + 32MB))
        ($gpu.Bars | Where-Object IsIo).Count | Should -Be 1
    }

    It 'shows SR-IOV links both ways' {
        $pf = Get-GalliumPciDevice -Address $H::SriovPf
        @($pf.VirtualFunctions | ForEach-Object ToString) | Should -Be @($H::SriovVf0, $H::SriovVf1, $H::SriovVf2, $H::SriovVf3)
        "$((Get-GalliumPciDevice -Address $H::SriovVf2).PhysicalFunction)" | Should -Be $H::SriovPf
    }

    It 'accepts the short form and wildcards, matched on the full and the short form' {
        "$((Get-GalliumPciDevice -Address '01:00.1').Address)" | Should -Be $H::GpuAudio
        @(Get-GalliumPciDevice -Address '01:00.*').Count | Should -Be 2
        @(Get-GalliumPciDevice -Address '0000:03:02.*').Count | Should -Be 4
    }

    It 'filters by -IommuGroup, -Class (name, prefix or hex), -Driver and -PassthroughState' {
        $group = $kernel.GroupOf($H::Gpu)
        @(Get-GalliumPciDevice -IommuGroup $group | ForEach-Object { "$($_.Address)" }) | Should -Contain $H::GpuAudio
        $display = @(Get-GalliumPciDevice -Class Display | ForEach-Object { "$($_.Address)" })
        $display | Should -Contain $H::Gpu
        $display | Should -Contain $H::OnboardVga
        $display | Should -Contain $H::ComputeGpu
        $display | Should -Not -Contain $H::GpuAudio
        @(Get-GalliumPciDevice -Class '0x0300' | ForEach-Object { "$($_.Address)" }) | Should -Not -Contain $H::ComputeGpu
        @(Get-GalliumPciDevice -Driver 'e1000*').Count | Should -Be 2
        @(Get-GalliumPciDevice -PassthroughState Unbound | ForEach-Object { "$($_.Address)" }) | Should -Contain $H::UnboundDevice
    }

    It 'reports a literal address that does not exist as PciDeviceNotFound (ObjectNotFound) and goes on' {
        $out = Get-GalliumPciDevice -Address '0000:7f:00.0', $H::FreeNic -ErrorVariable errs -ErrorAction SilentlyContinue
        "$($out.Address)" | Should -Be $H::FreeNic
        $errs.Count | Should -Be 1
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'PciDeviceNotFound,*'
        "$($errs[0].CategoryInfo.Category)" | Should -Be 'ObjectNotFound'
        $errs[0].TargetObject | Should -Be '0000:7f:00.0'
    }

    It 'rejects a malformed address, or one that tries to be a path, as PciAddressInvalid (InvalidArgument)' -TestCases @(
        @{ Text = '../../etc' }, @{ Text = '0000:01:00.8' }, @{ Text = '1:2:3:4' }, @{ Text = '0000:01:20.0' }, @{ Text = 'zz:00.0' }
    ) {
        Get-GalliumPciDevice -Address $Text -ErrorVariable errs -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'PciAddressInvalid,*'
        "$($errs[0].CategoryInfo.Category)" | Should -Be 'InvalidArgument'
        $errs[0].TargetObject | Should -Be $Text
    }

    It 'reports a wildcard that does not parse as <Id> (InvalidArgument), non-terminating, and goes on' -TestCases @(
        @{ Parameter = 'Driver'; Value = '['; Id = 'DriverPatternInvalid' }
        @{ Parameter = 'Class'; Value = '['; Id = 'ClassPatternInvalid' }
        @{ Parameter = 'Address'; Value = '0000:0[1:00.0'; Id = 'AddressPatternInvalid' }
    ) {
        param($Parameter, $Value, $Id)
        $errors = $null
        $splat = @{ $Parameter = $Value }
        $out = @(Get-GalliumPciDevice @splat -ErrorVariable errors -ErrorAction SilentlyContinue)
        $out.Count | Should -Be 0
        $errors.Count | Should -Be 1
        $errors[0].FullyQualifiedErrorId | Should -BeLike "$Id,*"
        $errors[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        $errors[0].Exception.Message | Should -Match "-$Parameter"
        # Non-terminating: a valid pattern next to it still filters.
        $splat[$Parameter] = @($Value, $(if ($Parameter -eq 'Address') { '01:00.*' } elseif ($Parameter -eq 'Class') { 'Display' } else { 'nvidia' }))
        @(Get-GalliumPciDevice @splat -ErrorAction SilentlyContinue).Count | Should -BeGreaterThan 0
    }

    It 'takes addresses, devices and IOMMU groups from the pipeline' {
        @($H::Gpu, $H::FreeNic | Get-GalliumPciDevice).Count | Should -Be 2
        "$((Get-GalliumPciDevice -Address $H::FreeNic | Get-GalliumPciDevice).Address)" | Should -Be $H::FreeNic
        $members = @(Get-GalliumIommuGroup -Id $kernel.GroupOf($H::Gpu) | Get-GalliumPciDevice | ForEach-Object { "$($_.Address)" })
        $members | Should -Contain $H::Gpu
        $members | Should -Contain $H::GpuAudio
    }

    It 'renders the default table with the columns an admin needs' {
        $text = Get-GalliumPciDevice -Address $H::Gpu | Format-Table | Out-String -Width 200
        foreach ($column in 'Address', 'Class', 'Device', 'Driver', 'Group', 'Passthrough', 'Bar64', 'AssignedTo') { $text | Should -Match $column }
        $text | Should -Match ([regex]::Escape($H::Gpu))
        $text | Should -Match 'nvidia'
    }

    It 'answers "is this a large-BAR device?" in the table: the H100 shows its 128G of 64-bit BARs' {
        $text = Get-GalliumPciDevice -Address $H::ComputeGpu | Format-Table | Out-String -Width 200
        $text | Should -Match '128G'
    }

    It 'completes -Address with the host''s addresses, showing the device in the tooltip' {
        $line = 'Get-GalliumPciDevice -Address 0000:01:00'
        $matches = (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches
        @($matches.CompletionText) | Should -Be @($H::Gpu, $H::GpuAudio)
        $matches[0].ToolTip | Should -Match 'NVIDIA'
    }
}

Describe 'Get-GalliumIommuGroup on a simulated host' {
    BeforeAll { $kernel = New-SimulatedHost -Kind Standard }
    AfterAll { Remove-SimulatedHost }

    It 'returns groups with their members and viability' {
        $g = Get-GalliumIommuGroup -Id $kernel.GroupOf($H::Gpu)
        $g | Should -BeOfType ([Gallium.Pci.IommuGroup])
        @($g.Devices.Address | ForEach-Object ToString) | Should -Be @($H::Gpu, $H::GpuAudio)
        $g.IsViable | Should -BeFalse
        (Get-GalliumIommuGroup).Count | Should -Be $kernel.Groups.Count
    }

    It 'writes a group once when several of its devices are piped in' {
        @(Get-GalliumPciDevice -Address $H::Gpu, $H::GpuAudio | Get-GalliumIommuGroup).Count | Should -Be 1
    }

    It 'puts the bridge of a PCIe-to-PCI group in the group, viable with the bridge left alone' {
        $g = Get-GalliumIommuGroup -Id $kernel.GroupOf($H::PciBridge)
        @($g.Devices.Address | ForEach-Object ToString) | Should -Contain $H::LegacyNic
        ($g.Devices | Where-Object IsBridge).Count | Should -Be 1
    }

    It 'reports an unknown group id as IommuGroupNotFound (ObjectNotFound)' {
        Get-GalliumIommuGroup -Id 999 -ErrorVariable errs -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'IommuGroupNotFound,*'
        "$($errs[0].CategoryInfo.Category)" | Should -Be 'ObjectNotFound'
    }
}

Describe 'IOMMU readiness' {
    AfterEach { Remove-SimulatedHost }

    It 'says an Intel host with VT-d on and vfio-pci loaded is ready' {
        New-SimulatedHost -Kind Standard | Out-Null
        $r = Test-GalliumPciPassthrough
        $r | Should -BeOfType ([Gallium.Pci.PassthroughReadiness])
        $r.IommuEnabled | Should -BeTrue
        $r.IsReady | Should -BeTrue
        Test-GalliumPciPassthrough -Quiet | Should -BeTrue
    }

    It 'names intel_iommu=off on the kernel command line as the cause, and says to remove it' {
        New-SimulatedHost -Kind IommuOff | Out-Null
        $r = Test-GalliumPciPassthrough
        $r.IommuEnabled | Should -BeFalse
        "$($r.IommuProblem)" | Should -Be 'DisabledOnKernelCommandLine'
        $r.Remedy | Should -Match 'intel_iommu=off'
        $r.Remedy | Should -Match 'GRUB_CMDLINE_LINUX'
        Test-GalliumPciPassthrough -Quiet | Should -BeFalse
        (Get-GalliumPciDevice -Address $H::Gpu).IommuGroup | Should -BeNullOrEmpty
        Get-GalliumIommuGroup -WarningVariable w -WarningAction SilentlyContinue | Should -BeNullOrEmpty
        "$w" | Should -Match 'IOMMU is off'
    }

    It 'sends the admin to the firmware setup when there is no DMAR table' {
        New-SimulatedHost -Kind FirmwareOff | Out-Null
        $r = Test-GalliumPciPassthrough
        "$($r.IommuProblem)" | Should -Be 'DisabledInFirmware'
        $r.Remedy | Should -Match 'VT-d'
    }

    It 'never suggests amd_iommu=on on AMD' {
        New-SimulatedHost -Kind Amd | Out-Null
        $r = Test-GalliumPciPassthrough
        "$($r.CpuVendor)" | Should -Be 'Amd'
        $r.IommuEnabled | Should -BeTrue
        "$($r.Remedy) $($r.Problems)" | Should -Not -Match 'amd_iommu=on'
    }

    It 'lists not running as root as a problem' {
        New-SimulatedHost -Kind Standard -NotRoot | Out-Null
        $r = Test-GalliumPciPassthrough
        $r.IsRoot | Should -BeFalse
        $r.IsReady | Should -BeFalse
        "$($r.Problems)" | Should -Match 'root'
    }
}

Describe 'This machine''s real /sys, read only' {
    It 'lists the same functions with the same vendor and device ids as lspci -Dn' {
        $lspci = & lspci -Dn | ForEach-Object { $f = $_ -split '\s+'; '{0} {1}' -f $f[0], $f[2] } | Sort-Object
        $ours = Get-GalliumPciDevice | ForEach-Object { '{0} {1:x4}:{2:x4}' -f $_.Address, $_.VendorId, $_.DeviceId } | Sort-Object
        $lspci.Count | Should -BeGreaterThan 0
        $ours | Should -Be $lspci
    }

    It 'says the IOMMU is off here and what to do' {
        $r = Test-GalliumPciPassthrough
        $r.IommuEnabled | Should -BeFalse
        $r.Remedy | Should -Not -BeNullOrEmpty
    }
}
