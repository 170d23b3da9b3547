<#
.SYNOPSIS
    The main job: walks the product guide with the module, printing what an admin types and sees.
.DESCRIPTION
    On this machine it inspects the real host read-only: readiness, devices, IOMMU groups.
#>
param([Parameter(Mandatory)] [string] $ModulePath)
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath -Force

function Show([string] $Command) {
    Write-Host "`nPS> $Command" -ForegroundColor Cyan
    Invoke-Expression $Command | Out-Host
}

Show 'Test-GalliumPciPassthrough'
Show 'Get-GalliumPciDevice | Format-Table'
Show 'Get-GalliumIommuGroup'
