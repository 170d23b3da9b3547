<#
.SYNOPSIS
    A separate pwsh process that runs VM cmdlets on command, for the race tests (VmRaces.Tests.ps1): it reads one JSON
    request per line on stdin and answers one JSON line on stdout, so two workers can be told to act at the same moment.
.DESCRIPTION
    The host is a simulated one, reached the way an admin points the module at a captured tree: GALLIUM_SYSFS_ROOT,
    GALLIUM_PROC_ROOT, GALLIUM_DEV_ROOT and GALLIUM_STATE_ROOT (so every worker and the test share one host lock and one
    machine id). Add and Remove only read sysfs; the test guard forbids any write to the real /sys.
    Request:  {"Verb":"Add"|"Remove","VmName":"...","Address":"..."}      Reply: {"Ok":true|false,"Errors":["Id: message", ...]}
#>
param([Parameter(Mandatory)] [string] $ModulePath, [Parameter(Mandatory)] [string] $SimRoot)
$ErrorActionPreference = 'Stop'
$env:GALLIUM_TEST_GUARD = '1'
$env:GALLIUM_SYSFS_ROOT = "$SimRoot/sys"
$env:GALLIUM_PROC_ROOT = "$SimRoot/proc"
$env:GALLIUM_DEV_ROOT = "$SimRoot/dev"
$env:GALLIUM_STATE_ROOT = "$SimRoot/state"
Import-Module $ModulePath
[Console]::Out.WriteLine('ready')
[Console]::Out.Flush()
while ($null -ne ($line = [Console]::In.ReadLine())) {
    $request = $line | ConvertFrom-Json
    $errs = @()
    try {
        switch ($request.Verb) {
            'Add' { Add-GalliumVmPciDevice -VmName $request.VmName -Address $request.Address -ErrorAction SilentlyContinue -ErrorVariable errs }
            'Remove' { Remove-GalliumVmPciDevice -VmName $request.VmName -Address $request.Address -Force -ErrorAction SilentlyContinue -ErrorVariable errs }
            default { throw "unknown verb $($request.Verb)" }
        }
    } catch { $errs += $_ }
    $reply = [ordered]@{ Ok = ($errs.Count -eq 0); Errors = @($errs | ForEach-Object { "$($_.FullyQualifiedErrorId.Split(',')[0]): $_" }) }
    [Console]::Out.WriteLine(($reply | ConvertTo-Json -Compress))
    [Console]::Out.Flush()
}
