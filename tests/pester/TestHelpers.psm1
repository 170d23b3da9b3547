# Shared by the Pester suites: load the module under test from out/ and build simulated hosts.
Set-StrictMode -Version 3.0

function Import-GalliumModule {
    Import-Module $env:GALLIUM_MODULE_PATH -Force -Global
    if (-not ('Gallium.Pci.Testing.SimulatedHosts' -as [type])) { Add-Type -Path $env:GALLIUM_TESTING_DLL }
}

$script:Built = [System.Collections.Generic.List[object]]::new()

<#
.SYNOPSIS
    Builds a simulated kernel tree in a new tmpfs folder and points the Gallium cmdlets at it (through the
    $GalliumHostContext session variable). Returns the SimulatedKernel.
.NOTES
    Not under $TestDrive: the tree is full of directory symlinks that loop (device -> driver -> device), and Pester's
    recursive clean-up of $TestDrive would walk them forever. Remove-SimulatedHost deletes the tree without following links.
#>
function New-SimulatedHost {
    param(
        [ValidateSet('Standard', 'IommuOff', 'FirmwareOff', 'Amd')] [string] $Kind = 'Standard',
        # A host described with [Gallium.Pci.Testing.HostTopology] (e.g. the standard one extended): built instead of -Kind.
        [Gallium.Pci.Testing.HostTopology] $Topology,
        [switch] $NotRoot
    )
    $root = [Gallium.Pci.Testing.SimulatedHosts]::CreateTempRoot()
    $kernel = if ($Topology) { $Topology.Build($root) } else { [Gallium.Pci.Testing.SimulatedHosts]::$Kind($root) }
    $script:Built.Add($kernel)
    $global:GalliumHostContext = $kernel.CreateContext(-not $NotRoot)
    $kernel
}

function Remove-SimulatedHost {
    Remove-Variable -Name GalliumHostContext -Scope Global -ErrorAction Ignore
    foreach ($kernel in $script:Built) { $kernel.DeleteTree() }
    $script:Built.Clear()
}

<#
.SYNOPSIS
    For the suites that edit VMs: loads the prompt and stop hooks (PromptGate.cs), opens qemu:///system (failing, never
    skipping, with the set-up hint when it cannot) and makes the suite's domain-name prefix: GALLIUM_TEST_VM_PREFIX (default
    gpester-) and a random part. Returns @{ Libvirt; Prefix }.
#>
function Initialize-VmSuite {
    if (-not ('Gallium.PesterSupport.GatedHost' -as [type])) { Add-Type -Path (Join-Path $env:GALLIUM_REPO 'tests/pester/PromptGate.cs') }
    try { $libvirt = [Gallium.Pci.Libvirt.LibvirtConnection]::Open('qemu:///system') }
    catch { throw "These tests need a running libvirtd on qemu:///system: run tests/libvirt/start-libvirtd.sh as root. ($_)" }
    $start = if ($env:GALLIUM_TEST_VM_PREFIX) { $env:GALLIUM_TEST_VM_PREFIX } else { 'gpester-' }
    [pscustomobject]@{ Libvirt = $libvirt; Prefix = $start + [guid]::NewGuid().ToString('n').Substring(0, 8) }
}

<#
.SYNOPSIS
    Defines a diskless type='qemu' q35 test domain (REFERENCE §1) named Prefix-Suffix; with -Uefi it boots OVMF.
    -Devices are extra <devices> children (XML text). Returns the name.
#>
function New-LibvirtTestVm {
    param([Parameter(Mandatory)] $Libvirt, [Parameter(Mandatory)] [string] $Prefix, [Parameter(Mandatory)] [string] $Suffix,
        [switch] $Uefi, [string] $Devices = '')
    $name = "$Prefix-$Suffix"
    $os = if ($Uefi) {
        "<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader><nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'/>"
    } else { '' }
    $xml = "<domain type='qemu'><name>$([System.Security.SecurityElement]::Escape($name))</name><memory unit='MiB'>64</memory>" +
        "<os><type arch='x86_64' machine='q35'>hvm</type>$os</os><features><acpi/></features><devices>$Devices</devices></domain>"
    $Libvirt.DefineDomain($xml) | Out-Null
    $name
}

