# Measurement helpers for bench/Invoke-Bench.ps1: interleaved runs with warm-up and medians, timed child processes,
# and the comparison table.
Set-StrictMode -Version 3.0

function Get-Median([double[]] $Values) {
    if (-not $Values -or $Values.Count -eq 0) { return [double]::NaN }
    $sorted = [double[]]($Values | Sort-Object)
    $n = $sorted.Count
    if ($n % 2) { return $sorted[($n - 1) / 2] }
    ($sorted[$n / 2 - 1] + $sorted[$n / 2]) / 2
}

<#
.SYNOPSIS
    Runs each candidate (a scriptblock that returns its own elapsed milliseconds, or an Invoke-TimedProcess result) Warmup +
    Runs times, taking turns and swapping the order every round so that load on the machine falls on all of them alike;
    returns the medians (and, for child processes, the median CPU time).
#>
function Measure-Interleaved {
    param(
        [Parameter(Mandatory)] [System.Collections.Specialized.OrderedDictionary] $Candidates,
        [int] $Warmup = 2,
        [int] $Runs = 7
    )
    $samples = [ordered]@{}
    $cpu = @{}
    foreach ($k in $Candidates.Keys) {
        $samples[$k] = [System.Collections.Generic.List[double]]::new()
        $cpu[$k] = [System.Collections.Generic.List[double]]::new()
    }
    for ($i = 0; $i -lt $Warmup + $Runs; $i++) {
        $keys = @($Candidates.Keys)
        if ($i % 2) { [array]::Reverse($keys) }
        foreach ($k in $keys) {
            # Collect the previous candidate's garbage now, not inside the next one's timing.
            [GC]::Collect(); [GC]::WaitForPendingFinalizers()
            $out = & $Candidates[$k] | Select-Object -Last 1
            if ($i -lt $Warmup) { continue }
            if ($out.PSObject.Properties['Ms']) {
                $samples[$k].Add([double]$out.Ms)
                if ($out.PSObject.Properties['CpuMs']) { $cpu[$k].Add([double]$out.CpuMs) }
            }
            else { $samples[$k].Add([double]$out) }
        }
    }
    $result = [ordered]@{}
    foreach ($k in $samples.Keys) {
        $s = $samples[$k].ToArray()
        $result[$k] = [pscustomobject]@{
            Median  = Get-Median $s
            Min     = ($s | Measure-Object -Minimum).Minimum
            Max     = ($s | Measure-Object -Maximum).Maximum
            Samples = $s
            CpuMedian = if ($cpu[$k].Count) { Get-Median $cpu[$k].ToArray() } else { [double]::NaN }
            CpuSamples = $cpu[$k].ToArray()
        }
    }
    $result
}

<#
.SYNOPSIS
    Starts a program, reads its output to the end and waits for it; returns the wall-clock milliseconds from start to exit,
    the exit code and the output. $null in -Environment removes a variable from the child's environment.
#>
function Invoke-TimedProcess {
    param(
        [Parameter(Mandatory)] [string] $FilePath,
        [string[]] $ArgumentList = @(),
        [hashtable] $Environment = @{}
    )
    $psi = [System.Diagnostics.ProcessStartInfo]::new($FilePath)
    foreach ($a in $ArgumentList) { $psi.ArgumentList.Add($a) }
    $psi.UseShellExecute = $false
    $psi.RedirectStandardOutput = $true
    $psi.RedirectStandardError = $true
    foreach ($name in $Environment.Keys) {
        if ($null -eq $Environment[$name]) { [void]$psi.Environment.Remove($name) } else { $psi.Environment[$name] = [string]$Environment[$name] }
    }
    $cpu = Get-ChildCpuMilliseconds
    $sw = [System.Diagnostics.Stopwatch]::StartNew()
    $p = [System.Diagnostics.Process]::Start($psi)
    $stdout = $p.StandardOutput.ReadToEndAsync()
    $stderr = $p.StandardError.ReadToEndAsync()
    $p.WaitForExit()
    $sw.Stop()
    [pscustomobject]@{
        Ms       = $sw.Elapsed.TotalMilliseconds
        CpuMs    = (Get-ChildCpuMilliseconds) - $cpu
        ExitCode = $p.ExitCode
        Stdout   = $stdout.Result
        Stderr   = $stderr.Result
    }
}

# User + system CPU time of finished children (NaN until the bench helpers are loaded).
function Get-ChildCpuMilliseconds {
    $type = 'Gallium.Pci.Bench.ChildUsage' -as [type]
    if ($type) { $type::CpuMilliseconds() } else { [double]::NaN }
}

function Format-Ms([double] $Ms) {
    if ([double]::IsNaN($Ms)) { return 'n/a' }
    if ($Ms -ge 10000) { return '{0:N1} s' -f ($Ms / 1000) }
    if ($Ms -ge 100) { return '{0:N0} ms' -f $Ms }
    if ($Ms -ge 10) { return '{0:N1} ms' -f $Ms }
    '{0:N2} ms' -f $Ms
}

<#
.SYNOPSIS
    The comparison table as Markdown (the same text is printed and saved): one row per comparison.
#>
function Format-BenchTable {
    param([Parameter(Mandatory)] [object[]] $Rows)
    $header = '| Comparison | Size | Gallium (median) | Peer (median) | Ratio | Goal | Met |'
    $rule = '|---|---|---|---|---|---|---|'
    $lines = foreach ($r in $Rows) {
        '| {0} | {1} | {2} | {3} | {4} | {5} | {6} |' -f $r.Comparison, $r.Size, $r.Gallium, $r.Peer, $r.Ratio, $r.Goal, $r.Met
    }
    @($header, $rule) + @($lines) -join [Environment]::NewLine
}

<#
.SYNOPSIS
    Starts a private libvirtd (bench/private-libvirtd.sh): its own sockets, domain definitions and state, so the bench's
    thousands of domains never show in the shared qemu:///system. Returns Directory, ProcessId and Uri
    (qemu:///system?socket=...); pass it to Stop-PrivateLibvirtd.
#>
function Start-PrivateLibvirtd {
    $script = Join-Path $PSScriptRoot 'private-libvirtd.sh'
    $line = & bash $script start $PID 2>&1
    if ($LASTEXITCODE -ne 0) { throw "Could not start a private libvirtd: $($line -join ' ')" }
    $dir, $daemon, $uri = ("$($line | Select-Object -Last 1)").Trim() -split ' ', 3
    [pscustomobject]@{ Directory = $dir; ProcessId = [int]$daemon; Uri = $uri }
}

function Stop-PrivateLibvirtd($Daemon) {
    if (-not $Daemon) { return }
    & bash (Join-Path $PSScriptRoot 'private-libvirtd.sh') stop $Daemon.Directory | Out-Host
}

Export-ModuleMember -Function Get-Median, Measure-Interleaved, Invoke-TimedProcess, Format-Ms, Format-BenchTable, Start-PrivateLibvirtd, Stop-PrivateLibvirtd
