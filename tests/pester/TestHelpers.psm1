# Shared by the Pester suites: load the module under test from out/ and build simulated hosts.
Set-StrictMode -Version 3.0

function Import-GalliumModule {
    Import-Module $env:GALLIUM_MODULE_PATH -Force -Global
    if (-not ('Gallium.Pci.Testing.SimulatedHosts' -as [type])) { Add-Type -Path $env:GALLIUM_TESTING_DLL }
}

<#
.SYNOPSIS
    Builds a simulated kernel tree under a new folder of $TestDrive and points the Gallium cmdlets at it
    (through the $GalliumHostContext session variable). Returns the SimulatedKernel.
#>
function New-SimulatedHost {
    param(
        [ValidateSet('Standard', 'IommuOff', 'FirmwareOff', 'Amd')] [string] $Kind = 'Standard',
        [switch] $NotRoot
    )
    $root = Join-Path $TestDrive ([guid]::NewGuid().ToString('n'))
    New-Item -ItemType Directory -Path $root | Out-Null
    $kernel = [Gallium.Pci.Testing.SimulatedHosts]::$Kind($root)
    $global:GalliumHostContext = $kernel.CreateContext(-not $NotRoot)
    $kernel
}

function Remove-SimulatedHost {
    Remove-Variable -Name GalliumHostContext -Scope Global -ErrorAction Ignore
}

Export-ModuleMember -Function Import-GalliumModule, New-SimulatedHost, Remove-SimulatedHost
