# A wedged libvirtd (a socket that accepts and never answers, as a daemon stuck behind a hung QEMU does) must not hold a
# command past Ctrl+C. The real libvirt client, the module's commands in a runspace of this process, a listening Unix
# socket that never accepts; the stop is PowerShell.Stop(), what Ctrl+C does. Without StoppableLibvirt every command here
# blocks in native code forever and the stop never returns (the wait below then fails the test after a minute).

BeforeAll {
    Import-Module (Join-Path $env:GALLIUM_REPO 'tests/pester/TestHelpers.psm1') -Force
    Import-GalliumModule
    $H = [Gallium.Pci.Testing.StandardHost]
    $script:kernel = New-SimulatedHost -Kind Standard
    Enable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false
    $script:dir = (New-Item -ItemType Directory -Path (Join-Path ([IO.Path]::GetTempPath()) "gallium-wedged-$([guid]::NewGuid().ToString('n').Substring(0, 8))")).FullName
    $script:socket = [System.Net.Sockets.Socket]::new([System.Net.Sockets.AddressFamily]::Unix, [System.Net.Sockets.SocketType]::Stream, [System.Net.Sockets.ProtocolType]::Unspecified)
    $script:socket.Bind([System.Net.Sockets.UnixDomainSocketEndPoint]::new((Join-Path $script:dir 'libvirt-sock')))
    $script:socket.Listen(64)   # never accepted, never answered
    $script:wedged = "qemu+unix:///system?socket=$(Join-Path $script:dir 'libvirt-sock')"
}

AfterAll {
    $script:socket.Dispose()
    Remove-Item -LiteralPath $script:dir -Recurse -Force -ErrorAction Ignore
    Remove-SimulatedHost
}

Describe 'A command waiting on a libvirtd that never answers' {
    It '<Command> ends at once when stopped, and changes nothing' -ForEach @(
        @{ Command = 'Get-GalliumVmPciDevice'; Parameters = @{} }
        @{ Command = 'Get-GalliumPciDevice'; Parameters = @{} }
        @{ Command = 'Add-GalliumVmPciDevice'; Parameters = @{ VmName = 'any'; Confirm = $false } }
        @{ Command = 'Remove-GalliumVmPciDevice'; Parameters = @{ VmName = 'any'; Force = $true } }
        @{ Command = 'Repair-GalliumVmPciDevice'; Parameters = @{ VmName = 'any'; Confirm = $false } }
    ) {
        $p = $Parameters.Clone()
        $p.Uri = $script:wedged
        if ($Command -in 'Add-GalliumVmPciDevice', 'Remove-GalliumVmPciDevice') { $p.Address = [Gallium.Pci.Testing.StandardHost]::FreeNic }
        $before = Get-GalliumPciDevice -Address ([Gallium.Pci.Testing.StandardHost]::FreeNic) -WarningAction SilentlyContinue -Uri 'test:///default'
        $run = Start-GatedCommand -Command $Command -Parameters $p
        Start-Sleep -Seconds 2
        $run.Async.IsCompleted | Should -BeFalse -Because 'the wedged socket must hold the command, or this proves nothing'

        $stop = $run.PowerShell.BeginStop($null, $null)
        $stop.AsyncWaitHandle.WaitOne([TimeSpan]::FromSeconds(60)) | Should -BeTrue -Because 'Ctrl+C must end a command blocked on libvirt'

        $result = Complete-GatedCommand $run
        $result.Stopped -or $run.PowerShell.InvocationStateInfo.State -eq 'Stopped' | Should -BeTrue
        $after = Get-GalliumPciDevice -Address ([Gallium.Pci.Testing.StandardHost]::FreeNic) -WarningAction SilentlyContinue -Uri 'test:///default'
        "$($after.Driver)/$($after.PassthroughState)" | Should -Be "$($before.Driver)/$($before.PassthroughState)"
    }
}
