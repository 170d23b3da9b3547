# Runs only inside the QEMU test guest (tests/guest/run-guest.sh): Debian's real kernel with an emulated VT-d, where
# writes to /sys are safe. Topology (tests/guest/README.md): 01:00.0 e1000e alone behind a root port; 00:04.0/00:04.1
# root ports with ACS disabled + 03:00.0/04:00.0 e1000e = one group of four; 05:00.0/05:00.1 a multi-function pair.
# Group numbers are looked up through iommu_group, never hard-coded.

BeforeAll {
    Import-Module (Join-Path $env:GALLIUM_REPO 'tests/pester/TestHelpers.psm1') -Force
    Import-GalliumModule

    function Get-KernelDriver([string] $Address) {
        $link = "/sys/bus/pci/devices/$Address/driver"
        if (Test-Path $link) { Split-Path -Leaf (Get-Item $link).LinkTarget } else { '(none)' }
    }
    function Get-GroupOf([string] $Address) {
        Split-Path -Leaf (Get-Item "/sys/bus/pci/devices/$Address/iommu_group").LinkTarget
    }
    # Everything Enable/Disable may touch, read straight from the kernel, as one comparable string.
    function Get-GroupState([string] $Address) {
        $group = Get-GroupOf $Address
        $members = Get-ChildItem "/sys/kernel/iommu_groups/$group/devices" | ForEach-Object Name | Sort-Object
        $lines = foreach ($m in $members) {
            $override = (Get-Content "/sys/bus/pci/devices/$m/driver_override" -Raw).Trim()
            "$m driver=$(Get-KernelDriver $m) override=$override"
        }
        ($lines + "vfio-node=$(Test-Path "/dev/vfio/$group")") -join "`n"
    }
    function Get-WhatIfLines([scriptblock] $Command) {
        $transcript = Join-Path $TestDrive "whatif-$([guid]::NewGuid().ToString('n')).txt"
        Start-Transcript -Path $transcript | Out-Null
        try { & $Command } finally { Stop-Transcript | Out-Null }
        @(Get-Content $transcript | Where-Object { $_ -match '^What if:' })
    }
}

