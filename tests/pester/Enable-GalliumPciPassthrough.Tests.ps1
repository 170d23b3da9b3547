# Enable-GalliumPciPassthrough (and the interruption, crash and drift behaviour it shares with Disable) on simulated kernels
# (tests/Gallium.Pci.Testing). Issue 11: a stop at any point finishes or rolls back the group and says which; a killed
# change is shown and repaired by the next command; PassthroughState tells drift apart.

BeforeAll {
    Import-Module (Join-Path $env:GALLIUM_REPO 'tests/pester/TestHelpers.psm1') -Force
    Import-GalliumModule
    $H = [Gallium.Pci.Testing.StandardHost]

    # A runspace of its own whose host context is the simulated kernel, so PowerShell.Stop() can be called from here.
    function New-CommandRunspace {
        $iss = [initialsessionstate]::CreateDefault2()
        $iss.ImportPSModule($env:GALLIUM_MODULE_PATH)
        $iss.Variables.Add([System.Management.Automation.Runspaces.SessionStateVariableEntry]::new('GalliumHostContext', $global:GalliumHostContext, ''))
        $rs = [runspacefactory]::CreateRunspace($iss)
        $rs.Open()
        $rs
    }
    function Get-PendingRecord([int] $Group) {
        Join-Path $global:GalliumHostContext.Paths.ConfigDirectory "pending.d/group-$Group"
    }
}

Describe 'A stop at any point of Enable or Disable (Ctrl+C, Select-Object -First, a stream set to Stop)' {
    BeforeEach { $kernel = New-SimulatedHost -Kind Standard }
    AfterEach { Remove-SimulatedHost }

    It '<Command> of the GPU group, stopped after verbose record N by Select-Object -First N: the group is whole (as it began, or done) for every N' -TestCases @(
        @{ Command = 'Enable' }
        @{ Command = 'Disable' }
    ) {
        param($Command)
        $cmd = "$Command-GalliumPciPassthrough"
        if ($Command -eq 'Disable') { Enable-GalliumPciPassthrough -Address $H::Gpu -Confirm:$false }
        $start = $kernel.Snapshot()
        $records = @(& $cmd -Address $H::Gpu -Confirm:$false -Verbose 4>&1)
        $end = $kernel.Snapshot()
        $records.Count | Should -BeGreaterThan 10
        $group = $kernel.GroupOf($H::Gpu)
        $rolledBack = 0
        for ($n = 1; $n -le $records.Count; $n++) {
            # Back to the start for each N (undoing the full run when the previous N completed it).
            if (-not $kernel.Snapshot().Equals($start)) {
                if ($Command -eq 'Enable') { Disable-GalliumPciPassthrough -Address $H::Gpu -Confirm:$false } else { Enable-GalliumPciPassthrough -Address $H::Gpu -Confirm:$false }
            }
            $kernel.Snapshot().Equals($start) | Should -BeTrue
            $warnings = $null
            $null = & $cmd -Address $H::Gpu -Confirm:$false -Verbose -WarningVariable warnings 4>&1 | Select-Object -First $n
            $now = $kernel.Snapshot()
            ($now.Equals($start) -or $now.Equals($end)) | Should -BeTrue -Because "after $n of $($records.Count) records the group is half-done: $($start.Differences($now) -join '; ')"
            Test-Path (Get-PendingRecord $group) | Should -BeFalse -Because 'a stopped change leaves no unfinished-change record'
            @(Get-GalliumPciDevice -IommuGroup $group | Where-Object PassthroughState -in 'Interrupted', 'Drifted', 'NotPersisted') | Should -BeNullOrEmpty
            if ($n -lt $records.Count - 2) {
                "$warnings" | Should -Match "IOMMU group $group" -Because "stop after record $n must say how the change ended"
                if ($now.Equals($start)) { $rolledBack++ }
            }
        }
        $rolledBack | Should -BeGreaterThan 5
    }

    It 'PowerShell.Stop() while Enable waits on a kernel write: the group is rolled back, the user is told, and the stop wins' -TestCases @(
        @{ AfterWrite = 1 }, @{ AfterWrite = 3 }, @{ AfterWrite = 5 }
    ) {
        param($AfterWrite)
        $start = $kernel.Snapshot()
        $reached = [System.Threading.ManualResetEventSlim]::new($false)
        $release = [System.Threading.ManualResetEventSlim]::new($false)
        $kernel.PauseAfterWrite($AfterWrite, $reached, $release)
        $rs = New-CommandRunspace
        try {
            $ps = [powershell]::Create()
            $ps.Runspace = $rs
            $ps.AddCommand('Enable-GalliumPciPassthrough').AddParameter('Address', $H::Gpu).AddParameter('Confirm', $false) | Out-Null
            $async = $ps.BeginInvoke()
            $reached.Wait([timespan]::FromSeconds(60)) | Should -BeTrue
            $stop = $ps.BeginStop($null, $null)
            Start-Sleep -Milliseconds 200   # StopProcessing has run; the write returns into a stopping pipeline
            $release.Set()
            $ps.EndStop($stop)
            { $ps.EndInvoke($async) } | Should -Throw -ExceptionType ([System.Management.Automation.PipelineStoppedException])
            $ps.InvocationStateInfo.State | Should -Be 'Stopped'
            $kernel.Snapshot().Equals($start) | Should -BeTrue -Because ($start.Differences($kernel.Snapshot()) -join '; ')
            "$($ps.Streams.Warning)" | Should -Match 'rolled back; the group is as it began'
            Test-Path (Get-PendingRecord $kernel.GroupOf($H::Gpu)) | Should -BeFalse
        } finally { $rs.Dispose(); $kernel.ClearFaults() }
    }

    It 'a verbose stream set to Stop ends Enable with that error, after rolling the group back' {
        $start = $kernel.Snapshot()
        { & { $VerbosePreference = 'Stop'; Enable-GalliumPciPassthrough -Address $H::Gpu -Confirm:$false -WarningAction SilentlyContinue } } |
            Should -Throw -ExceptionType ([System.Management.Automation.ActionPreferenceStopException])
        $kernel.Snapshot().Equals($start) | Should -BeTrue
    }
}

