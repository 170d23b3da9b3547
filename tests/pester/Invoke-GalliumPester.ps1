<#
.SYNOPSIS
    Runs the Pester suites against the built module in out/ (this is the child pwsh build.ps1 -Task Test starts).
.DESCRIPTION
    Imports Pester from the NuGet package restored by tools/Tools.proj, sets the test guard (no test may write to this
    machine's real /sys), and ends with one machine-readable line: GALLIUM-PESTER-RESULT {"Passed":..,"Failed":..,"Skipped":..}.
#>
[CmdletBinding(PositionalBinding = $false)]   # -File hands "-ExcludeTag A B" over as tokens: B must not bind by position
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [string] $Configuration = 'Release',
    [string[]] $Tag,
    [string[]] $ExcludeTag,
    [string[]] $Path = @($PSScriptRoot)
)
$ErrorActionPreference = 'Stop'
$repo = Resolve-Path (Join-Path $PSScriptRoot '../..')

function Find-Pester {
    if ($env:GALLIUM_PESTER_MODULE -and (Test-Path $env:GALLIUM_PESTER_MODULE)) { return $env:GALLIUM_PESTER_MODULE }
    $cache = if ($env:NUGET_PACKAGES) { $env:NUGET_PACKAGES } else { Join-Path $HOME '.nuget/packages' }
    $psd1 = Join-Path $cache 'pester/6.2.0/tools/Pester.psd1'
    if (-not (Test-Path $psd1)) {
        & dotnet restore (Join-Path $repo 'tools/Tools.proj') --nologo -v q | Out-Host
    }
    if (-not (Test-Path $psd1)) { throw "Pester 6.2.0 not found at $psd1 (dotnet restore tools/Tools.proj restores it)." }
    $psd1
}

$env:GALLIUM_TEST_GUARD = '1'
$ProgressPreference = 'SilentlyContinue'   # cmdlets still call WriteProgress; the bars only clutter a log
$env:GALLIUM_MODULE_PATH = (Resolve-Path $ModulePath).Path
$env:GALLIUM_TESTING_DLL = Join-Path $env:GALLIUM_MODULE_PATH 'Gallium.Pci.Testing.dll'   # the simulated kernel the module ships
$env:GALLIUM_REPO = $repo.Path

Import-Module (Find-Pester) -Force
$config = New-PesterConfiguration
$config.Run.Path = @($Path | ForEach-Object { $_ -split ',' } | Where-Object { $_ })   # -File passes a, b as one string
$config.Run.PassThru = $true
$config.Output.Verbosity = 'Detailed'
if ($Tag) { $config.Filter.Tag = @($Tag | ForEach-Object { $_ -split ',' } | Where-Object { $_ }) }
if ($ExcludeTag) { $config.Filter.ExcludeTag = @($ExcludeTag | ForEach-Object { $_ -split ',' } | Where-Object { $_ }) }
$result = Invoke-Pester -Configuration $config

# A run that produced no result, or ran nothing at all, is a failure, never a silent pass.
if ($null -eq $result -or ($result.TotalCount -eq 0 -and $result.FailedContainersCount -eq 0)) {
    Write-Host 'Pester ran no test (no result, or no container matched): counted as 1 failure.'
    Write-Host ('GALLIUM-PESTER-RESULT ' + (@{ Passed = 0; Failed = 1; Skipped = 0 } | ConvertTo-Json -Compress))
    exit 1
}
# A container or block that failed outside an It (BeforeAll, discovery) counts as a failure too.
$failed = $result.FailedCount + $result.FailedBlocksCount + $result.FailedContainersCount
$summary = [ordered]@{ Passed = $result.PassedCount; Failed = $failed; Skipped = $result.SkippedCount }
Write-Host ("GALLIUM-PESTER-RESULT " + ($summary | ConvertTo-Json -Compress))
exit ([int]($failed -gt 0))
