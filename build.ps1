#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Builds, tests, documents, benchmarks and packages Gallium.PciPassthrough.
.DESCRIPTION
    Build    compiles the solution and lays the module out in out/Gallium.PciPassthrough (manifest, assemblies (Release:
             precompiled ReadyToRun for the building pwsh's runtime, tools/ReadyToRun),
             format file, MAML help made from docs/en-US).
    Test     Build, prepares the host (apt packages, a libvirtd) when it can, then runs xUnit, the Pester suites in a
             child pwsh against out/, and the real-kernel suite inside the QEMU guest; ends with "N passed, N failed".
    Demo     Build, then walks the product guide (see README).
    Docs     Only turns docs/en-US markdown into MAML help in out/.
    Bench    Runs the benchmarks in bench/ and prints their comparison table.
    Package  Build, then packs out/Gallium.PciPassthrough as out/package/Gallium.PciPassthrough.<version>.nupkg
             (PSResourceGet's Compress-PSResource): Publish-PSResource uploads it, Install-PSResource installs it.
.EXAMPLE
    dotnet tool restore && dotnet pwsh ./build.ps1 -Task Test
#>
[CmdletBinding()]
param(
    [ValidateSet('Build', 'Test', 'Demo', 'Docs', 'Bench', 'Package')]
    [string] $Task = 'Build',
    [ValidateSet('Debug', 'Release')]
    [string] $Configuration = 'Release',
    # Skip the QEMU real-kernel suite (it needs a few minutes of TCG emulation).
    [switch] $SkipGuest,
    # Skip host preparation (apt packages, libvirtd start) even when running as root.
    [switch] $SkipPrepare
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
$Root = $PSScriptRoot
$Out = Join-Path $Root 'out'
$ModuleOut = Join-Path $Out 'Gallium.PciPassthrough'
$ResultsDir = Join-Path $Out 'test-results'
$env:DOTNET_CLI_TELEMETRY_OPTOUT = '1'
$env:DOTNET_NOLOGO = '1'

function Invoke-Native {
    param([string] $File, [string[]] $Arguments, [switch] $AllowFailure)
    Write-Verbose "$File $($Arguments -join ' ')"
    & $File @Arguments
    if ($LASTEXITCODE -ne 0 -and -not $AllowFailure) { throw "$File $($Arguments -join ' ') exited with $LASTEXITCODE" }
}

function Get-ModuleVersion {
    (Import-PowerShellDataFile (Join-Path $Root 'Gallium.PciPassthrough.psd1')).ModuleVersion
}

function Invoke-Docs {
    $converter = Join-Path $Root 'tools/ConvertTo-MamlHelp.ps1'
    $helpOut = Join-Path $ModuleOut 'en-US'
    New-Item -ItemType Directory -Force -Path $helpOut | Out-Null
    & $converter -DocsPath (Join-Path $Root 'docs/en-US') -OutputPath $helpOut -ModuleName 'Gallium.PciPassthrough'
}

function Invoke-Build {
    Invoke-Native dotnet @('build', (Join-Path $Root 'Gallium.Pci.sln'), '-c', $Configuration, '--nologo', '-v', 'q', '-clp:NoSummary') | Out-Host
    if (Test-Path $ModuleOut) { Remove-Item -Recurse -Force $ModuleOut }
    New-Item -ItemType Directory -Force -Path $ModuleOut | Out-Null
    $bin = Join-Path $Root "src/Gallium.PciPassthrough/bin/$Configuration/net8.0"
    foreach ($f in 'Gallium.PciPassthrough.dll', 'Gallium.PciPassthrough.pdb', 'Gallium.Pci.dll', 'Gallium.Pci.pdb', 'Gallium.PciPassthrough.format.ps1xml',
               'Gallium.PciPassthrough.types.ps1xml', 'Gallium.Pci.Testing.dll', 'Gallium.Pci.Testing.pdb') {
        Copy-Item (Join-Path $bin $f) $ModuleOut
    }
    if ($Configuration -eq 'Release') { Copy-ReadyToRunImage }
    Copy-Item (Join-Path $Root 'Gallium.PciPassthrough.psd1'), (Join-Path $Root 'LICENSE') $ModuleOut
    Invoke-Docs
    Write-Host "Module laid out in $ModuleOut (version $(Get-ModuleVersion))"
}

# The two assemblies precompiled (ReadyToRun) for the runtime and CPU of the pwsh running this build (tools/ReadyToRun):
# a fresh pwsh then runs their native code instead of JIT-compiling them on the first call. They keep their IL, so the
# module still runs (JIT-compiled, as before) on any other runtime or CPU.
function Copy-ReadyToRunImage {
    $runtime = [Environment]::Version
    $publish = Join-Path $Root 'tools/ReadyToRun/bin/publish'
    Invoke-Native dotnet @('publish', (Join-Path $Root 'tools/ReadyToRun/ReadyToRun.csproj'), '-c', $Configuration, '-o', $publish, '--nologo', '-v', 'q',
        '-clp:NoSummary', "-p:ReadyToRunTargetFramework=net$($runtime.Major).$($runtime.Minor)",
        "-p:ReadyToRunRuntimeIdentifier=$([System.Runtime.InteropServices.RuntimeInformation]::RuntimeIdentifier)", "-p:PowerShellHome=$PSHOME") | Out-Host
    foreach ($f in 'Gallium.PciPassthrough.dll', 'Gallium.Pci.dll') { Copy-Item (Join-Path $publish $f) $ModuleOut -Force }
}

function Get-TrxCounts([string] $Path) {
    [xml] $trx = Get-Content -Raw $Path
    $c = $trx.TestRun.ResultSummary.Counters
    [pscustomobject]@{ Passed = [int]$c.passed; Failed = [int]$c.failed + [int]$c.error + [int]$c.timeout + [int]$c.aborted; Skipped = [int]$c.notExecuted }
}

# A child process prints one marker line with its counts; the line survives the QEMU serial console too.
function Get-MarkerCounts([string[]] $Lines, [string] $Suite) {
    # The serial console of the guest pads and colours lines: find the marker anywhere in a line, without escape codes.
    $match = $Lines | ForEach-Object { [regex]::Match(($_ -replace '\x1b\[[0-9;?]*[a-zA-Z]', ''), 'GALLIUM-PESTER-RESULT (\{[^}]*\})') } |
        Where-Object Success | Select-Object -Last 1
    if (-not $match) {
        Write-Host "$Suite produced no result line: counted as 1 failure."
        return [pscustomobject]@{ Passed = 0; Failed = 1; Skipped = 0 }
    }
    $r = $match.Groups[1].Value | ConvertFrom-Json
    [pscustomobject]@{ Passed = [int]$r.Passed; Failed = [int]$r.Failed; Skipped = [int]$r.Skipped }
}

function Invoke-PesterSuite([string] $Suite, [string[]] $Command) {
    Write-Host "`n=== $Suite ==="
    $lines = [System.Collections.Generic.List[string]]::new()
    & $Command[0] @($Command | Select-Object -Skip 1) 2>&1 | ForEach-Object { $s = "$_"; Write-Host $s; $lines.Add($s) }
    $exit = $LASTEXITCODE
    $counts = Get-MarkerCounts $lines $Suite
    if ($exit -ne 0 -and $counts.Failed -eq 0) {
        Write-Host "$Suite exited with $exit without reporting a failed test: counted as 1 failure."
        $counts.Failed = 1
    }
    $counts
}

function Invoke-Test {
    Invoke-Build
    Invoke-Package     # the package tests and the example user suite install it
    Invoke-Prepare
    New-Item -ItemType Directory -Force -Path $ResultsDir | Out-Null
    $totals = [ordered]@{}

    Write-Host "`n=== xUnit ==="
    $trx = Join-Path $ResultsDir 'xunit.trx'
    Remove-Item $trx -ErrorAction Ignore
    Invoke-Native dotnet @('test', (Join-Path $Root 'tests/Gallium.Pci.Tests'), '-c', $Configuration, '--no-build', '--nologo',
        '--logger', 'console;verbosity=normal', '--logger', "trx;LogFileName=$trx", '--results-directory', $ResultsDir) -AllowFailure | Out-Host
    $totals['xUnit'] = if (Test-Path $trx) { Get-TrxCounts $trx } else { [pscustomobject]@{ Passed = 0; Failed = 1; Skipped = 0 } }

    $pwsh = @('dotnet', 'pwsh', '-NoProfile', '-NonInteractive', '-File', (Join-Path $Root 'tests/pester/Invoke-GalliumPester.ps1'),
        '-ModulePath', $ModuleOut, '-Configuration', $Configuration)
    $totals['Pester'] = Invoke-PesterSuite 'Pester (this host: simulated kernel, real libvirtd)' ($pwsh + @('-ExcludeTag', 'RealKernel,RealKernelNoIommu,RealKernelVga'))

    if ($SkipGuest) {
        Write-Host "`nThe QEMU suites were skipped (-SkipGuest): the RealKernel tests and the large-BAR boot proof did not run."
    } else {
        $guest = @('bash', (Join-Path $Root 'tests/guest/run-guest.sh'), '--timeout', '1500', '--') + $pwsh + @('-Tag', 'RealKernel')
        $totals['Guest'] = Invoke-PesterSuite 'Pester RealKernel (inside the QEMU guest: Debian kernel, vIOMMU)' $guest
        $noIommu = @('bash', (Join-Path $Root 'tests/guest/run-guest.sh'), '--no-iommu', '--timeout', '600', '--') + $pwsh + @('-Tag', 'RealKernelNoIommu')
        $totals['NoIommu'] = Invoke-PesterSuite 'Pester RealKernelNoIommu (inside the QEMU guest booted with intel_iommu=off)' $noIommu
        # Issue 14's framebuffer proof: a VGA display whose BAR the kernel's vesafb holds (the guest booted with vga=).
        $vga = @('bash', (Join-Path $Root 'tests/guest/run-guest.sh'), '--vga', '--timeout', '900', '--') + $pwsh + @('-Tag', 'RealKernelVga')
        $totals['Vga'] = Invoke-PesterSuite 'Pester RealKernelVga (inside the QEMU guest with a VGA display and a firmware framebuffer)' $vga
        # Issue 7's proof of persistence: three guest boots against one disk (Enable survives a reboot, Disable too).
        $totals['Reboot'] = Invoke-PesterSuite 'Reboot persistence (three guest boots, one disk)' @('bash', (Join-Path $Root 'tests/guest/reboot-test.sh'), '--module', $ModuleOut)
        # Issue 13's proof: real udev coldplug and a real initramfs-tools stage never let e1000e probe an enabled device.
        $totals['BootBind'] = Invoke-PesterSuite 'Boot-time binding (four guest boots: udev coldplug, dracut and initramfs-tools stages)' @('bash', (Join-Path $Root 'tests/guest/boot-binding-test.sh'), '--module', $ModuleOut)
        # Issue 11's proofs: SIGKILL after each kernel write and Ctrl+C mid-change, then a power cut and two reboots.
        $totals['Interrupt'] = Invoke-PesterSuite 'Interruption (kills, Ctrl+C, a power cut) on the real kernel' @('bash', (Join-Path $Root 'tests/guest/interruption-test.sh'), '--module', $ModuleOut)
        # Issue 6's proof: the same large BAR unassigned without the fix and assigned with it, booted under OVMF by libvirt.
        $totals['LargeBar'] = Invoke-PesterSuite 'Large-BAR boot proof (OVMF guests under a real libvirtd)' @('bash', (Join-Path $Root 'tests/mmio/boot-proof.sh'))
    }

    Write-Host "`n=== Summary ==="
    foreach ($k in $totals.Keys) { Write-Host ("{0,-9} {1} passed, {2} failed, {3} skipped" -f $k, $totals[$k].Passed, $totals[$k].Failed, $totals[$k].Skipped) }
    $p = ($totals.Values | Measure-Object -Sum Passed).Sum
    $f = ($totals.Values | Measure-Object -Sum Failed).Sum
    $s = ($totals.Values | Measure-Object -Sum Skipped).Sum
    if ($s -gt 0) { Write-Host "$s skipped (each skip printed its reason above)" }
    Write-Host "$p passed, $f failed"
    if ($f -gt 0) { exit 1 }
}

function Invoke-Prepare {
    if (-not $SkipPrepare -and $IsLinux -and (& id -u) -eq '0') {
        Invoke-Native bash @((Join-Path $Root 'tests/prepare-host.sh')) | Out-Host
    }
}

function Invoke-Demo {
    Invoke-Build
    Invoke-Prepare     # QEMU, OVMF, libvirt: the demo boots the hypervisor in a box
    & dotnet pwsh -NoProfile -File (Join-Path $Root 'tools/Demo.ps1') -ModulePath $ModuleOut
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
}

function Invoke-Bench {
    Invoke-Build
    & dotnet pwsh -NoProfile -File (Join-Path $Root 'bench/Invoke-Bench.ps1') -ModulePath $ModuleOut -Configuration $Configuration
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
}

# The module folder as a NuGet package: what Publish-PSResource uploads to a gallery and what Install-PSResource installs
# from any repository, a folder included (README "Install"). PSResourceGet ships with pwsh 7.4 and later.
function Invoke-Package {
    $packageDir = Join-Path $Out 'package'
    if (Test-Path $packageDir) { Remove-Item -Recurse -Force $packageDir }
    New-Item -ItemType Directory -Path $packageDir | Out-Null
    Import-Module Microsoft.PowerShell.PSResourceGet
    $nupkg = Compress-PSResource -Path $ModuleOut -DestinationPath $packageDir -PassThru
    Write-Host "Package: $nupkg"
}

switch ($Task) {
    'Build' { Invoke-Build }
    'Test' { Invoke-Test }
    'Demo' { Invoke-Demo }
    'Docs' { Invoke-Docs }
    'Bench' { Invoke-Bench }
    'Package' { Invoke-Build; Invoke-Package }
}