Describe 'A killed Enable or Disable is shown, and repaired by the next command' {
    BeforeEach { $kernel = New-SimulatedHost -Kind Standard }
    AfterEach { Remove-SimulatedHost }

    It 'an Enable killed after its 3rd kernel write: Get-GalliumPciDevice shows Interrupted and Test-GalliumPciPassthrough names the fix' {
        [Gallium.Pci.Testing.Crashes]::KillDuring($kernel, $global:GalliumHostContext, $H::Gpu, $true, 3) | Should -BeTrue
        $group = $kernel.GroupOf($H::Gpu)
        $members = @(Get-GalliumPciDevice -IommuGroup $group | Where-Object { -not $_.IsBridge })
        $members.PassthroughState | Sort-Object -Unique | Should -Be 'Interrupted'
        $members[0].Problem | Should -Match "Enable of IOMMU group $group that was interrupted"
        $r = Test-GalliumPciPassthrough
        @($r.UnfinishedChanges).Count | Should -Be 1
        $r.UnfinishedChanges[0].IommuGroup | Should -Be $group
        $r.Problems -join ' ' | Should -Match 'Disable-GalliumPciPassthrough -Address'
    }

    It '-WhatIf says it would repair and changes nothing; the real Enable repairs first (warning), then enables' {
        $kernel.Snapshot() | Out-Null
        [Gallium.Pci.Testing.Crashes]::KillDuring($kernel, $global:GalliumHostContext, $H::Gpu, $true, 3) | Should -BeTrue
        $half = $kernel.Snapshot()
        $whatIf = Enable-GalliumPciPassthrough -Address $H::Gpu -WhatIf 6>&1 | Out-String
        $whatIf | Should -Match 'Repair IOMMU group \d+'
        $kernel.Snapshot().Equals($half) | Should -BeTrue
        $warnings = $null
        Enable-GalliumPciPassthrough -Address $H::Gpu -Confirm:$false -WarningVariable warnings -WarningAction SilentlyContinue
        "$warnings" | Should -Match 'was interrupted; returned it to how it was before'
        (Get-GalliumPciDevice -Address $H::Gpu, $H::GpuAudio).PassthroughState | Sort-Object -Unique | Should -Be 'Enabled'
        Test-Path (Get-PendingRecord $kernel.GroupOf($H::Gpu)) | Should -BeFalse
    }

    It 'a Disable killed half-way is repaired by the next Enable back to wholly enabled' {
        Enable-GalliumPciPassthrough -Address $H::Gpu -Confirm:$false
        [Gallium.Pci.Testing.Crashes]::KillDuring($kernel, $global:GalliumHostContext, $H::Gpu, $false, 4) | Should -BeTrue
        Enable-GalliumPciPassthrough -Address $H::Gpu -Confirm:$false -WarningAction SilentlyContinue
        (Get-GalliumPciDevice -Address $H::Gpu, $H::GpuAudio).PassthroughState | Sort-Object -Unique | Should -Be 'Enabled'
    }

    It 'declining the repair at the -Confirm prompt stops the command with UnfinishedChangeNotRepaired and changes nothing' {
        if (-not ('Gallium.PesterSupport.AnsweringHost' -as [type])) { Add-Type -Path (Join-Path $PSScriptRoot 'AnsweringHost.cs') }
        [Gallium.Pci.Testing.Crashes]::KillDuring($kernel, $global:GalliumHostContext, $H::Gpu, $true, 3) | Should -BeTrue
        $half = $kernel.Snapshot()
        $answering = [Gallium.PesterSupport.AnsweringHost]::new('No')
        $iss = [initialsessionstate]::CreateDefault2()
        $iss.ImportPSModule($env:GALLIUM_MODULE_PATH)
        $iss.Variables.Add([System.Management.Automation.Runspaces.SessionStateVariableEntry]::new('GalliumHostContext', $global:GalliumHostContext, ''))
        $rs = [runspacefactory]::CreateRunspace($answering, $iss)
        $rs.Open()
        try {
            $ps = [powershell]::Create()
            $ps.Runspace = $rs
            $ps.AddCommand('Enable-GalliumPciPassthrough').AddParameter('Address', $H::FreeNic).AddParameter('Confirm', $true) | Out-Null
            $e = { $ps.Invoke() } | Should -Throw -PassThru
            $e.Exception.InnerException.ErrorRecord.FullyQualifiedErrorId | Should -BeLike 'UnfinishedChangeNotRepaired*'
            @($answering.Prompts).Count | Should -BeGreaterThan 0
        } finally { $rs.Dispose() }
        $kernel.Snapshot().Equals($half) | Should -BeTrue
    }
}