<#
.SYNOPSIS
    Destroys and undefines every domain whose name starts with Prefix (the suite's own, whatever state they are in).
#>
function Remove-LibvirtTestVm {
    param([Parameter(Mandatory)] $Libvirt, [Parameter(Mandatory)] [string] $Prefix)
    foreach ($d in $Libvirt.ListDomains()) {
        if ($d.Name.StartsWith($Prefix)) {
            if ($d.State -ne 'ShutOff') { $Libvirt.DestroyDomain($d.Name) }
            if ($d.IsPersistent) { $Libvirt.UndefineDomain($d.Name) }
        }
    }
}

<#
.SYNOPSIS
    Takes a host function out of every test VM (name starting with Prefix) that holds it, with Remove-GalliumVmPciDevice.
#>
function Clear-LibvirtTestDevice {
    param([Parameter(Mandatory)] $Libvirt, [Parameter(Mandatory)] [string] $Prefix, [Parameter(Mandatory)] [string] $Address)
    foreach ($d in $Libvirt.ListDomains() | Where-Object { $_.Name.StartsWith($Prefix) }) {
        $held = @([Gallium.Pci.Libvirt.DomainXml]::ReadPciHostdevs($Libvirt.GetDefinition($d.Name)) | ForEach-Object { "$($_.Address)" })
        if ($held -contains $Address) { Remove-GalliumVmPciDevice -VmName $d.Name -Address $Address -Force }
    }
}

<#
.SYNOPSIS
    The pwsh running this suite, as a file and leading arguments for a child process (its apphost, else dotnet pwsh.dll).
#>
function Get-PwshCommand {
    $apphost = Join-Path $PSHOME 'pwsh'
    if (Test-Path $apphost) { [pscustomobject]@{ File = $apphost; Lead = @() } }
    else { [pscustomobject]@{ File = [Environment]::ProcessPath; Lead = @(Join-Path $PSHOME 'pwsh.dll') } }
}

<#
.SYNOPSIS
    Starts tests/pester/VmWorker.ps1 in its own pwsh process over a simulated host's tree; returns once it is ready.
#>
function Start-GalliumWorker {
    param([Parameter(Mandatory)] $Kernel)
    $pwsh = Get-PwshCommand
    $psi = [System.Diagnostics.ProcessStartInfo]::new($pwsh.File)
    foreach ($a in @($pwsh.Lead) + @('-NoProfile', '-NonInteractive', '-File', (Join-Path $env:GALLIUM_REPO 'tests/pester/VmWorker.ps1'),
            '-ModulePath', $env:GALLIUM_MODULE_PATH, '-SimRoot', $Kernel.RootDirectory)) { $psi.ArgumentList.Add($a) }
    $psi.RedirectStandardInput = $true
    $psi.RedirectStandardOutput = $true
    $psi.UseShellExecute = $false
    $process = [System.Diagnostics.Process]::Start($psi)
    $first = $process.StandardOutput.ReadLine()
    if ($first -ne 'ready') { throw "the worker did not start (said '$first')" }
    $process
}

<# .SYNOPSIS Sends one request to a worker without waiting for the answer (Receive-GalliumWorker reads it). #>
function Send-GalliumWorker([System.Diagnostics.Process] $Worker, [string] $Verb, [string] $VmName, [string] $Address) {
    $Worker.StandardInput.WriteLine((@{ Verb = $Verb; VmName = $VmName; Address = $Address } | ConvertTo-Json -Compress))
    $Worker.StandardInput.Flush()
}

function Receive-GalliumWorker([System.Diagnostics.Process] $Worker) {
    $line = $Worker.StandardOutput.ReadLine()
    if ($null -eq $line) { throw "the worker (pid $($Worker.Id)) ended" }
    $line | ConvertFrom-Json
}

function Stop-GalliumWorker([System.Diagnostics.Process] $Worker) {
    if (-not $Worker) { return }
    try { $Worker.StandardInput.Close(); [void]$Worker.WaitForExit(30000) } catch { }
    if (-not $Worker.HasExited) { $Worker.Kill() }
    $Worker.Dispose()
}

<#
.SYNOPSIS
    Starts one command in a runspace of this process whose host waits at any prompt until the test answers; the runspace
    sees the same $GalliumHostContext (the same simulated kernel object). Returns the PowerShell, its async result and the gate.
#>
function Start-GatedCommand {
    param([Parameter(Mandatory)] [string] $Command, [Parameter(Mandatory)] [hashtable] $Parameters,
        # Stop the pipeline (as Ctrl+C does) when it writes its k-th verbose record.
        [int] $StopAtVerbose = 0)
    $gated = [Gallium.PesterSupport.GatedHost]::new()
    $iss = [initialsessionstate]::CreateDefault2()
    $iss.ImportPSModule($env:GALLIUM_MODULE_PATH)
    $iss.Variables.Add([System.Management.Automation.Runspaces.SessionStateVariableEntry]::new('GalliumHostContext', $global:GalliumHostContext, ''))
    $rs = [runspacefactory]::CreateRunspace($gated, $iss)
    $rs.Open()
    $ps = [powershell]::Create()
    $ps.Runspace = $rs
    $ps.AddCommand($Command).AddParameters($Parameters) | Out-Null
    $seen = if ($StopAtVerbose -gt 0) { [Gallium.PesterSupport.StopHook]::AtVerbose($ps, $StopAtVerbose) }
    [pscustomobject]@{ PowerShell = $ps; Async = $ps.BeginInvoke(); Gate = $gated.Gate; Runspace = $rs; Seen = $seen }
}

<# .SYNOPSIS Waits for a gated command to end; returns its errors (ErrorRecords) and the warnings its host was shown. #>
function Complete-GatedCommand($Gated) {
    $stopped = $false
    try { $null = $Gated.PowerShell.EndInvoke($Gated.Async) } catch [System.Management.Automation.PipelineStoppedException] { $stopped = $true } catch { }
    [pscustomobject]@{
        Errors = @($Gated.PowerShell.Streams.Error)
        Warnings = @($Gated.Gate.Warnings) + @($Gated.PowerShell.Streams.Warning | ForEach-Object Message)
        Verbose = @($Gated.PowerShell.Streams.Verbose | ForEach-Object Message)
        Stopped = $stopped
    }
    $Gated.PowerShell.Dispose()
    $Gated.Runspace.Dispose()
}

Export-ModuleMember -Function Import-GalliumModule, New-SimulatedHost, Remove-SimulatedHost, Initialize-VmSuite, New-LibvirtTestVm, Remove-LibvirtTestVm, Clear-LibvirtTestDevice, Get-PwshCommand,
    Start-GalliumWorker, Send-GalliumWorker, Receive-GalliumWorker, Stop-GalliumWorker, Start-GatedCommand, Complete-GatedCommand
