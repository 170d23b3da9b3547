# Enable-GalliumPciPassthrough (and the interruption, crash and drift behaviour it shares with Disable) on simulated kernels
# (src/Gallium.Pci.Testing). Issue 11: a stop at any point finishes or rolls back the group and says which; a killed
# change is shown and repaired by the next command; PassthroughState tells drift apart.

BeforeAll {
    Import-Module (Join-Path $env:GALLIUM_REPO 'tests/pester/TestHelpers.psm1') -Force
    Import-GalliumModule
    $H = [Gallium.Pci.Testing.StandardHost]

    if (-not ('Gallium.PesterSupport.AnsweringHost' -as [type])) { Add-Type -Path (Join-Path $PSScriptRoot 'AnsweringHost.cs') }
    # A runspace of its own whose host context is the simulated kernel, with a host that records what reaches its UI
    # (a cmdlet whose pipeline is stopping can no longer write to its streams, only to the host), so PowerShell.Stop()
    # can be called from here and what the user was told can be read back.
    function New-CommandRunspace([string] $Answer = 'Yes') {
        $script:UiHost = [Gallium.PesterSupport.AnsweringHost]::new($Answer)
        $iss = [initialsessionstate]::CreateDefault2()
        $iss.ImportPSModule($env:GALLIUM_MODULE_PATH)
        $iss.Variables.Add([System.Management.Automation.Runspaces.SessionStateVariableEntry]::new('GalliumHostContext', $global:GalliumHostContext, ''))
        $rs = [runspacefactory]::CreateRunspace($script:UiHost, $iss)
        $rs.Open()
        $rs
    }
    # Runs a script in such a runspace; returns what the user saw: the warning stream and the host's warning lines.
    function Invoke-Told([string] $Script) {
        $rs = New-CommandRunspace
        try {
            $ps = [powershell]::Create()
            $ps.Runspace = $rs
            $ps.AddScript($Script) | Out-Null
            try { $ps.Invoke() | Out-Null } catch { }
            (@($ps.Streams.Warning | ForEach-Object { "WARNING: $_" }) + @($ps.Streams.Error | ForEach-Object { "ERROR: $_" }) + @($script:UiHost.Lines)) -join "`n"
        } finally { $rs.Dispose() }
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
        # One Enable first installs the apply script, so every run below has the same steps (and records) as the first.
        Enable-GalliumPciPassthrough -Address $H::Gpu -Confirm:$false
        if ($Command -eq 'Enable') { Disable-GalliumPciPassthrough -Address $H::Gpu -Confirm:$false }
        $start = $kernel.Snapshot()
        $records = @(& $cmd -Address $H::Gpu -Confirm:$false -Verbose 4>&1)
        $end = $kernel.Snapshot()
        $records.Count | Should -BeGreaterThan 10
        # Records before the runner's first ("lock ...", after ShouldProcess's own verbose line) stop the command before
        # any change began: nothing to roll back, nothing to report.
        $firstRunnerRecord = 1 + [array]::FindIndex([object[]]$records, [Predicate[object]]{ param($r) "$r" -like 'lock *' })
        $firstRunnerRecord | Should -BeGreaterThan 0
        $group = $kernel.GroupOf($H::Gpu)
        $rolledBack = 0
        for ($n = 1; $n -le $records.Count; $n++) {
            # Back to the start for each N (undoing the full run when the previous N completed it).
            if (-not $kernel.Snapshot().Equals($start)) {
                if ($Command -eq 'Enable') { Disable-GalliumPciPassthrough -Address $H::Gpu -Confirm:$false } else { Enable-GalliumPciPassthrough -Address $H::Gpu -Confirm:$false }
            }
            $kernel.Snapshot().Equals($start) | Should -BeTrue
            $told = Invoke-Told "$cmd -Address $($H::Gpu) -Confirm:`$false -Verbose 4>&1 | Select-Object -First $n | Out-Null"
            $now = $kernel.Snapshot()
            ($now.Equals($start) -or $now.Equals($end)) | Should -BeTrue -Because "after $n of $($records.Count) records the group is half-done: $($start.Differences($now) -join '; ')"
            Test-Path (Get-PendingRecord $group) | Should -BeFalse -Because 'a stopped change leaves no unfinished-change record'
            @(Get-GalliumPciDevice -IommuGroup $group | Where-Object PassthroughState -in 'Interrupted', 'Drifted', 'NotPersisted') | Should -BeNullOrEmpty
            if ($n -ge $firstRunnerRecord -and $n -lt $records.Count) {
                $told | Should -Match "WARNING: Stopped.*IOMMU group $group" -Because "a stop after record $n of $($records.Count) must say how the change ended"
            }
            if ($now.Equals($start)) { $rolledBack++ }
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
            $e = { $ps.EndInvoke($async) } | Should -Throw -PassThru
            $e.Exception.InnerException | Should -BeOfType ([System.Management.Automation.PipelineStoppedException])
            $ps.InvocationStateInfo.State | Should -Be 'Stopped'
            $kernel.Snapshot().Equals($start) | Should -BeTrue -Because ($start.Differences($kernel.Snapshot()) -join '; ')
            (@($ps.Streams.Warning) + @($script:UiHost.Lines)) -join "`n" | Should -Match 'rolled back; the group is as it began'
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
        [Gallium.Pci.Testing.Crashes]::KillDuring($kernel, $global:GalliumHostContext, $H::Gpu, $true, 3) | Should -BeTrue
        $half = $kernel.Snapshot()
        $rs = New-CommandRunspace
        try {
            $ps = [powershell]::Create()
            $ps.Runspace = $rs
            $ps.AddCommand('Enable-GalliumPciPassthrough').AddParameter('Address', $H::Gpu).AddParameter('WhatIf', $true) | Out-Null
            $ps.Invoke() | Out-Null
            ($script:UiHost.Lines -join "`n") | Should -Match 'What if: Repair IOMMU group \d+: its Enable .* was interrupted'
        } finally { $rs.Dispose() }
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
        [Gallium.Pci.Testing.Crashes]::KillDuring($kernel, $global:GalliumHostContext, $H::Gpu, $true, 3) | Should -BeTrue
        $half = $kernel.Snapshot()
        $rs = New-CommandRunspace -Answer 'No'
        try {
            $ps = [powershell]::Create()
            $ps.Runspace = $rs
            $ps.AddCommand('Enable-GalliumPciPassthrough').AddParameter('Address', $H::FreeNic).AddParameter('Confirm', $true) | Out-Null
            $e = { $ps.Invoke() } | Should -Throw -PassThru
            $e.Exception.InnerException.ErrorRecord.FullyQualifiedErrorId | Should -BeLike 'UnfinishedChangeNotRepaired*'
            @($script:UiHost.Prompts).Count | Should -BeGreaterThan 0
        } finally { $rs.Dispose() }
        $kernel.Snapshot().Equals($half) | Should -BeTrue
    }
}

Describe 'PassthroughState tells drift apart, and Enable or Disable repairs it' {
    BeforeEach {
        $kernel = New-SimulatedHost -Kind Standard
        # What a host driver winning at boot leaves: the record, the device back on e1000e, no override.
        function Set-HostDriverWon([string] $Address) {
            Enable-GalliumPciPassthrough -Address $Address -Confirm:$false
            $kernel.Write("bus/pci/devices/$Address/driver_override", "`n", [timespan]::FromSeconds(1))
            $kernel.Write('bus/pci/drivers/vfio-pci/unbind', $Address, [timespan]::FromSeconds(1))
            $kernel.Write('bus/pci/drivers_probe', $Address, [timespan]::FromSeconds(1))
        }
    }
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
        Set-HostDriverWon $H::FreeNic
        $d = Get-GalliumPciDevice -Address $H::FreeNic
        $d.Driver | Should -Be 'e1000e'
        $d.PassthroughState | Should -Be 'Drifted'
        $d.Problem | Should -Match 'Recorded for vfio-pci, but it is bound to e1000e'
        @((Test-GalliumPciPassthrough).DriftedDevices | ForEach-Object { "$($_.Address)" }) | Should -Contain $H::FreeNic
        Enable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false
        (Get-GalliumPciDevice -Address $H::FreeNic).PassthroughState | Should -Be 'Enabled'
    }

    It 'a drifted device that Disable returns to the host loses its record: Host afterwards' {
        Set-HostDriverWon $H::FreeNic
        Disable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false
        (Get-GalliumPciDevice -Address $H::FreeNic).PassthroughState | Should -Be 'Host'
        Test-Path (Join-Path $global:GalliumHostContext.Paths.ConfigDirectory "pci.d/$($H::FreeNic)") | Should -BeFalse
    }
}