Describe 'PassthroughState tells drift apart, and Enable or Disable repairs it' {
    BeforeEach { $kernel = New-SimulatedHost -Kind Standard }
    AfterEach { Remove-SimulatedHost }

    It 'Enabled only with the record and rule in place; on vfio-pci without them is NotPersisted, which Enable repairs' {
        Enable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false
        (Get-GalliumPciDevice -Address $H::FreeNic).PassthroughState | Should -Be 'Enabled'
        $record = Join-Path $global:GalliumHostContext.Paths.ConfigDirectory "pci.d/$($H::FreeNic)"
        Remove-Item $record
        $d = Get-GalliumPciDevice -Address $H::FreeNic
        $d.PassthroughState | Should -Be 'NotPersisted'
        $d.Problem | Should -Match 'its record is missing.*next reboot'
        Enable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false
        (Get-GalliumPciDevice -Address $H::FreeNic).PassthroughState | Should -Be 'Enabled'
    }

    It 'recorded but back on its host driver is Drifted, listed by Test-GalliumPciPassthrough; Enable moves it back' {
        Enable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false
        # The host driver wins: override cleared, unbound from vfio-pci, probed back onto e1000e, the record left behind.
        $kernel.Write("bus/pci/devices/$($H::FreeNic)/driver_override", "`n", [timespan]::FromSeconds(1))
        $kernel.Write('bus/pci/drivers/vfio-pci/unbind', $H::FreeNic, [timespan]::FromSeconds(1))
        $kernel.Write('bus/pci/drivers_probe', $H::FreeNic, [timespan]::FromSeconds(1))
        $d = Get-GalliumPciDevice -Address $H::FreeNic
        $d.Driver | Should -Be 'e1000e'
        $d.PassthroughState | Should -Be 'Drifted'
        $d.Problem | Should -Match 'Recorded for vfio-pci, but it is bound to e1000e'
        "$((Test-GalliumPciPassthrough).DriftedDevices.Address)" | Should -Be $H::FreeNic
        Enable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false
        (Get-GalliumPciDevice -Address $H::FreeNic).PassthroughState | Should -Be 'Enabled'
    }

    It 'a drifted device that Disable returns to the host loses its record: Host afterwards' {
        Enable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false
        $kernel.Write("bus/pci/devices/$($H::FreeNic)/driver_override", "`n", [timespan]::FromSeconds(1))
        $kernel.Write('bus/pci/drivers/vfio-pci/unbind', $H::FreeNic, [timespan]::FromSeconds(1))
        $kernel.Write('bus/pci/drivers_probe', $H::FreeNic, [timespan]::FromSeconds(1))
        Disable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false
        (Get-GalliumPciDevice -Address $H::FreeNic).PassthroughState | Should -Be 'Host'
        Test-Path (Join-Path $global:GalliumHostContext.Paths.ConfigDirectory "pci.d/$($H::FreeNic)") | Should -BeFalse
    }
}
