<#
.SYNOPSIS
    Measures Gallium.PciPassthrough against the tools admins use now, in the same run, and prints a comparison table.
.DESCRIPTION
    Inventory    Get-GalliumPciDevice over simulated kernel trees of -Functions functions (production sysfs reader, pointed at
                 the tree with GALLIUM_SYSFS_ROOT) against lspci -D -nn -k -vmm -A linux-sysfs on the same tree.
    Assignments  Get-GalliumVmPciDevice over -Domains diskless domains defined in the real libvirtd (qemu:///system), each
                 with -HostdevsPerDomain hostdevs, against a `virsh dumpxml` loop over the same domains.
    Startup      pwsh -c 'Import-Module ...; Get-GalliumPciDevice | Out-Null' against a bare pwsh -c 'exit'.
    GroupChange  Enable-/Disable-GalliumPciPassthrough of a 16-function IOMMU group on the simulated kernel: sysfs reads and
                 writes per function, and reads that repeated a path no write had changed.
    Every timing is the median of interleaved runs after warm-up runs. The table (Markdown) and every sample are also saved
    in -ResultsDirectory (results.md, results.json). Bench domains are named gbench-<random>- and undefined afterwards,
    also when the run fails; domains a killed run left behind are removed by the next run.
.EXAMPLE
    dotnet pwsh ./build.ps1 -Task Bench
.EXAMPLE
    dotnet pwsh -NoProfile -File bench/Invoke-Bench.ps1 -ModulePath out/Gallium.PciPassthrough -Benchmark Inventory -Functions 4096
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [ValidateSet('Debug', 'Release')] [string] $Configuration = 'Release',
    # Lists may be given as one comma-separated string (pwsh -File passes "a,b" as one argument).
    [string[]] $Benchmark = @('Inventory', 'Assignments', 'Startup', 'GroupChange'),
    [string[]] $Functions = @('256', '1024', '4096'),
    [string[]] $Domains = @('100', '1000'),
    [ValidateRange(1, 8)] [int] $HostdevsPerDomain = 3,
    [string] $ResultsDirectory
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
$Benchmarks = [string[]]@($Benchmark -split ',' | ForEach-Object Trim | Where-Object { $_ })
$FunctionCounts = [int[]]@($Functions -split ',' | Where-Object { $_ })
$DomainCounts = [int[]]@($Domains -split ',' | Where-Object { $_ })
foreach ($b in $Benchmarks) { if ($b -notin 'Inventory', 'Assignments', 'Startup', 'GroupChange') { throw "Unknown benchmark '$b' (Inventory, Assignments, Startup, GroupChange)." } }
foreach ($n in $FunctionCounts) { if ($n -lt 2 -or $n -gt 15873) { throw "-Functions: 2 to 15873, not $n." } }
foreach ($n in $DomainCounts) { if ($n -lt 1 -or $n -gt 5000) { throw "-Domains: 1 to 5000, not $n." } }
$repo = Split-Path -Parent $PSScriptRoot
$ModulePath = (Resolve-Path $ModulePath).Path
if (-not $ResultsDirectory) { $ResultsDirectory = Join-Path $repo 'out/bench' }
$started = [DateTime]::UtcNow
Import-Module (Join-Path $PSScriptRoot 'BenchTools.psm1') -Force

# ---- set-up ------------------------------------------------------------------------------------------------------------

Write-Host "Building the bench helpers (bench/Gallium.Pci.Bench, $Configuration)..."
& dotnet build (Join-Path $PSScriptRoot 'Gallium.Pci.Bench/Gallium.Pci.Bench.csproj') -c $Configuration --nologo -v q -clp:NoSummary | Out-Host
if ($LASTEXITCODE -ne 0) { throw "dotnet build of bench/Gallium.Pci.Bench failed ($LASTEXITCODE)." }
# The module first, so the helpers bind to the module's own Gallium.Pci assembly.
Import-Module $ModulePath -Force
$helpers = Join-Path $PSScriptRoot "Gallium.Pci.Bench/bin/$Configuration/net8.0"
Add-Type -Path (Join-Path $helpers 'Gallium.Pci.Testing.dll')
Add-Type -Path (Join-Path $helpers 'Gallium.Pci.Bench.dll')

$SimRoots = 'GALLIUM_SYSFS_ROOT', 'GALLIUM_PROC_ROOT', 'GALLIUM_DEV_ROOT', 'GALLIUM_STATE_ROOT'
$savedEnv = @{}
foreach ($v in $SimRoots) { $savedEnv[$v] = [Environment]::GetEnvironmentVariable($v) }
Remove-Variable -Name GalliumHostContext -Scope Global -ErrorAction Ignore

function Use-SimulatedTree($kernel) {
    $env:GALLIUM_SYSFS_ROOT = $kernel.SysfsRoot
    $env:GALLIUM_PROC_ROOT = $kernel.ProcRoot
    $env:GALLIUM_DEV_ROOT = $kernel.DevRoot
    $env:GALLIUM_STATE_ROOT = $kernel.StateRoot
}

function Restore-Environment {
    foreach ($v in $SimRoots) { [Environment]::SetEnvironmentVariable($v, $savedEnv[$v]) }
    Remove-Variable -Name GalliumHostContext -Scope Global -ErrorAction Ignore
}

function Get-FirstLine([string] $File, [string[]] $Arguments) {
    try { (& $File @Arguments 2>&1 | Select-Object -First 1) -as [string] } catch { 'not installed' }
}

$LibvirtUri = [Gallium.Pci.Libvirt.LibvirtUri]::Resolve($null)
$Peers = [ordered]@{
    lspci = (Get-FirstLine 'lspci' @('--version')) -replace '^lspci version ', 'lspci (pciutils) '
    virsh = "virsh $(Get-FirstLine 'virsh' @('--version'))"
    pwsh  = "PowerShell $($PSVersionTable.PSVersion) on $([System.Runtime.InteropServices.RuntimeInformation]::FrameworkDescription)"
}
function Get-LoadAverage { try { ((Get-Content /proc/loadavg -Raw) -split ' ')[0..2] -join ' ' } catch { 'n/a' } }
$Machine = [ordered]@{
    Cpus        = [Environment]::ProcessorCount
    CpuModel    = $(try { ((Select-String -Path /proc/cpuinfo -Pattern '^model name\s*:\s*(.*)$' | Select-Object -First 1).Matches[0].Groups[1].Value) } catch { 'unknown' })
    Kernel      = $(try { (Get-Content /proc/sys/kernel/osrelease -Raw).Trim() } catch { 'unknown' })
    LoadAtStart = Get-LoadAverage
}

$Rows = [System.Collections.Generic.List[object]]::new()
$Details = [System.Collections.Generic.List[string]]::new()
$Raw = [ordered]@{}

function Add-Row([string] $Comparison, [string] $Size, [string] $Gallium, [string] $Peer, [string] $Ratio, [string] $Goal, [string] $Met) {
    $Rows.Add([pscustomobject]@{ Comparison = $Comparison; Size = $Size; Gallium = $Gallium; Peer = $Peer; Ratio = $Ratio; Goal = $Goal; Met = $Met })
}

function Format-Spread($m) {
    $cpu = if ([double]::IsNaN($m.CpuMedian)) { '' } else { ", CPU time $(Format-Ms $m.CpuMedian)" }
    '{0} (min {1}, max {2}, n={3}{4})' -f (Format-Ms $m.Median), (Format-Ms $m.Min), (Format-Ms $m.Max), $m.Samples.Count, $cpu
}

# ---- Inventory: Get-GalliumPciDevice against lspci on the same tree ----------------------------------------------------

function Invoke-InventoryBench {
    Write-Host "`n=== Inventory: Get-GalliumPciDevice vs lspci over $($FunctionCounts -join ', ') functions ==="
    $points = [System.Collections.Generic.List[object]]::new()
    foreach ($n in ($FunctionCounts | Sort-Object)) {
        $kernel = [Gallium.Pci.Testing.SimulatedHosts]::Large([Gallium.Pci.Testing.SimulatedHosts]::CreateTempRoot(), $n)
        try {
            Use-SimulatedTree $kernel
            $script:LspciArgs = @('-D', '-nn', '-k', '-vmm', '-A', 'linux-sysfs', '-O', "sysfs.path=$($kernel.SysfsRoot)/bus/pci")
            $script:CoreHost = [Gallium.Pci.Host.HostContext]::FromEnvironment()
            $script:CoreNames = [Gallium.Pci.Host.PciIds]::new($script:CoreHost.PciIdsPath)

            # Both must see the whole tree, or the timings compare different work.
            $mine = @(Get-GalliumPciDevice)
            $theirs = Invoke-TimedProcess lspci $script:LspciArgs
            $slots = [regex]::Matches($theirs.Stdout, '(?m)^Slot:').Count
            if ($theirs.ExitCode -ne 0) { throw "lspci exited $($theirs.ExitCode): $($theirs.Stderr)" }
            if ($mine.Count -ne $n -or $slots -ne $n) { throw "Tree of $n functions: Get-GalliumPciDevice listed $($mine.Count), lspci $slots." }
            $withBars = @($mine | Where-Object { $_.Bars.Count -gt 0 }).Count
            $withGroup = @($mine | Where-Object { $null -ne $_.IommuGroup }).Count
            $named = @($mine | Where-Object { $_.VendorName -notlike 'Vendor *' -and $_.DeviceName -notlike 'Device *' }).Count
            # What one inventory asks the kernel seam, counted on the same tree: each path at most once, one listing per function.
            $recorder = [Gallium.Pci.Bench.RecordingSysfs]::new($kernel)
            $ctx = $kernel.CreateContext()
            $counted = [Gallium.Pci.Host.HostContext]@{
                Sysfs = $recorder; Procfs = $ctx.Procfs; Devfs = $ctx.Devfs; Modules = $ctx.Modules; Identity = $ctx.Identity; PciIdsPath = $ctx.PciIdsPath
            }
            $null = [Gallium.Pci.Host.DeviceInventory]::new($counted, $script:CoreNames).ReadAll()
            $calls = $recorder.Calls
            $lists = @($calls | Where-Object Kind -EQ 'List').Count
            $repeats = $calls.Count - @($calls | ForEach-Object { "$($_.Kind) $($_.Path)" } | Sort-Object -Unique).Count

            $m = Measure-Interleaved -Warmup 2 -Runs 9 -Candidates ([ordered]@{
                Gallium = { $sw = [Diagnostics.Stopwatch]::StartNew(); $script:Devices = Get-GalliumPciDevice; $sw.Elapsed.TotalMilliseconds }
                lspci   = { Invoke-TimedProcess lspci $script:LspciArgs }
                # The core alone (sysfs + names, no cmdlet, no libvirt), to show where the cmdlet's time goes.
                Core    = { $sw = [Diagnostics.Stopwatch]::StartNew(); $null = [Gallium.Pci.Host.DeviceInventory]::new($script:CoreHost, $script:CoreNames).ReadAll(); $sw.Elapsed.TotalMilliseconds }
            })
            $g = $m['Gallium'].Median; $l = $m['lspci'].Median
            $points.Add([pscustomobject]@{ Functions = $n; Gallium = $g; Lspci = $l; Core = $m['Core'].Median })
            $Raw["Inventory$n"] = $m
            $goal = if ($n -ge 4096) { 'faster than lspci' } else { '' }
            $met = if ($n -ge 4096) { if ($g -lt $l) { 'yes' } else { 'NO' } } else { '' }
            Add-Row 'Inventory: Get-GalliumPciDevice vs lspci' "$n functions" (Format-Ms $g) (Format-Ms $l) ('{0:N2}x faster' -f ($l / $g)) $goal $met
            $Details.Add("Inventory, $n functions: Get-GalliumPciDevice $(Format-Spread $m['Gallium']); lspci $(Format-Spread $m['lspci']); " +
                "core DeviceInventory.ReadAll alone $(Format-Spread $m['Core']). Both listed $n functions; $withGroup with an IOMMU group, " +
                "$withBars with BARs, $named named from pci.ids. The module asked sysfs $($calls.Count) times ($('{0:N1}' -f ($calls.Count / $n)) per function: " +
                "$lists directory listings, $($calls.Count - $lists) reads of the files they showed); paths asked twice: $repeats.")
        }
        finally {
            Restore-Environment
            $kernel.DeleteTree()
        }
    }

    if ($points.Count -ge 2) {
        $b = $points[$points.Count - 2]; $c = $points[$points.Count - 1]
        $per = ($points | ForEach-Object { '{0:N0}' -f (1000 * $_.Gallium / $_.Functions) }) -join ' / '
        $perL = ($points | ForEach-Object { '{0:N0}' -f (1000 * $_.Lspci / $_.Functions) }) -join ' / '
        # Linear: the cost per function does not grow with the tree (the smallest tree is left out of the test: fixed costs
        # such as the pipeline and libvirt weigh most there). 1.25 leaves room for the noise of a shared machine.
        $growth = ($c.Gallium / $c.Functions) / ($b.Gallium / $b.Functions)
        Add-Row 'Inventory: cost per function (us)' (($points | ForEach-Object Functions) -join ' / ') $per $perL `
            ('{0:N2}x per function from {1} to {2}' -f $growth, $b.Functions, $c.Functions) 'linear in functions (<= 1.25x)' $(if ($growth -le 1.25) { 'yes' } else { 'NO' })
    }

    # What the Assigned annotation costs: a read-only connection and one ListAllDomains pass, whatever the tree's size.
    $script:LibvirtDomainCount = 0
    try {
        $m = Measure-Interleaved -Warmup 2 -Runs 7 -Candidates ([ordered]@{
            Libvirt = {
                $sw = [Diagnostics.Stopwatch]::StartNew()
                $c = [Gallium.Pci.Libvirt.LibvirtConnection]::Open($null, $true)
                try { $d = $c.ListDomains(); $null = [Gallium.Pci.Libvirt.AssignmentIndex]::FromDomains($d); $script:LibvirtDomainCount = $d.Count }
                finally { $c.Dispose() }
                $sw.Elapsed.TotalMilliseconds
            }
        })
        $Raw['InventoryLibvirt'] = $m
        Add-Row 'Inventory: libvirt part of Get-GalliumPciDevice' "$($script:LibvirtDomainCount) domains" (Format-Ms $m['Libvirt'].Median) '-' 'included in Get-GalliumPciDevice' 'measured separately' 'n/a'
        $Details.Add("Inventory, libvirt part (read-only connect to $LibvirtUri, one ListAllDomains pass over $($script:LibvirtDomainCount) domains, index): $(Format-Spread $m['Libvirt']).")
    }
    catch {
        $Details.Add("Inventory, libvirt part: not measured ($($_.Exception.Message)).")
    }
}

# ---- Assignments: Get-GalliumVmPciDevice against a virsh dumpxml loop -------------------------------------------------

function New-BenchDomainXml([string] $Name, [string[]] $HostAddresses) {
    $hostdevs = foreach ($bdf in $HostAddresses) {
        $a = [Gallium.Pci.PciAddress]::Parse($bdf)
        "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x{0:x4}' bus='0x{1:x2}' slot='0x{2:x2}' function='0x{3:x}'/></source></hostdev>" -f $a.Domain, $a.Bus, $a.Device, $a.Function
    }
    "<domain type='qemu'><name>$Name</name><description>gallium-bench pid=$PID</description><memory unit='MiB'>64</memory><vcpu>1</vcpu>" +
    "<os><type arch='x86_64' machine='q35'>hvm</type></os><devices><emulator>/usr/bin/qemu-system-x86_64</emulator>$($hostdevs -join '')</devices></domain>"
}

# Domains of an earlier bench run that was killed before its clean-up: its process is gone.
function Remove-StaleBenchDomain($connection) {
    foreach ($d in $connection.ListDomains()) {
        if ($d.Name -notmatch '^gbench-[0-9a-f]{8}-\d+$' -or $d.Xml -notmatch '<description>gallium-bench pid=(\d+)</description>') { continue }
        if (Get-Process -Id ([int]$Matches[1]) -ErrorAction Ignore) { continue }
        if ($d.State -ne [Gallium.Pci.VmState]::ShutOff) { continue }
        $connection.UndefineDomain($d.Name)
        Write-Host "Removed $($d.Name), left by an earlier bench run."
    }
}

function Invoke-AssignmentsBench {
    Write-Host "`n=== Assignments: Get-GalliumVmPciDevice vs a virsh dumpxml loop over $($DomainCounts -join ', ') domains ==="
    # Hostdevs point at VFs of a simulated host, so the MMIO sizing reads real BARs as on a real hypervisor.
    $kernel = [Gallium.Pci.Testing.SimulatedHosts]::Large([Gallium.Pci.Testing.SimulatedHosts]::CreateTempRoot(), 1024)
    $connection = $null
    $prefix = 'gbench-{0}-' -f [guid]::NewGuid().ToString('n').Substring(0, 8)
    try {
        Use-SimulatedTree $kernel
        $vfs = @($kernel.DeviceAddresses | Where-Object { $kernel.PhysicalFunctionOf($_) })
        $connection = [Gallium.Pci.Libvirt.LibvirtConnection]::Open($LibvirtUri, $false)
        Remove-StaleBenchDomain $connection
        $script:VirshLoop = @('-c', ('uri={0}; n=0; for d in $(virsh -c "$uri" list --all --name); do virsh -c "$uri" dumpxml "$d" >/dev/null && n=$((n+1)); done; echo "$n"' -f $LibvirtUri))
        $defined = 0
        foreach ($target in ($DomainCounts | Sort-Object)) {
            $sw = [Diagnostics.Stopwatch]::StartNew()
            while ($defined -lt $target) {
                $hosts = foreach ($j in 0..($HostdevsPerDomain - 1)) { $vfs[($defined * $HostdevsPerDomain + $j) % $vfs.Count] }
                $null = $connection.DefineDomain((New-BenchDomainXml "$prefix$defined" $hosts))
                $defined++
            }
            $defineMs = $sw.Elapsed.TotalMilliseconds
            $all = $connection.ListDomains().Count

            # Both must see every domain.
            $mine = @(Get-GalliumVmPciDevice)
            $ours = @($mine | Where-Object { $_.VmName.StartsWith($prefix) }).Count
            if ($ours -ne $target * $HostdevsPerDomain) { throw "Get-GalliumVmPciDevice listed $ours bench assignments, expected $($target * $HostdevsPerDomain)." }
            $loop = Invoke-TimedProcess bash $script:VirshLoop
            if ([int]$loop.Stdout.Trim() -lt $target) { throw "The virsh loop dumped $($loop.Stdout.Trim()) domains, expected at least $target." }

            $runs = if ($target -ge 1000) { 3 } else { 5 }
            $m = Measure-Interleaved -Warmup 1 -Runs $runs -Candidates ([ordered]@{
                Gallium = { $sw = [Diagnostics.Stopwatch]::StartNew(); $script:Assignments = Get-GalliumVmPciDevice; $sw.Elapsed.TotalMilliseconds }
                virsh   = { Invoke-TimedProcess bash $script:VirshLoop }
                # Connect, one listing with every domain's XML, and the hostdev index: the libvirt share of this cmdlet, and
                # all that Get-GalliumPciDevice adds to mark Assigned devices on a host with this many VMs.
                List    = {
                    $sw = [Diagnostics.Stopwatch]::StartNew()
                    $c = [Gallium.Pci.Libvirt.LibvirtConnection]::Open($null, $true)
                    try { $null = [Gallium.Pci.Libvirt.AssignmentIndex]::FromDomains($c.ListDomains()) } finally { $c.Dispose() }
                    $sw.Elapsed.TotalMilliseconds
                }
            })
            $Raw["Assignments$target"] = $m
            $g = $m['Gallium'].Median; $v = $m['virsh'].Median
            Add-Row 'Assignments: Get-GalliumVmPciDevice vs virsh dumpxml loop' "$target domains ($all in libvirtd), $HostdevsPerDomain hostdevs each" `
                (Format-Ms $g) (Format-Ms $v) ('{0:N1}x faster' -f ($v / $g)) '>= 10x faster' $(if ($v / $g -ge 10) { 'yes' } else { 'NO' })
            Add-Row 'Inventory: libvirt part of Get-GalliumPciDevice' "$all domains" (Format-Ms $m['List'].Median) '-' 'included in Get-GalliumPciDevice' 'measured separately' 'n/a'
            $Details.Add("Assignments, $target bench domains ($all in the daemon, defined in $(Format-Ms $defineMs)): Get-GalliumVmPciDevice " +
                "$(Format-Spread $m['Gallium']) for $($mine.Count) assignments with MMIO sizing; virsh loop $(Format-Spread $m['virsh']); " +
                "of which connect + one listing with every domain's XML + hostdev index (also what Get-GalliumPciDevice adds with this many VMs): $(Format-Spread $m['List']).")
        }
    }
    finally {
        if ($connection) {
            $left = @($connection.ListDomains() | Where-Object { $_.Name.StartsWith($prefix) })
            foreach ($d in $left) {
                try { $connection.UndefineDomain($d.Name) } catch { Write-Warning "Could not undefine $($d.Name): $($_.Exception.Message)" }
            }
            Write-Host "Undefined $($left.Count) bench domains ($prefix*)."
            $connection.Dispose()
        }
        Restore-Environment
        $kernel.DeleteTree()
    }
}

# ---- Start-up: import and first inventory against a bare pwsh ---------------------------------------------------------

function Invoke-StartupBench {
    Write-Host "`n=== Start-up: pwsh -c 'Import-Module ...; Get-GalliumPciDevice | Out-Null' vs pwsh -c 'exit' ==="
    # The same pwsh that runs this script, started directly (its apphost, else dotnet pwsh.dll), without the tool launcher.
    $apphost = Join-Path $PSHOME 'pwsh'
    if (Test-Path $apphost) { $file = $apphost; $lead = @() }
    else { $file = [Environment]::ProcessPath; $lead = @(Join-Path $PSHOME 'pwsh.dll') }
    $script:StartFile = $file
    # This machine's real /sys and libvirt, as an admin's shell would see them.
    $script:StartEnv = @{}
    foreach ($v in $SimRoots) { $script:StartEnv[$v] = $null }
    $script:BareArgs = $lead + @('-NoProfile', '-NonInteractive', '-Command', 'exit')
    $script:ModuleArgs = $lead + @('-NoProfile', '-NonInteractive', '-Command', "Import-Module '$ModulePath'; Get-GalliumPciDevice | Out-Null")
    $check = Invoke-TimedProcess $file $script:ModuleArgs -Environment $script:StartEnv
    if ($check.ExitCode -ne 0 -or $check.Stderr.Trim()) { throw "pwsh with the module failed ($($check.ExitCode)): $($check.Stderr)" }

    $m = Measure-Interleaved -Candidates ([ordered]@{
        Module = { Invoke-TimedProcess $script:StartFile $script:ModuleArgs -Environment $script:StartEnv }
        Bare   = { Invoke-TimedProcess $script:StartFile $script:BareArgs -Environment $script:StartEnv }
    }) -Warmup 2 -Runs 15
    $Raw['Startup'] = $m
    $ratio = $m['Module'].Median / $m['Bare'].Median
    $cpuRatio = $m['Module'].CpuMedian / $m['Bare'].CpuMedian

    # Where the extra time goes, measured inside the child.
    $split = foreach ($i in 1..3) {
        $r = Invoke-TimedProcess $file ($lead + @('-NoProfile', '-NonInteractive', '-Command',
                "`$s = [Diagnostics.Stopwatch]::StartNew(); Import-Module '$ModulePath'; `$a = `$s.Elapsed.TotalMilliseconds; `$s.Restart(); " +
                "Get-GalliumPciDevice | Out-Null; `$b = `$s.Elapsed.TotalMilliseconds; `$s.Restart(); Get-GalliumPciDevice | Out-Null; " +
                "'{0:F1} {1:F1} {2:F1} {3}' -f `$a, `$b, `$s.Elapsed.TotalMilliseconds, @(Get-GalliumPciDevice).Count")) -Environment $script:StartEnv
        , [double[]](($r.Stdout.Trim() -split ' ')[0..3])
    }
    $import = Get-Median ($split | ForEach-Object { $_[0] })
    $first = Get-Median ($split | ForEach-Object { $_[1] })
    $second = Get-Median ($split | ForEach-Object { $_[2] })
    $count = $split[0][3]

    Add-Row 'Start-up: pwsh with Import-Module and Get-GalliumPciDevice vs bare pwsh' "this host ($count functions)" `
        (Format-Ms $m['Module'].Median) (Format-Ms $m['Bare'].Median) ('{0:N2}x bare pwsh (CPU time {1:N2}x)' -f $ratio, $cpuRatio) '<= 1.5x bare pwsh' $(if ($ratio -le 1.5) { 'yes' } else { 'NO' })
    $Details.Add("Start-up ($file -NoProfile -NonInteractive -Command ""Import-Module <module>; Get-GalliumPciDevice | Out-Null"" against -Command exit): with the module $(Format-Spread $m['Module']); bare $(Format-Spread $m['Bare']). " +
        "CPU time (user + system) of the child: with the module $(Format-Ms $m['Module'].CpuMedian), bare $(Format-Ms $m['Bare'].CpuMedian). Inside the child " +
        "(median of 3): Import-Module $(Format-Ms $import), first Get-GalliumPciDevice $(Format-Ms $first) (pci.ids, libvirt connect, JIT), " +
        "second call $(Format-Ms $second).")
}

# ---- Group change: sysfs reads and writes of Enable + Disable on a 16-function group -----------------------------------

function Invoke-GroupChangeBench {
    Write-Host "`n=== Group change: Enable/Disable-GalliumPciPassthrough of a 16-function IOMMU group (simulated kernel) ==="
    $kernel = [Gallium.Pci.Bench.BenchHosts]::SixteenFunctionGroup([Gallium.Pci.Testing.SimulatedHosts]::CreateTempRoot())
    try {
        $target = [Gallium.Pci.Bench.BenchHosts]::GroupTarget
        $members = @($kernel.GroupMembers($kernel.GroupOf($target)))
        if ($members.Count -ne 16) { throw "The bench group has $($members.Count) functions, not 16." }
        $recorder = [Gallium.Pci.Bench.RecordingSysfs]::new($kernel)
        $ctx = $kernel.CreateContext()
        $global:GalliumHostContext = [Gallium.Pci.Host.HostContext]@{
            Sysfs = $recorder; Procfs = $ctx.Procfs; Devfs = $ctx.Devfs; Modules = $ctx.Modules; Identity = $ctx.Identity
            PciIdsPath = $ctx.PciIdsPath; Paths = $ctx.Paths; WriteTimeout = $ctx.WriteTimeout
        }
        $endpoints = @($members | Where-Object { $_ -ne '0000:01:00.0' })
        $hostDrivers = @{}
        foreach ($e in $endpoints) { $hostDrivers[$e] = $kernel.DriverOf($e) }

        # What PlanRunner reads again after taking the host lock, to refuse if anything changed since the plan was made
        # (a -Confirm prompt may sit between the two): vfio-pci's presence, the group's members, each one's driver and override.
        $script:RunnerCheck = [string[]]@('Exists bus/pci/drivers/vfio-pci', 'List kernel/iommu_groups/<group>/devices',
            'ReadLink bus/pci/devices/<fn>/driver', 'ReadText bus/pci/devices/<fn>/driver_override')
        $times = @{ Enable = [System.Collections.Generic.List[double]]::new(); Disable = [System.Collections.Generic.List[double]]::new() }
        $first = @{}
        foreach ($cycle in 1..6) {
            foreach ($action in 'Enable', 'Disable') {
                $recorder.Clear(); $kernel.ResetCounters()
                [GC]::Collect()
                $sw = [Diagnostics.Stopwatch]::StartNew()
                if ($action -eq 'Enable') { Enable-GalliumPciPassthrough -Address $target -Confirm:$false }
                else { Disable-GalliumPciPassthrough -Address $target -Confirm:$false }
                $ms = $sw.Elapsed.TotalMilliseconds
                foreach ($e in $endpoints) {
                    $want = if ($action -eq 'Enable') { 'vfio-pci' } else { $hostDrivers[$e] }
                    if ($kernel.DriverOf($e) -ne $want) { throw "$action left $e on '$($kernel.DriverOf($e))', not '$want'." }
                }
                if ($cycle -gt 1) { $times[$action].Add($ms) }  # the first cycle is the warm-up (JIT, pci.ids)
                $summary = [Gallium.Pci.Bench.SysfsTrace]::Analyze($recorder.Calls, [string[]]$members, $script:RunnerCheck)
                if ($summary.Reads -ne $kernel.ReadCount -or $summary.Writes -ne $kernel.WriteCount) {
                    throw "Recorder and kernel disagree: $($summary.Reads)/$($summary.Writes) vs $($kernel.ReadCount)/$($kernel.WriteCount)."
                }
                if ($cycle -eq 1) { $first[$action] = $summary }
                elseif ($summary.Reads -ne $first[$action].Reads -or $summary.Writes -ne $first[$action].Writes) {
                    $Details.Add("Group change: $action read/wrote $($summary.Reads)/$($summary.Writes) in cycle $cycle, $($first[$action].Reads)/$($first[$action].Writes) in cycle 1.")
                }
            }
        }
        foreach ($action in 'Enable', 'Disable') {
            $s = $first[$action]
            $perRead = ($s.PerDevice | Measure-Object -Property Reads -Average -Maximum)
            $perWrite = ($s.PerDevice | Measure-Object -Property Writes -Average -Maximum)
            $median = Get-Median $times[$action].ToArray()
            Add-Row "Group change: $action-GalliumPciPassthrough" '16-function group' `
                ('{0} reads, {1} writes; {2:N1} reads and {3:N1} writes per function; {4}' -f $s.Reads, $s.Writes, ($s.Reads / 16), ($s.Writes / 16), (Format-Ms $median)) `
                '-' ('re-reads: {0} after a write, {1} in the under-lock check, {2} other' -f $s.RereadsAfterChange, $s.RereadsChecked, $s.RereadsUnchanged) 'no re-reads of what did not change' `
                $(if ($s.RereadsUnchanged -eq 0) { 'yes' } else { 'NO' })
            $Details.Add("Group change, ${action}: $($s.Reads) sysfs reads ($($s.DistinctReadPaths) distinct paths), $($s.Writes) writes; " +
                "per function (about that function's own paths): reads avg $('{0:N1}' -f $perRead.Average) max $($perRead.Maximum), writes avg $('{0:N1}' -f $perWrite.Average) max $($perWrite.Maximum); " +
                "time $(Format-Ms $median) (median of $($times[$action].Count)). Writes: $($s.WritesByAttribute -join ', '). " +
                "Reads: $($s.ReadsByAttribute -join ', '). Re-reads of unchanged paths outside the under-lock check: $(if ($s.UnchangedRereads.Count) { $s.UnchangedRereads -join ', ' } else { 'none' }).")
        }
    }
    finally {
        Restore-Environment
        $kernel.DeleteTree()
    }
}

# ---- run, print, save --------------------------------------------------------------------------------------------------

# A section that fails (no libvirtd, no lspci) is reported and the others still run.
$failures = [System.Collections.Generic.List[string]]::new()
foreach ($b in 'Inventory', 'Assignments', 'Startup', 'GroupChange') {
    if ($Benchmarks -notcontains $b) { continue }
    try { & "Invoke-${b}Bench" }
    catch {
        $failures.Add("$b failed: $($_.Exception.Message)")
        Write-Host "$b failed: $($_.Exception.Message)`n$($_.ScriptStackTrace)"
    }
    finally { Restore-Environment }
}

$Machine['LoadAtEnd'] = Get-LoadAverage
$elapsed = [DateTime]::UtcNow - $started
$command = 'dotnet pwsh ./build.ps1 -Task Bench'
if ($PSBoundParameters.ContainsKey('Benchmark') -or $PSBoundParameters.ContainsKey('Functions') -or $PSBoundParameters.ContainsKey('Domains')) {
    $command = "dotnet pwsh -NoProfile -File bench/Invoke-Bench.ps1 -ModulePath $ModulePath" +
        $(if ($PSBoundParameters.ContainsKey('Benchmark')) { " -Benchmark $($Benchmarks -join ',')" }) +
        $(if ($PSBoundParameters.ContainsKey('Functions')) { " -Functions $($FunctionCounts -join ',')" }) +
        $(if ($PSBoundParameters.ContainsKey('Domains')) { " -Domains $($DomainCounts -join ',')" })
}
$table = if ($Rows.Count) { Format-BenchTable $Rows } else { '(no comparison finished)' }
$report = @(
    "Peers: $($Peers.Values -join '; '). Machine: $($Machine.Cpus) CPUs ($($Machine.CpuModel)), Linux $($Machine.Kernel), load average $($Machine.LoadAtStart) at start, $($Machine.LoadAtEnd) at end."
    "Command: $command ($Configuration build; $('{0:mm\:ss}' -f $elapsed) for the whole bench, $([DateTime]::UtcNow.ToString('yyyy-MM-dd HH:mm')) UTC)."
    ''
    $table
    ''
    'Details:'
    ($Details | ForEach-Object { "- $_" })
    ($failures | ForEach-Object { "- NOT MEASURED: $_" })
) -join [Environment]::NewLine

Write-Host "`n=== Results ==="
Write-Host $report
New-Item -ItemType Directory -Force -Path $ResultsDirectory | Out-Null
Set-Content -Path (Join-Path $ResultsDirectory 'results.md') -Value $report
[ordered]@{ Command = $command; Configuration = $Configuration; Peers = $Peers; Machine = $Machine; Rows = $Rows; Details = $Details; Failures = $failures; Samples = $Raw } |
    ConvertTo-Json -Depth 6 | Set-Content -Path (Join-Path $ResultsDirectory 'results.json')
Write-Host "`nSaved $(Join-Path $ResultsDirectory 'results.md') and results.json."

if ($failures.Count) {
    Write-Host "$($failures.Count) benchmark(s) could not be measured: $($failures -join '; ')"
    exit 1
}
exit 0
