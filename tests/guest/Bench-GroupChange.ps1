<#
.SYNOPSIS
    Inside the QEMU test guest (tests/guest/run-guest.sh): Enable + Disable of the guest's group of four (IOMMU group of
    0000:03:00.0: root ports 00:04.0/00:04.1 and e1000e 03:00.0/04:00.0) against the tools admins use instead, on Debian's
    real kernel. Prints one line "GALLIUM-BENCH-RESULT {json}" with every sample. bench/Invoke-Bench.ps1 -Benchmark
    GuestGroupChange runs it; it is not a test.
.DESCRIPTION
    Taken in turn, Warmup + Runs times, swapping the order every round:
      Gallium    Enable-GalliumPciPassthrough then Disable-GalliumPciPassthrough of the group, in this pwsh session; the
                 kernel seam is wrapped (Gallium.Pci.Bench.TimingSysfs) to add up the time spent inside the kernel's writes
                 (driver_override, unbind, drivers_probe: the e1000e release and the vfio-pci/e1000e probe run there).
      driverctl  driverctl set-override <fn> vfio-pci for each endpoint, then driverctl unset-override (Debian's driverctl).
      virsh      virsh nodedev-detach <fn>, then virsh nodedev-reattach, against the guest's own libvirtd.
    Each peer moves the group's two endpoints: the root ports stay on pcieport (vfio-pci binds no bridges, REFERENCE
    §4.5), as Enable leaves them. After every half the drivers are checked (vfio-pci, then e1000e again).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $BenchHelpers,
    [int] $Warmup = 1,
    [int] $Runs = 5
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
# Progress bars would be drawn on the guest's emulated serial console (slow under TCG); the peers print nothing either.
$ProgressPreference = 'SilentlyContinue'
if ((Get-Content /proc/cmdline -Raw) -notmatch 'gallium\.testguest=1') { throw 'Bench-GroupChange.ps1 runs only inside the QEMU test guest.' }
$repo = Split-Path -Parent (Split-Path -Parent $PSScriptRoot)
$ModulePath = (Resolve-Path $ModulePath).Path
$BenchHelpers = (Resolve-Path $BenchHelpers).Path

function Get-Driver([string] $Address) {
    $link = "/sys/bus/pci/devices/$Address/driver"
    if (Test-Path $link) { Split-Path -Leaf (Get-Item $link).LinkTarget } else { '(none)' }
}

function Invoke-Timed([string] $Script) {
    $sw = [Diagnostics.Stopwatch]::StartNew()
    $out = & bash -c $Script 2>&1
    $ms = $sw.Elapsed.TotalMilliseconds
    if ($LASTEXITCODE -ne 0) { throw "bash -c '$Script' exited $LASTEXITCODE`: $($out -join ' ')" }
    $ms
}

function Assert-Drivers([string[]] $Addresses, [string] $Expected, [string] $After) {
    foreach ($a in $Addresses) {
        $d = Get-Driver $a
        if ($d -ne $Expected) { throw "$After left $a on '$d', not '$Expected'." }
    }
}

# The group of four and its endpoints, read from the kernel.
$target = '0000:03:00.0'
$group = Split-Path -Leaf (Get-Item "/sys/bus/pci/devices/$target/iommu_group").LinkTarget
$members = @(Get-ChildItem "/sys/kernel/iommu_groups/$group/devices" | ForEach-Object Name | Sort-Object)
$endpoints = @($members | Where-Object { (Get-Driver $_) -ne 'pcieport' })
if ($members.Count -ne 4 -or $endpoints.Count -ne 2) { throw "Group $group has $($members.Count) members ($($members -join ', ')), $($endpoints.Count) endpoints: not the guest's group of four." }
$hostDriver = Get-Driver $endpoints[0]

# vfio-pci loaded once beforehand: every candidate then measures the move, not the module load.
& modprobe vfio-pci
if ($LASTEXITCODE -ne 0) { throw 'modprobe vfio-pci failed.' }
& bash (Join-Path $repo 'tests/libvirt/start-libvirtd.sh') | Out-Host
if ($LASTEXITCODE -ne 0) { throw 'libvirtd did not start in the guest.' }
$nodedevs = $endpoints | ForEach-Object { 'pci_' + ($_ -replace '[:.]', '_') }