Describe 'Enable and Disable of one group at the same moment (two runspaces, one simulated kernel)' {
    BeforeAll { $kernel = New-SimulatedHost -Kind Standard }
    AfterAll { Remove-SimulatedHost }

    It '10 rounds of Enable racing Disable: each ends with the group wholly on vfio-pci with its records, or wholly back, never half' {
        $group = (Get-GalliumPciDevice -Address $H::ComputeGpu).IommuGroup
        for ($round = 1; $round -le 10; $round++) {
            $first, $second = if ($round % 2) { 'Enable', 'Disable' } else { 'Disable', 'Enable' }
            $a = Start-GatedCommand -Command "$first-GalliumPciPassthrough" -Parameters @{ Address = $H::ComputeGpu; Confirm = $false }
            $b = Start-GatedCommand -Command "$second-GalliumPciPassthrough" -Parameters @{ Address = $H::ComputeGpu; Confirm = $false }
            $ra = Complete-GatedCommand $a
            $rb = Complete-GatedCommand $b
            $errors = @($ra.Errors) + @($rb.Errors) | ForEach-Object { "$($_.FullyQualifiedErrorId): $_" }
            # The second waits for the host lock; if the first changed the group it planned against, it refuses and changes nothing.
            @($errors | Where-Object { $_ -notlike 'IommuGroupChanged,*' }) | Should -BeNullOrEmpty -Because "round ${round}: only IommuGroupChanged may refuse the second"
            $states = @(Get-GalliumPciDevice -IommuGroup $group | Where-Object { -not $_.IsBridge } | ForEach-Object { "$($_.PassthroughState)" } | Sort-Object -Unique)
            $states.Count | Should -Be 1 -Because "round ${round}: the group's endpoints are all in one state ($($states -join ', '); $($errors -join '; '))"
            $states[0] | Should -BeIn @('Enabled', 'Host') -Because "round ${round}: whole on vfio-pci with records, or whole on host drivers"
            Get-ChildItem (Join-Path $global:GalliumHostContext.Paths.ConfigDirectory 'pending.d') -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        }
    }
}
