<#
.SYNOPSIS
    The main job: walks the product guide with the module, printing what an admin types and sees.
.DESCRIPTION
    Boots the QEMU test guest (tests/guest/run-guest.sh: Debian's kernel with an emulated VT-d IOMMU, this machine's
    userland as its root) and runs tools/Demo-Guest.ps1 inside it: readiness, inventory, groups, Enable (-WhatIf, then
    for real), Add to a stopped VM, the VM started with the device, Disable refused while assigned, Remove, Disable,
    and the large-BAR fix. The guest is thrown away afterwards; this machine's devices are never touched.
    -HostOnly instead inspects this machine read-only (readiness, devices, IOMMU groups) without a guest.
.EXAMPLE
    dotnet pwsh -NoProfile -File tools/Demo.ps1 -ModulePath out/Gallium.PciPassthrough
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    # Read-only walk on this machine, no guest.
    [switch] $HostOnly,
    # The guest is killed after this many seconds (the demo takes about 4 minutes here).
    [int] $TimeoutSeconds = 600
)
$ErrorActionPreference = 'Stop'
$ModulePath = (Resolve-Path $ModulePath).Path
$repo = (Resolve-Path (Join-Path $PSScriptRoot '..')).Path

if ($HostOnly) {
    Import-Module $ModulePath -Force
    foreach ($command in 'Test-GalliumPciPassthrough', 'Get-GalliumPciDevice | Format-Table', 'Get-GalliumIommuGroup') {
        Write-Host "`nPS> $command"
        Invoke-Expression $command | Out-Host
    }
    return
}

# Not -NonInteractive: the demo answers Remove's confirmation prompt through the real console host.
Write-Host "Booting the test guest (QEMU TCG, Debian kernel, vIOMMU); the walk runs inside it ..."
$started = Get-Date
& bash (Join-Path $repo 'tests/guest/run-guest.sh') --timeout $TimeoutSeconds -- `
    dotnet pwsh -NoProfile -File (Join-Path $repo 'tools/Demo-Guest.ps1') -ModulePath $ModulePath
$rc = $LASTEXITCODE
Write-Host ('Guest demo finished in {0:N0}s (exit {1}).' -f ((Get-Date) - $started).TotalSeconds, $rc)
exit $rc