Import-Module $ModulePath -Force
Add-Type -Path (Join-Path $BenchHelpers 'Gallium.Pci.Bench.dll')
$real = [Gallium.Pci.Host.HostContext]::FromEnvironment()
$timing = [Gallium.Pci.Bench.TimingSysfs]::new($real.Sysfs)
$global:GalliumHostContext = [Gallium.Pci.Host.HostContext]@{
    Sysfs = $timing; Procfs = $real.Procfs; Devfs = $real.Devfs; Modules = $real.Modules; Identity = $real.Identity
    PciIdsPath = $real.PciIdsPath; Paths = $real.Paths; WriteTimeout = $real.WriteTimeout
}

$peerEnable = @{
    driverctl = ($endpoints | ForEach-Object { "driverctl set-override $_ vfio-pci" }) -join ' && '
    virsh     = ($nodedevs | ForEach-Object { "virsh -q -c qemu:///system nodedev-detach $_ >/dev/null" }) -join ' && '
}
$peerDisable = @{
    driverctl = ($endpoints | ForEach-Object { "driverctl unset-override $_" }) -join ' && '
    virsh     = ($nodedevs | ForEach-Object { "virsh -q -c qemu:///system nodedev-reattach $_ >/dev/null" }) -join ' && '
}

$samples = [ordered]@{}
foreach ($k in 'Gallium', 'driverctl', 'virsh') { $samples[$k] = [System.Collections.Generic.List[object]]::new() }
for ($i = 0; $i -lt $Warmup + $Runs; $i++) {
    $order = @('Gallium', 'driverctl', 'virsh')
    if ($i % 2) { [array]::Reverse($order) }
    foreach ($k in $order) {
        [GC]::Collect()
        if ($k -eq 'Gallium') {
            $timing.Reset()
            $sw = [Diagnostics.Stopwatch]::StartNew()
            Enable-GalliumPciPassthrough -Address $target -Confirm:$false
            $enable = $sw.Elapsed.TotalMilliseconds
            $enableKernel = $timing.WriteMilliseconds; $enableWrites = $timing.Writes; $enableReads = $timing.Reads; $enableReadMs = $timing.ReadMilliseconds
            Assert-Drivers $endpoints 'vfio-pci' 'Enable-GalliumPciPassthrough'
            $timing.Reset()
            $sw.Restart()
            Disable-GalliumPciPassthrough -Address $target -Confirm:$false
            $disable = $sw.Elapsed.TotalMilliseconds
            $disableKernel = $timing.WriteMilliseconds; $disableWrites = $timing.Writes; $disableReads = $timing.Reads; $disableReadMs = $timing.ReadMilliseconds
            Assert-Drivers $endpoints $hostDriver 'Disable-GalliumPciPassthrough'
            $s = [ordered]@{ EnableMs = $enable; DisableMs = $disable; EnableKernelMs = $enableKernel; DisableKernelMs = $disableKernel
                EnableWrites = $enableWrites; DisableWrites = $disableWrites; EnableReads = $enableReads; DisableReads = $disableReads
                EnableReadMs = $enableReadMs; DisableReadMs = $disableReadMs }
        }
        else {
            $enable = Invoke-Timed $peerEnable[$k]
            Assert-Drivers $endpoints 'vfio-pci' "$k (enable)"
            $disable = Invoke-Timed $peerDisable[$k]
            Assert-Drivers $endpoints $hostDriver "$k (disable)"
            $s = [ordered]@{ EnableMs = $enable; DisableMs = $disable }
        }
        if ($i -ge $Warmup) { $samples[$k].Add([pscustomobject]$s) }
    }
}

$result = [ordered]@{
    Kernel    = (Get-Content /proc/sys/kernel/osrelease -Raw).Trim()
    Group     = [int]$group
    Members   = $members
    Endpoints = $endpoints
    HostDriver = $hostDriver
    Driverctl = (& dpkg-query -W -f '${Version}' driverctl 2>$null) -as [string]
    Virsh     = (& virsh --version) -as [string]
    LoadAverage = ((Get-Content /proc/loadavg -Raw) -split ' ')[0..2] -join ' '
    Samples   = $samples
}
"GALLIUM-BENCH-RESULT $($result | ConvertTo-Json -Depth 5 -Compress)"
