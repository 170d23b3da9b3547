<#
.SYNOPSIS
    Measures Gallium.PciPassthrough against the tools admins use now, in the same run, and prints a comparison table.
.DESCRIPTION
    Inventory         Get-GalliumPciDevice over simulated kernel trees of -Functions functions (production sysfs reader,
                      pointed at the tree with GALLIUM_SYSFS_ROOT) against lspci -D -nn -k -vmm -A linux-sysfs on the same
                      tree; the cost per function from the second-largest to the largest tree.
    Assignments       Get-GalliumVmPciDevice over -Domains diskless domains, each with -HostdevsPerDomain hostdevs, against a
                      `virsh dumpxml` loop over the same domains; the cost per domain from the second-largest count to the
                      largest. The domains live in a private libvirtd the bench starts and stops (bench/private-libvirtd.sh),
                      never in the shared qemu:///system.
    Startup           pwsh -c 'Import-Module ...; Get-GalliumPciDevice | Out-Null' against a bare pwsh -c 'exit' (CPU and wall
                      time), and the breakdown: Import-Module, first and second call, and each part of the first call
                      (pci.ids, sysfs, libvirt) timed alone in a fresh pwsh.
    GroupChange       Enable-/Disable-GalliumPciPassthrough of a 16-function IOMMU group on the simulated kernel: sysfs reads
                      and writes per function, and reads that repeated a path no write had changed.
    VmDeviceChange    Add- then Remove-GalliumVmPciDevice of a GPU + HDMI audio group (simulated kernel, real private
                      libvirtd) against virsh attach-device --config then detach-device --config of the two hostdevs.
    GuestGroupChange  In the QEMU test guest (Debian's real kernel, tests/guest/Bench-GroupChange.ps1): Enable + Disable of the
                      group of four against driverctl set-override/unset-override and virsh nodedev-detach/nodedev-reattach,
                      with the module's own time split from the kernel's.
    Every timing is the median of runs taken in turn with the peer (the order swapped every round), after warm-up runs.
    The table (Markdown) and every sample are also saved in -ResultsDirectory (results.md, results.json).
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
    [string[]] $Benchmark = @('Inventory', 'Assignments', 'Startup', 'GroupChange', 'VmDeviceChange', 'GuestGroupChange'),
    [string[]] $Functions = @('256', '1024', '4096', '16384'),
    [string[]] $Domains = @('100', '1000', '10000'),
    [ValidateRange(1, 8)] [int] $HostdevsPerDomain = 3,
    [ValidateRange(3, 101)] [int] $StartupRuns = 21,
    [ValidateRange(1, 51)] [int] $ChangeRuns = 9,
    [ValidateRange(1, 21)] [int] $GuestRuns = 5,
    # The virsh dumpxml loop dumps every domain up to this many, past it an even sample of this many, scaled.
    [ValidateRange(10, 100000)] [int] $PeerSample = 300,
    [string] $ResultsDirectory
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
$AllBenchmarks = 'Inventory', 'Assignments', 'Startup', 'GroupChange', 'VmDeviceChange', 'GuestGroupChange'
$Benchmarks = [string[]]@($Benchmark -split ',' | ForEach-Object Trim | Where-Object { $_ })
$FunctionCounts = [int[]]@($Functions -split ',' | Where-Object { $_ })
$DomainCounts = [int[]]@($Domains -split ',' | Where-Object { $_ })
foreach ($b in $Benchmarks) { if ($b -notin $AllBenchmarks) { throw "Unknown benchmark '$b' ($($AllBenchmarks -join ', '))." } }
foreach ($n in $FunctionCounts) { if ($n -lt 2 -or $n -gt 63492) { throw "-Functions: 2 to 63492, not $n." } }
foreach ($n in $DomainCounts) { if ($n -lt 1 -or $n -gt 20000) { throw "-Domains: 1 to 20000, not $n." } }
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

$Peers = [ordered]@{
    lspci     = (Get-FirstLine 'lspci' @('--version')) -replace '^lspci version ', 'lspci (pciutils) '
    virsh     = "virsh $(Get-FirstLine 'virsh' @('--version')) (libvirtd $((Get-FirstLine '/usr/sbin/libvirtd' @('--version')) -replace '^.* ', ''))"
    driverctl = "driverctl $(Get-FirstLine 'dpkg-query' @('-W', '-f', '${Version}', 'driverctl'))"
    pwsh      = "PowerShell $($PSVersionTable.PSVersion) on $([System.Runtime.InteropServices.RuntimeInformation]::FrameworkDescription)"
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

function Format-Ratio([double] $Mine, [double] $Theirs) {
    if ($Mine -le $Theirs) { '{0:N2}x faster' -f ($Theirs / $Mine) } else { '{0:N2}x slower' -f ($Mine / $Theirs) }
}

function YesNo([bool] $Met) { if ($Met) { 'yes' } else { 'NO' } }

# Cost per item from the second-largest size to the largest: flat when it grows by at most 25% (room for the noise of a
# shared machine; the smallest sizes are left out: fixed costs such as the pipeline and a connection weigh most there).
function Add-PerItemRow([string] $Comparison, [string] $Unit, $Points, [string] $Label) {
    if ($Points.Count -lt 2) { return }
    $b = $Points[$Points.Count - 2]; $c = $Points[$Points.Count - 1]
    $per = ($Points | ForEach-Object { '{0:N0}' -f (1000 * $_.Gallium / $_.Count) }) -join ' / '
    $perPeer = ($Points | ForEach-Object { '{0:N0}' -f (1000 * $_.Peer / $_.Count) }) -join ' / '
    $growth = ($c.Gallium / $c.Count) / ($b.Gallium / $b.Count)
    $peerGrowth = ($c.Peer / $c.Count) / ($b.Peer / $b.Count)
    Add-Row $Comparison (($Points | ForEach-Object Count) -join ' / ') $per $perPeer `
        ('{0:N2}x per {1} from {2} to {3} (peer {4:N2}x)' -f $growth, $Unit, $b.Count, $c.Count, $peerGrowth) "flat per $Unit (<= 1.25x)" (YesNo ($growth -le 1.25))
    $Details.Add("$Label, cost per $Unit in microseconds at $(($Points | ForEach-Object Count) -join ' / '): Gallium $per; peer $perPeer.")
}

# ---- Inventory: Get-GalliumPciDevice against lspci on the same tree ----------------------------------------------------

function Invoke-InventoryBench {
    Write-Host "`n=== Inventory: Get-GalliumPciDevice vs lspci over $($FunctionCounts -join ', ') functions ==="
    $points = [System.Collections.Generic.List[object]]::new()
    foreach ($n in ($FunctionCounts | Sort-Object)) {
        $sw = [Diagnostics.Stopwatch]::StartNew()
        $kernel = [Gallium.Pci.Testing.SimulatedHosts]::Large([Gallium.Pci.Testing.SimulatedHosts]::CreateTempRoot(), $n)
        $buildMs = $sw.Elapsed.TotalMilliseconds
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
            $segments = @($mine | ForEach-Object { $_.Address.Domain } | Sort-Object -Unique).Count
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

            $runs = if ($n -ge 16384) { 7 } else { 9 }
            $m = Measure-Interleaved -Warmup 2 -Runs $runs -Candidates ([ordered]@{
                Gallium = { $sw = [Diagnostics.Stopwatch]::StartNew(); $script:Devices = Get-GalliumPciDevice; $sw.Elapsed.TotalMilliseconds }
                lspci   = { Invoke-TimedProcess lspci $script:LspciArgs }
                # The core alone (sysfs + names, no cmdlet, no libvirt), to show where the cmdlet's time goes.
                Core    = { $sw = [Diagnostics.Stopwatch]::StartNew(); $null = [Gallium.Pci.Host.DeviceInventory]::new($script:CoreHost, $script:CoreNames).ReadAll(); $sw.Elapsed.TotalMilliseconds }
            })
            $g = $m['Gallium'].Median; $l = $m['lspci'].Median
            $points.Add([pscustomobject]@{ Count = $n; Gallium = $g; Peer = $l })
            $Raw["Inventory$n"] = $m
            $goal = if ($n -ge 4096) { 'faster than lspci' } else { '' }
            $met = if ($n -ge 4096) { YesNo ($g -lt $l) } else { '' }
            Add-Row 'Inventory: Get-GalliumPciDevice vs lspci' "$n functions" (Format-Ms $g) (Format-Ms $l) (Format-Ratio $g $l) $goal $met
            $Details.Add("Inventory, $n functions ($segments PCI segment(s); tree built in $(Format-Ms $buildMs); load $(Get-LoadAverage)): Get-GalliumPciDevice $(Format-Spread $m['Gallium']); " +
                "lspci $(Format-Spread $m['lspci']); core DeviceInventory.ReadAll alone $(Format-Spread $m['Core']). Both listed $n functions; $withGroup with an IOMMU group, " +
                "$withBars with BARs, $named named from pci.ids. The module asked sysfs $($calls.Count) times ($('{0:N1}' -f ($calls.Count / $n)) per function: " +
                "$lists directory listings, $($calls.Count - $lists) reads of the files they showed); paths asked twice: $repeats.")
        }
        finally {
            Restore-Environment
            $kernel.DeleteTree()
        }
    }
    Add-PerItemRow 'Inventory: cost per function (us), Get-GalliumPciDevice / lspci' 'function' $points 'Inventory'
}

# ---- Assignments: Get-GalliumVmPciDevice against a virsh dumpxml loop -------------------------------------------------

function New-BenchDomainXml([string] $Name, [string[]] $HostAddresses) {
    $hostdevs = foreach ($bdf in $HostAddresses) {
        $a = [Gallium.Pci.PciAddress]::Parse($bdf)
        "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x{0:x4}' bus='0x{1:x2}' slot='0x{2:x2}' function='0x{3:x}'/></source></hostdev>" -f $a.Domain, $a.Bus, $a.Device, $a.Function
    }
    "<domain type='qemu'><name>$Name</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>" +
    "<os><type arch='x86_64' machine='q35'>hvm</type></os><devices><emulator>/usr/bin/qemu-system-x86_64</emulator>$($hostdevs -join '')</devices></domain>"
}

# Connect, one listing with every domain's XML, and the hostdev index: the libvirt share of Get-GalliumVmPciDevice, and all
# that Get-GalliumPciDevice adds to mark Assigned devices on a host with this many VMs.
function Measure-LibvirtListing([string] $Uri) {
    $sw = [Diagnostics.Stopwatch]::StartNew()
    $c = [Gallium.Pci.Libvirt.LibvirtConnection]::Open($Uri, $true)
    try { $null = [Gallium.Pci.Libvirt.AssignmentIndex]::FromDomains($c.ListDomains()) } finally { $c.Dispose() }
    $sw.Elapsed.TotalMilliseconds
}

function Invoke-AssignmentsBench {
    Write-Host "`n=== Assignments: Get-GalliumVmPciDevice vs a virsh dumpxml loop over $($DomainCounts -join ', ') domains (private libvirtd) ==="
    # Hostdevs point at VFs of a simulated host, so the MMIO sizing reads real BARs as on a real hypervisor.
    $kernel = [Gallium.Pci.Testing.SimulatedHosts]::Large([Gallium.Pci.Testing.SimulatedHosts]::CreateTempRoot(), 1024)
    $daemon = $null
    $connection = $null
    $prefix = 'gbench-{0}-' -f [guid]::NewGuid().ToString('n').Substring(0, 8)
    try {
        Use-SimulatedTree $kernel
        $vfs = @($kernel.DeviceAddresses | Where-Object { $kernel.PhysicalFunctionOf($_) })
        $daemon = Start-PrivateLibvirtd
        $script:BenchUri = $daemon.Uri
        Write-Host "Private libvirtd $($daemon.ProcessId) on $($daemon.Uri)"
        $connection = [Gallium.Pci.Libvirt.LibvirtConnection]::Open($daemon.Uri, $false)

        $m = Measure-Interleaved -Warmup 2 -Runs 7 -Candidates ([ordered]@{ Libvirt = { Measure-LibvirtListing $script:BenchUri } })
        $Raw['InventoryLibvirt0'] = $m
        Add-Row 'Inventory: libvirt part of Get-GalliumPciDevice' '0 domains' (Format-Ms $m['Libvirt'].Median) '-' 'included in Get-GalliumPciDevice' 'measured separately' 'n/a'
        $Details.Add("Inventory, libvirt part with no domains (read-only connect to the private libvirtd, one ListAllDomains pass, index): $(Format-Spread $m['Libvirt']).")

        # The peer: list the domains, then one `virsh dumpxml` per domain. Past -PeerSample domains the loop dumps an even sample
        # of them (every k-th name) and its time is scaled to all of them: a full loop at 10,000 domains takes most of an hour
        # on a loaded machine. Prints: dumped listed list-us loop-us.
        $loopScript = 'uri=''{0}''; s={1}; t0=$(date +%s%N); names=$(virsh -c "$uri" list --all --name | sed ''/^$/d''); t1=$(date +%s%N); ' +
            'total=$(printf ''%s\n'' "$names" | sed ''/^$/d'' | wc -l); k=$(( total > s ? (total + s - 1) / s : 1 )); n=0; i=0; ' +
            'for d in $names; do if [ $((i % k)) -eq 0 ]; then virsh -c "$uri" dumpxml "$d" >/dev/null && n=$((n+1)); fi; i=$((i+1)); done; ' +
            't2=$(date +%s%N); echo "$n $total $(( (t1 - t0) / 1000 )) $(( (t2 - t1) / 1000 ))"'
        $script:VirshLoop = @('-c', ($loopScript -f $daemon.Uri, $PeerSample))
        $script:VirshRun = {
            $r = Invoke-TimedProcess bash $script:VirshLoop
            if ($r.ExitCode -ne 0) { throw "The virsh loop exited $($r.ExitCode): $($r.Stderr)" }
            $n, $total, $listUs, $loopUs = [double[]]($r.Stdout.Trim() -split ' ')
            # Whole-process time when every domain was dumped; else the listing plus the sampled calls scaled to all domains.
            $ms = if ($n -ge $total) { $r.Ms } else { ($listUs + $loopUs * $total / $n) / 1000 }
            [pscustomobject]@{ Ms = $ms; Dumped = $n; Listed = $total }
        }
        $points = [System.Collections.Generic.List[object]]::new()
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
            if ($all -ne $target) { throw "The private libvirtd holds $all domains, expected $target." }

            # Both must see every domain.
            $mine = @(Get-GalliumVmPciDevice -Uri $daemon.Uri)
            if ($mine.Count -ne $target * $HostdevsPerDomain) { throw "Get-GalliumVmPciDevice listed $($mine.Count) assignments, expected $($target * $HostdevsPerDomain)." }
            $loop = & $script:VirshRun
            $k = if ($target -gt $PeerSample) { [math]::Ceiling($target / $PeerSample) } else { 1 }
            $expected = [math]::Ceiling($target / $k)
            if ($loop.Listed -ne $target -or $loop.Dumped -ne $expected) { throw "The virsh loop listed $($loop.Listed) domains and dumped $($loop.Dumped), expected $target and $expected." }

            # The virsh loop starts two processes per domain: at 10,000 domains one run takes minutes.
            $warmup, $runs = if ($target -ge 5000) { 0, 3 } elseif ($target -ge 1000) { 1, 3 } else { 1, 5 }
            $m = Measure-Interleaved -Warmup $warmup -Runs $runs -Candidates ([ordered]@{
                Gallium = { $sw = [Diagnostics.Stopwatch]::StartNew(); $script:Assignments = Get-GalliumVmPciDevice -Uri $script:BenchUri; $sw.Elapsed.TotalMilliseconds }
                virsh   = { & $script:VirshRun }
                List    = { Measure-LibvirtListing $script:BenchUri }
            })
            $Raw["Assignments$target"] = $m
            $g = $m['Gallium'].Median; $v = $m['virsh'].Median
            $points.Add([pscustomobject]@{ Count = $target; Gallium = $g; Peer = $v })
            Add-Row 'Assignments: Get-GalliumVmPciDevice vs virsh dumpxml loop' "$target domains, $HostdevsPerDomain hostdevs each" `
                (Format-Ms $g) (Format-Ms $v) (Format-Ratio $g $v) '>= 10x faster' (YesNo ($v / $g -ge 10))
            Add-Row 'Inventory: libvirt part of Get-GalliumPciDevice' "$target domains" (Format-Ms $m['List'].Median) '-' 'included in Get-GalliumPciDevice' 'measured separately' 'n/a'
            $peerHow = if ($loop.Dumped -lt $target) { "virsh list + dumpxml of an even sample of $($loop.Dumped) domains, scaled to all $target" } else { 'virsh loop' }
            $Details.Add("Assignments, $target domains (defined in $(Format-Ms $defineMs); load $(Get-LoadAverage)): Get-GalliumVmPciDevice " +
                "$(Format-Spread $m['Gallium']) for $($mine.Count) assignments with MMIO sizing; $peerHow $(Format-Spread $m['virsh']); " +
                "of which connect + one listing with every domain's XML + hostdev index (also what Get-GalliumPciDevice adds with this many VMs): $(Format-Spread $m['List']).")
        }
        Add-PerItemRow 'Assignments: cost per domain (us), Get-GalliumVmPciDevice / virsh loop' 'domain' $points 'Assignments'
    }
    finally {
        if ($connection) { $connection.Dispose() }
        # Stopping the private daemon removes its domains with its state directory.
        Stop-PrivateLibvirtd $daemon
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
    $pwshArgs = $lead + @('-NoProfile', '-NonInteractive', '-Command')
    $floor = Join-Path ([IO.Path]::GetTempPath()) "gbench-empty-$PID/Empty"
    New-Item -ItemType Directory -Force -Path $floor | Out-Null
    Set-Content -Path (Join-Path $floor 'Empty.psd1') -Value "@{ ModuleVersion = '1.0.0'; FunctionsToExport = @(); CmdletsToExport = @() }"
    $script:StartArgs = [ordered]@{
        Module  = $pwshArgs + "Import-Module '$ModulePath'; Get-GalliumPciDevice | Out-Null"
        Bare    = $pwshArgs + 'exit'
        # What any module and any command cost this pwsh, for scale: an empty manifest module, one built-in cmdlet pipeline.
        Empty   = $pwshArgs + "Import-Module '$floor'"
        Builtin = $pwshArgs + 'Get-Command Get-Process | Out-Null'
    }
    # pwsh records the methods a start-up compiled and compiles them ahead on the next start (its startup profile in
    # $XDG_CACHE_HOME/powershell): each command keeps its own, as repeated runs of one runbook step would, instead of
    # precompiling the other command's methods.
    $script:StartEnvs = @{}
    foreach ($k in $script:StartArgs.Keys) {
        $e = @{}
        foreach ($v in $SimRoots) { $e[$v] = $null }
        $e['XDG_CACHE_HOME'] = Join-Path ([IO.Path]::GetTempPath()) "gbench-cache-$PID-$k"
        $script:StartEnvs[$k] = $e
    }
    $script:StartEnv = $script:StartEnvs['Module']
    $check = Invoke-TimedProcess $file $script:StartArgs['Module'] -Environment $script:StartEnv
    if ($check.ExitCode -ne 0 -or $check.Stderr.Trim()) { throw "pwsh with the module failed ($($check.ExitCode)): $($check.Stderr)" }
    $load = Get-LoadAverage

    $m = Measure-Interleaved -Candidates ([ordered]@{
        Module  = { Invoke-TimedProcess $script:StartFile $script:StartArgs['Module'] -Environment $script:StartEnvs['Module'] }
        Bare    = { Invoke-TimedProcess $script:StartFile $script:StartArgs['Bare'] -Environment $script:StartEnvs['Bare'] }
        Empty   = { Invoke-TimedProcess $script:StartFile $script:StartArgs['Empty'] -Environment $script:StartEnvs['Empty'] }
        Builtin = { Invoke-TimedProcess $script:StartFile $script:StartArgs['Builtin'] -Environment $script:StartEnvs['Builtin'] }
    }) -Warmup 2 -Runs $StartupRuns
    $Raw['Startup'] = $m
    $ratio = $m['Module'].Median / $m['Bare'].Median
    $cpuRatio = $m['Module'].CpuMedian / $m['Bare'].CpuMedian

    # The breakdown, each piece in fresh processes taken in turn: inside one child Import-Module, the first and the second
    # Get-GalliumPciDevice; then each part of the first call alone (timed from C# after Import-Module, so PowerShell's own
    # first-call costs stay out of it); and the floor every manifest module pays (Import-Module of an empty one).
    $timed = { param($body) $pwshArgs + "`$s = [Diagnostics.Stopwatch]::StartNew(); $body" }
    $parts = [ordered]@{
        Split   = & $timed ("Import-Module '$ModulePath'; `$a = `$s.Elapsed.TotalMilliseconds; `$s.Restart(); Get-GalliumPciDevice | Out-Null; " +
                            "`$b = `$s.Elapsed.TotalMilliseconds; `$s.Restart(); Get-GalliumPciDevice | Out-Null; '{0:F2} {1:F2} {2:F2}' -f `$a, `$b, `$s.Elapsed.TotalMilliseconds")
        Floor   = & $timed "Import-Module '$floor'; '{0:F2}' -f `$s.Elapsed.TotalMilliseconds"
    }
    $parts['Parts'] = $pwshArgs + "Import-Module '$ModulePath'; Add-Type -Path '$(Join-Path $helpers 'Gallium.Pci.Bench.dll')'; [Gallium.Pci.Bench.StartupParts]::MeasureAll()"
    $out = @{}
    foreach ($k in $parts.Keys) { $out[$k] = [System.Collections.Generic.List[string]]::new() }
    for ($i = 0; $i -lt 8; $i++) {
        $keys = @($parts.Keys)
        if ($i % 2) { [array]::Reverse($keys) }
        foreach ($k in $keys) {
            $r = Invoke-TimedProcess $file $parts[$k] -Environment $script:StartEnv
            if ($r.ExitCode -ne 0 -or $r.Stderr.Trim()) { throw "Start-up part '$k' failed ($($r.ExitCode)): $($r.Stderr)" }
            if ($i -gt 0) { $out[$k].Add($r.Stdout.Trim()) }  # the first round is the warm-up
        }
    }
    Remove-Item -Recurse -Force (Split-Path -Parent $floor) -ErrorAction Ignore
    foreach ($e in $script:StartEnvs.Values) { Remove-Item -Recurse -Force $e['XDG_CACHE_HOME'] -ErrorAction Ignore }
    $value = { param($k, $i) Get-Median (@($out[$k] | ForEach-Object { [double](($_ -split ' ')[$i]) })) }
    $import = & $value 'Split' 0; $first = & $value 'Split' 1; $second = & $value 'Split' 2
    $floorMs = & $value 'Floor' 0
    $sysfs = & $value 'Parts' 0; $pciIds = & $value 'Parts' 1; $libvirt = & $value 'Parts' 2
    $rest = $first - $pciIds - $sysfs - $libvirt
    $count = @(Get-ChildItem /sys/bus/pci/devices -ErrorAction Ignore).Count
    $Raw['StartupParts'] = [ordered]@{ ImportMs = $import; FirstCallMs = $first; SecondCallMs = $second; EmptyManifestImportMs = $floorMs; PciIdsMs = $pciIds; SysfsMs = $sysfs; LibvirtMs = $libvirt }

    Add-Row 'Start-up: pwsh with Import-Module and Get-GalliumPciDevice vs bare pwsh' "this host ($count functions)" `
        ('{0}, CPU {1}' -f (Format-Ms $m['Module'].Median), (Format-Ms $m['Module'].CpuMedian)) ('{0}, CPU {1}' -f (Format-Ms $m['Bare'].Median), (Format-Ms $m['Bare'].CpuMedian)) `
        ('{0:N2}x bare pwsh wall, {1:N2}x CPU' -f $ratio, $cpuRatio) '<= 1.25x wall and <= 1.2x CPU time' (YesNo ($ratio -le 1.25 -and $cpuRatio -le 1.2))
    foreach ($k in 'Empty', 'Builtin') {
        $what = if ($k -eq 'Empty') { 'Import-Module of an empty manifest module' } else { 'one built-in cmdlet pipeline (Get-Command Get-Process | Out-Null)' }
        Add-Row "Start-up, for scale: pwsh with $what vs bare pwsh" 'no module code' `
            ('{0}, CPU {1}' -f (Format-Ms $m[$k].Median), (Format-Ms $m[$k].CpuMedian)) ('{0}, CPU {1}' -f (Format-Ms $m['Bare'].Median), (Format-Ms $m['Bare'].CpuMedian)) `
            ('{0:N2}x bare pwsh wall, {1:N2}x CPU' -f ($m[$k].Median / $m['Bare'].Median), ($m[$k].CpuMedian / $m['Bare'].CpuMedian)) 'what any module or command costs this pwsh' 'n/a'
    }
    Add-Row 'Start-up breakdown (parts timed from C# in a fresh pwsh)' "this host ($count functions)" `
        ('Import-Module {0}; first call {1}: pci.ids {2}, sysfs {3}, libvirt {4}, rest {5}; warm call {6}' -f (Format-Ms $import), (Format-Ms $first),
            (Format-Ms $pciIds), (Format-Ms $sysfs), (Format-Ms $libvirt), (Format-Ms ([math]::Max(0, $rest))), (Format-Ms $second)) `
        ('Import-Module of an empty manifest module {0}' -f (Format-Ms $floorMs)) ('the module adds {0} to the import every module pays' -f (Format-Ms ($import - $floorMs))) 'measured' 'n/a'
    $Details.Add("Start-up ($file -NoProfile -NonInteractive -Command ""Import-Module <module>; Get-GalliumPciDevice | Out-Null"" against -Command exit; load $load): " +
        "with the module $(Format-Spread $m['Module']); bare $(Format-Spread $m['Bare']); an empty manifest module $(Format-Spread $m['Empty']); Get-Command Get-Process | Out-Null $(Format-Spread $m['Builtin']). Each command keeps its own pwsh startup profile (XDG_CACHE_HOME). CPU time (user + system) of the child: with the module " +
        "$(Format-Ms $m['Module'].CpuMedian), bare $(Format-Ms $m['Bare'].CpuMedian). Breakdown (medians of 7 fresh processes each, taken in turn): Import-Module " +
        "$(Format-Ms $import) (an empty manifest module: $(Format-Ms $floorMs)); first Get-GalliumPciDevice $(Format-Ms $first), of which, one after the other in a fresh pwsh after " +
        "Import-Module: pci.ids read, indexed and this host's names looked up $(Format-Ms $pciIds), every function read from sysfs without names " +
        "$(Format-Ms $sysfs), libvirt loaded + read-only connect + domain listing + hostdev index $(Format-Ms $libvirt); the rest (cmdlet, parameter " +
        "binding, pipeline, first-use JIT of generic instantiations) $(Format-Ms ([math]::Max(0, $rest))); a second call in the same process $(Format-Ms $second).")
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

# ---- VM device change: Add/Remove-GalliumVmPciDevice against virsh attach-device/detach-device --config -----------------

function Get-HostdevXml([string] $Bdf) {
    $a = [Gallium.Pci.PciAddress]::Parse($Bdf)
    "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x{0:x4}' bus='0x{1:x2}' slot='0x{2:x2}' function='0x{3:x}'/></source></hostdev>" -f $a.Domain, $a.Bus, $a.Device, $a.Function
}

function Invoke-VmDeviceChangeBench {
    Write-Host "`n=== VM device change: Add/Remove-GalliumVmPciDevice vs virsh attach-device/detach-device --config (GPU + audio) ==="
    $H = [Gallium.Pci.Testing.StandardHost]
    $options = [Gallium.Pci.Testing.HostOptions]@{ VfioDevices = [string[]]@($H::Gpu, $H::GpuAudio) }
    $kernel = [Gallium.Pci.Testing.SimulatedHosts]::Standard([Gallium.Pci.Testing.SimulatedHosts]::CreateTempRoot(), $options)
    $daemon = $null
    $connection = $null
    $files = Join-Path ([IO.Path]::GetTempPath()) "gbench-hostdev-$PID"
    try {
        Use-SimulatedTree $kernel
        $daemon = Start-PrivateLibvirtd
        $script:BenchUri = $daemon.Uri
        $connection = [Gallium.Pci.Libvirt.LibvirtConnection]::Open($daemon.Uri, $false)
        $script:VmName = 'gbench-{0}-vm' -f [guid]::NewGuid().ToString('n').Substring(0, 8)
        # A stopped UEFI q35 VM, as a GPU passthrough guest is defined (the GPU's 32 GiB BAR makes Add size the MMIO window).
        $null = $connection.DefineDomain("<domain type='qemu'><name>$($script:VmName)</name><memory unit='MiB'>1024</memory><vcpu>2</vcpu>" +
            "<os><type arch='x86_64' machine='q35'>hvm</type><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>" +
            "<nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'/></os><features><acpi/></features><devices>" +
            "<emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>")
        $script:Functions = [string[]]@($H::Gpu, $H::GpuAudio)
        New-Item -ItemType Directory -Force -Path $files | Out-Null
        $xmlFiles = foreach ($f in $script:Functions) {
            $path = Join-Path $files "$($f -replace '[:.]', '_').xml"
            Set-Content -Path $path -Value (Get-HostdevXml $f)
            $path
        }
        $uri = $daemon.Uri
        $script:Attach = @('-c', (($xmlFiles | ForEach-Object { "virsh -q -c '$uri' attach-device '$($script:VmName)' '$_' --config >/dev/null" }) -join ' && '))
        $script:Detach = @('-c', (($xmlFiles | ForEach-Object { "virsh -q -c '$uri' detach-device '$($script:VmName)' '$_' --config >/dev/null" }) -join ' && '))
        $script:Conn = $connection
        $script:Hostdevs = { [regex]::Matches($script:Conn.GetDomain($script:VmName).Xml, "<hostdev ").Count }
        $script:Halves = @{ GalliumAdd = [System.Collections.Generic.List[double]]::new(); GalliumRemove = [System.Collections.Generic.List[double]]::new()
            virshAttach = [System.Collections.Generic.List[double]]::new(); virshDetach = [System.Collections.Generic.List[double]]::new() }

        $m = Measure-Interleaved -Warmup 2 -Runs $ChangeRuns -Candidates ([ordered]@{
            Gallium = {
                $sw = [Diagnostics.Stopwatch]::StartNew()
                Add-GalliumVmPciDevice -VmName $script:VmName -Address $script:Functions -Uri $script:BenchUri -Confirm:$false -WarningAction SilentlyContinue
                $add = $sw.Elapsed.TotalMilliseconds
                if ((& $script:Hostdevs) -ne 2) { throw "Add-GalliumVmPciDevice left $(& $script:Hostdevs) hostdevs, not 2." }
                $sw.Restart()
                Remove-GalliumVmPciDevice -VmName $script:VmName -Address $script:Functions -Uri $script:BenchUri -Confirm:$false
                $remove = $sw.Elapsed.TotalMilliseconds
                if ((& $script:Hostdevs) -ne 0) { throw "Remove-GalliumVmPciDevice left $(& $script:Hostdevs) hostdevs." }
                $script:Halves.GalliumAdd.Add($add); $script:Halves.GalliumRemove.Add($remove)
                $add + $remove
            }
            virsh = {
                $a = Invoke-TimedProcess bash $script:Attach
                if ($a.ExitCode -ne 0 -or (& $script:Hostdevs) -ne 2) { throw "virsh attach-device failed ($($a.ExitCode)): $($a.Stderr)" }
                $d = Invoke-TimedProcess bash $script:Detach
                if ($d.ExitCode -ne 0 -or (& $script:Hostdevs) -ne 0) { throw "virsh detach-device failed ($($d.ExitCode)): $($d.Stderr)" }
                $script:Halves.virshAttach.Add($a.Ms); $script:Halves.virshDetach.Add($d.Ms)
                $a.Ms + $d.Ms
            }
        })
        $Raw['VmDeviceChange'] = [ordered]@{ Cycles = $m; Halves = $script:Halves }
        $skip = { param($list) Get-Median (@($list) | Select-Object -Skip 2) }  # the warm-up rounds
        $g = $m['Gallium'].Median; $v = $m['virsh'].Median
        Add-Row 'VM device change: Add + Remove-GalliumVmPciDevice vs virsh attach-device + detach-device --config' 'GPU + HDMI audio (2 hostdevs), stopped VM' `
            (Format-Ms $g) (Format-Ms $v) (Format-Ratio $g $v) 'no slower than virsh' (YesNo ($g -le $v))
        $Details.Add("VM device change (load $(Get-LoadAverage)): one cycle adds the GPU ($($H::Gpu), 32 GiB BAR) and its audio function to a stopped UEFI VM in a private " +
            "libvirtd and removes them. Gallium, in this pwsh session: $(Format-Spread $m['Gallium']); Add $(Format-Ms (& $skip $script:Halves.GalliumAdd)) " +
            "(checks that both functions are on vfio-pci in one viable group and that no other VM holds them, plans the VM's MMIO window for the BAR, defines the new XML under the host lock), Remove " +
            "$(Format-Ms (& $skip $script:Halves.GalliumRemove)). virsh, $($script:Functions.Count) attach-device and $($script:Functions.Count) detach-device --config processes: " +
            "$(Format-Spread $m['virsh']); attach $(Format-Ms (& $skip $script:Halves.virshAttach)), detach $(Format-Ms (& $skip $script:Halves.virshDetach)) (no device or MMIO checks).")
    }
    finally {
        if ($connection) { $connection.Dispose() }
        Stop-PrivateLibvirtd $daemon
        Remove-Item -Recurse -Force $files -ErrorAction Ignore
        Restore-Environment
        $kernel.DeleteTree()
    }
}

# ---- Group change on a real kernel: Enable/Disable against driverctl and virsh nodedev-*, in the QEMU guest ------------

function Invoke-GuestGroupChangeBench {
    Write-Host "`n=== Group change on a real kernel (QEMU guest): Enable/Disable vs driverctl and virsh nodedev-detach/reattach ==="
    if (-not (Get-Command driverctl -ErrorAction Ignore)) { throw 'driverctl is not installed (tests/prepare-host.sh installs it).' }
    $pwsh = @('dotnet', 'pwsh', '-NoProfile', '-NonInteractive', '-File', (Join-Path $repo 'tests/guest/Bench-GroupChange.ps1'),
        '-ModulePath', $ModulePath, '-BenchHelpers', $helpers, '-Warmup', '1', '-Runs', "$GuestRuns")
    $lines = [System.Collections.Generic.List[string]]::new()
    $sw = [Diagnostics.Stopwatch]::StartNew()
    & bash (Join-Path $repo 'tests/guest/run-guest.sh') --timeout 1800 -- @pwsh 2>&1 | ForEach-Object { $s = "$_"; $lines.Add($s); Write-Host $s }
    $exit = $LASTEXITCODE
    $line = $lines | Where-Object { $_ -match 'GALLIUM-BENCH-RESULT ' } | Select-Object -Last 1
    if ($exit -ne 0 -or -not $line) { throw "The guest run exited $exit without a result line." }
    $r = ($line -replace '^.*?GALLIUM-BENCH-RESULT ', '') | ConvertFrom-Json
    $Raw['GuestGroupChange'] = $r
    $med = { param($samples, $f) Get-Median (@($samples | ForEach-Object $f)) }
    $g = $r.Samples.Gallium
    $cycle = & $med $g { $_.EnableMs + $_.DisableMs }
    $kernelMs = & $med $g { $_.EnableKernelMs + $_.DisableKernelMs }
    $overhead = & $med $g { $_.EnableMs + $_.DisableMs - $_.EnableKernelMs - $_.DisableKernelMs }
    $size = "group of $($r.Members.Count) ($($r.Endpoints.Count) $($r.HostDriver) endpoints move), Linux $($r.Kernel) in QEMU (TCG, vIOMMU)"
    foreach ($peer in 'driverctl', 'virsh') {
        $p = & $med $r.Samples.$peer { $_.EnableMs + $_.DisableMs }
        $what = if ($peer -eq 'driverctl') { 'driverctl set-override + unset-override' } else { 'virsh nodedev-detach + nodedev-reattach' }
        Add-Row "Group change on a real kernel: Enable + Disable-GalliumPciPassthrough vs $what" $size (Format-Ms $cycle) (Format-Ms $p) (Format-Ratio $cycle $p) "no slower than $peer" (YesNo ($cycle -le $p))
    }
    Add-Row 'Group change on a real kernel: the module''s own time vs the kernel''s (override, unbind, probe writes)' $size `
        ('{0} of {1}' -f (Format-Ms $overhead), (Format-Ms $cycle)) ('kernel writes {0}' -f (Format-Ms $kernelMs)) ('module = {0:N1}% of kernel time' -f (100 * $overhead / $kernelMs)) `
        "< 10% of the kernel's time" (YesNo ($overhead -lt 0.1 * $kernelMs))
    $fmt = { param($samples, $f) (@($samples | ForEach-Object { Format-Ms (& $f $_) }) -join ', ') }
    $Details.Add("Group change in the guest (whole guest run $(Format-Ms $sw.Elapsed.TotalMilliseconds); guest load at the end $($r.LoadAverage)): group $($r.Group) = $($r.Members -join ', '); " +
        "endpoints $($r.Endpoints -join ', ') move $($r.HostDriver) -> vfio-pci -> $($r.HostDriver), the root ports stay on pcieport (vfio-pci binds no bridges). " +
        "Gallium Enable + Disable in one pwsh session in the guest, cycles: $(& $fmt $g { $args[0].EnableMs + $args[0].DisableMs }); of which inside the kernel's writes: " +
        "$(& $fmt $g { $args[0].EnableKernelMs + $args[0].DisableKernelMs }) (Enable $($g[0].EnableWrites) writes, $($g[0].EnableReads) reads; Disable $($g[0].DisableWrites) writes, " +
        "$($g[0].DisableReads) reads, through a timing wrapper that reads by path; the reads took $(& $fmt $g { $args[0].EnableReadMs + $args[0].DisableReadMs })). driverctl $($r.Driverctl) cycles: $(& $fmt $r.Samples.driverctl { $args[0].EnableMs + $args[0].DisableMs }). " +
        "virsh $($r.Virsh) (the guest's own libvirtd) cycles: $(& $fmt $r.Samples.virsh { $args[0].EnableMs + $args[0].DisableMs }). Medians of $GuestRuns after 1 warm-up round; inside TCG every step is far slower than on hardware.")
}

# ---- run, print, save --------------------------------------------------------------------------------------------------

# A section that fails (no libvirtd, no lspci, no guest) is reported and the others still run.
$failures = [System.Collections.Generic.List[string]]::new()
foreach ($b in $AllBenchmarks) {
    if ($Benchmarks -notcontains $b) { continue }
    $sectionStart = [Diagnostics.Stopwatch]::StartNew()
    try { & "Invoke-${b}Bench" }
    catch {
        $failures.Add("$b failed: $($_.Exception.Message)")
        Write-Host "$b failed: $($_.Exception.Message)`n$($_.ScriptStackTrace)"
    }
    finally {
        Restore-Environment
        $Machine["${b}Seconds"] = [math]::Round($sectionStart.Elapsed.TotalSeconds)
    }
}

$Machine['LoadAtEnd'] = Get-LoadAverage
$elapsed = [DateTime]::UtcNow - $started
$command = 'dotnet pwsh ./build.ps1 -Task Bench'
$chosen = 'Benchmark', 'Functions', 'Domains', 'StartupRuns', 'ChangeRuns', 'GuestRuns', 'HostdevsPerDomain', 'PeerSample' | Where-Object { $PSBoundParameters.ContainsKey($_) }
if ($chosen) {
    $command = "dotnet pwsh -NoProfile -File bench/Invoke-Bench.ps1 -ModulePath $ModulePath" + (($chosen | ForEach-Object {
        $v = Get-Variable -Name $(switch ($_) { 'Benchmark' { 'Benchmarks' } 'Functions' { 'FunctionCounts' } 'Domains' { 'DomainCounts' } default { $_ } }) -ValueOnly
        " -$_ $(@($v) -join ',')" }) -join '')
}
$sections = ($AllBenchmarks | Where-Object { $Machine.Contains("${_}Seconds") } | ForEach-Object { "$_ $($Machine["${_}Seconds"]) s" }) -join ', '
$table = if ($Rows.Count) { Format-BenchTable $Rows } else { '(no comparison finished)' }
$report = @(
    "Peers: $($Peers.Values -join '; '). Machine: $($Machine.Cpus) CPUs ($($Machine.CpuModel)), Linux $($Machine.Kernel), load average $($Machine.LoadAtStart) at start, $($Machine.LoadAtEnd) at end."
    "Command: $command ($Configuration build; $('{0:hh\:mm\:ss}' -f $elapsed) for the whole bench: $sections; $([DateTime]::UtcNow.ToString('yyyy-MM-dd HH:mm')) UTC)."
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
    ConvertTo-Json -Depth 8 | Set-Content -Path (Join-Path $ResultsDirectory 'results.json')
Write-Host "`nSaved $(Join-Path $ResultsDirectory 'results.md') and results.json."

if ($failures.Count) {
    Write-Host "$($failures.Count) benchmark(s) could not be measured: $($failures -join '; ')"
    exit 1
}
exit 0