Describe 'Enable and Disable on a real kernel' -Tag RealKernel {
    It 'runs on the disposable test guest, never on a real host' {
        Get-Content /proc/cmdline -Raw | Should -Match 'gallium\.testguest=1'
    }

    Context 'a group of four: two root ports (ACS off) and two NICs' {
        BeforeAll { $group = Get-GroupOf 0000:03:00.0 }

        It 'Get-GalliumIommuGroup shows the four members and the group is not viable while the NICs are on e1000e' {
            $g = Get-GalliumIommuGroup -Id $group
            @($g.Devices | ForEach-Object { "$($_.Address)" }) | Should -Be @('0000:00:04.0', '0000:00:04.1', '0000:03:00.0', '0000:04:00.0')
            $g.IsViable | Should -BeFalse
        }

        It '-WhatIf writes one line per device of the group and changes nothing' {
            $before = Get-GroupState 0000:03:00.0
            $lines = Get-WhatIfLines { Get-GalliumPciDevice -Address 0000:03:00.0 | Enable-GalliumPciPassthrough -WhatIf }
            $lines.Count | Should -Be 4
            ($lines -match '0000:03:00\.0.*e1000e -> vfio-pci').Count | Should -Be 1
            ($lines -match '0000:04:00\.0.*e1000e -> vfio-pci').Count | Should -Be 1
            ($lines -match '0000:00:04\.0.*stays on pcieport').Count | Should -Be 1
            Get-GroupState 0000:03:00.0 | Should -Be $before
        }

        It 'Enable puts every endpoint on vfio-pci, leaves the root ports on pcieport, and opens /dev/vfio/<group>' {
            Get-GalliumPciDevice -Address 0000:03:00.0 | Enable-GalliumPciPassthrough -Confirm:$false
            Get-KernelDriver 0000:03:00.0 | Should -Be 'vfio-pci'
            Get-KernelDriver 0000:04:00.0 | Should -Be 'vfio-pci'
            Get-KernelDriver 0000:00:04.0 | Should -Be 'pcieport'
            Get-KernelDriver 0000:00:04.1 | Should -Be 'pcieport'
            "/dev/vfio/$group" | Should -Exist
            (Get-GalliumIommuGroup -Id $group).IsViable | Should -BeTrue
            (Get-GalliumPciDevice -Address 0000:04:00.0).PassthroughState | Should -Be 'Enabled'
        }

        It 'Enable of an enabled group is a quiet no-op that says so in verbose' {
            $before = Get-GroupState 0000:03:00.0
            $verbose = Enable-GalliumPciPassthrough -Address 0000:04:00.0 -Confirm:$false -Verbose 4>&1
            ($verbose | Out-String) | Should -Match 'already'
            Get-GroupState 0000:03:00.0 | Should -Be $before
        }

        It 'Disable returns every endpoint to e1000e and clears the overrides' {
            Disable-GalliumPciPassthrough -Address 0000:03:00.0 -Confirm:$false
            Get-KernelDriver 0000:03:00.0 | Should -Be 'e1000e'
            Get-KernelDriver 0000:04:00.0 | Should -Be 'e1000e'
            (Get-Content /sys/bus/pci/devices/0000:04:00.0/driver_override -Raw).Trim() | Should -Be '(null)'
            "/dev/vfio/$group" | Should -Not -Exist
        }

        It 'a step that fails mid-group (vfio-pci unloaded under it) is rolled back to the exact start state' {
            $before = Get-GroupState 0000:03:00.0
            # Before the second NIC's override is written, unload vfio-pci for real: the first NIC falls off vfio-pci
            # and the second cannot bind, so the plan must fail and undo everything it did.
            $hook = [Func[int, string, string, int]] {
                param($n, $path, $value)
                if ($path -like '*0000:04:00.0/driver_override' -and $value -like 'vfio-pci*') { & modprobe -r vfio_pci }
                0
            }
            $wrapped = [Gallium.Pci.Testing.InterceptingSysfs]::Wrap([Gallium.Pci.Host.HostContext]::FromEnvironment(), $hook)
            $global:GalliumHostContext = $wrapped.Item1
            try {
                { Enable-GalliumPciPassthrough -Address 0000:03:00.0 -Confirm:$false -ErrorAction Stop } |
                    Should -Throw -ErrorId 'PciPassthroughStepFailed,*'
            } finally { Remove-Variable -Name GalliumHostContext -Scope Global }
            $wrapped.Item2.Writes.Count | Should -BeGreaterThan 2
            Get-GroupState 0000:03:00.0 | Should -Be $before
        }
    }

    Context 'a device alone behind its root port, and a multi-function pair' {
        It 'Enable then Disable of 01:00.0 moves only that device' {
            $other = Get-GroupState 0000:05:00.0
            Enable-GalliumPciPassthrough -Address 0000:01:00.0 -Confirm:$false
            Get-KernelDriver 0000:01:00.0 | Should -Be 'vfio-pci'
            Get-GroupState 0000:05:00.0 | Should -Be $other
            Disable-GalliumPciPassthrough -Address 0000:01:00.0 -Confirm:$false
            Get-KernelDriver 0000:01:00.0 | Should -Be 'e1000e'
        }

        It 'Enable of one function of a multi-function pair takes its sibling too, and -PassThru returns both' {
            $out = Enable-GalliumPciPassthrough -Address 0000:05:00.0 -Confirm:$false -PassThru
            @($out | ForEach-Object { "$($_.Address)" }) | Should -Be @('0000:05:00.0', '0000:05:00.1')  # not $out.Address: arrays have an Address() method
            $out.Driver | Should -Be @('vfio-pci', 'vfio-pci')
            Get-KernelDriver 0000:05:00.1 | Should -Be 'vfio-pci'
            Disable-GalliumPciPassthrough -Address 0000:05:00.1 -Confirm:$false
            Get-KernelDriver 0000:05:00.0 | Should -Be 'e1000e'
            Get-KernelDriver 0000:05:00.1 | Should -Be 'e1000e'
        }
    }
}

Describe 'A guest booted without the IOMMU' -Tag RealKernelNoIommu {
    It 'Test-GalliumPciPassthrough says the kernel command line turned it off and to remove intel_iommu=off' {
        $r = Test-GalliumPciPassthrough
        $r.IommuEnabled | Should -BeFalse
        "$($r.IommuProblem)" | Should -Be 'DisabledOnKernelCommandLine'
        $r.Remedy | Should -Match 'intel_iommu=off'
    }

    It 'Enable is refused with IommuNotEnabled carrying the remedy, and nothing changes' {
        $before = Get-KernelDriver 0000:01:00.0
        $err = $null
        try { Enable-GalliumPciPassthrough -Address 0000:01:00.0 -Confirm:$false -ErrorAction Stop } catch { $err = $_ }
        $err.FullyQualifiedErrorId | Should -BeLike 'IommuNotEnabled,*'
        "$($err.CategoryInfo.Category)" | Should -Be 'NotEnabled'
        "$err $($err.ErrorDetails.RecommendedAction)" | Should -Match 'intel_iommu=off'
        Get-KernelDriver 0000:01:00.0 | Should -Be $before
    }
}
