<#
.SYNOPSIS
    One process of the kill / Ctrl+C proof (issue 11), run INSIDE the guest by interruption-boot.sh.
.DESCRIPTION
    Part A (-Repair): the previous process was killed mid-change; check the group shows Interrupted, run the next
    command (-Repair Enable or Disable), check it said it repaired the change and the group is whole (-Expect Host or
    Vfio). Part B (-Signal): run -Command on the group and signal this very process right after kernel write -AfterWrite:
    every verbose record passes through ForEach-Object as it is written, so arming at the k-th "write ... > /sys/..."
    record and signalling at the next lands right after write k returned. KILL never returns; INT (pwsh's console host
    turns it into a pipeline stop) ends the command. One "PASS name" / "FAIL name" line per check.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [string] $Address = '0000:03:00.0',
    [string] $Other = '0000:04:00.0',
    [ValidateSet('', 'Enable', 'Disable')] [string] $Repair = '',
    [ValidateSet('', 'Host', 'Vfio')] [string] $Expect = '',
    [switch] $ExpectInterrupted,
    [ValidateSet('', 'Enable', 'Disable')] [string] $Command = '',
    [int] $AfterWrite,
    [ValidateSet('KILL', 'INT')] [string] $Signal = 'KILL',
    [string] $Label = ''
)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
Import-Module $ModulePath
$config = '/etc/gallium'
$group = Split-Path -Leaf (Get-Item "/sys/bus/pci/devices/$Address/iommu_group").LinkTarget
$trace = "$config/pending.d/group-$group"

function Check([string] $Name, [scriptblock] $Test) {
    $ok = try { [bool] (& $Test) } catch { $false }
    "$(if ($ok) { 'PASS' } else { 'FAIL' }) $Label$Name"
}
function Driver([string] $a) { $l = "/sys/bus/pci/devices/$a/driver"; if (Test-Path $l) { Split-Path -Leaf (Get-Item $l).LinkTarget } else { 'none' } }
function Override([string] $a) { (Get-Content "/sys/bus/pci/devices/$a/driver_override" -Raw).Trim() }
function State { "$Address $(Driver $Address)/$(Override $Address), $Other $(Driver $Other)/$(Override $Other), trace=$(Test-Path $trace)" }
function Test-Whole([string] $Kind) {
    $records = (Test-Path "$config/pci.d/$Address") -and (Test-Path "$config/pci.d/$Other")
    if (Test-Path $trace) { return $false }
    if ($Kind -eq 'Host') {
        (Driver $Address) -eq 'e1000e' -and (Driver $Other) -eq 'e1000e' -and (Override $Address) -eq '(null)' -and (Override $Other) -eq '(null)' -and
            -not (Test-Path "$config/pci.d/$Address") -and -not (Test-Path "$config/pci.d/$Other")
    } else {
        (Driver $Address) -eq 'vfio-pci' -and (Driver $Other) -eq 'vfio-pci' -and (Override $Address) -eq 'vfio-pci' -and (Override $Other) -eq 'vfio-pci' -and
            $records -and (Test-Path "/dev/vfio/$group")
    }
}

if ($ExpectInterrupted) {
    "  state: $(State)"
    Check 'the killed change left its unfinished-change record' { Test-Path $trace }
    Check 'Get-GalliumPciDevice shows the group Interrupted' { "$((Get-GalliumPciDevice -Address $Address).PassthroughState)" -eq 'Interrupted' }
}
if ($Repair) {
    $warnings = $null
    & "$Repair-GalliumPciPassthrough" -Address $Address -Confirm:$false -WarningVariable warnings -WarningAction SilentlyContinue
    if ($ExpectInterrupted) { Check "the next command ($Repair) said it repaired the interrupted change" { "$warnings" -match 'was interrupted; returned it to how it was before' } }
}
if ($Expect) { Check "the group is whole ($Expect)" { Test-Whole $Expect } }
if (-not $Command) { exit 0 }

$script:n = 0
$script:armed = $false
& "$Command-GalliumPciPassthrough" -Address $Address -Confirm:$false -Verbose 4>&1 | ForEach-Object {
    if ($script:armed) {
        $script:armed = $false
        if ($Signal -eq 'KILL') { [Diagnostics.Process]::GetCurrentProcess().Kill() } else { & kill -INT $PID }
    }
    if ("$_" -match '^write .* > /sys/') { $script:n++; if ($script:n -eq $AfterWrite) { $script:armed = $true } }
}
'the command ran to its end'
