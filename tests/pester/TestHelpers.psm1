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

Export-ModuleMember -Function Import-GalliumModule, New-SimulatedHost, Remove-SimulatedHost
