<#
.SYNOPSIS
    The cmdlet part of one boot of the boot-time binding proof (issue 13); run inside the guest by boot-binding-boot.sh.
.DESCRIPTION
    Boot 1: Enable two groups; the rule, the early unit, the initramfs-tools hook and the dracut module land in the real
    paths (on the disk). Boot 2: the module sees them Enabled; a device rebound by hand is shown drifted (inventory, group,
    Test), refused by Add and repaired by Enable; a driverctl override round-trips through Enable/Disable with no record
    left; Disable group 12 (no image yet: nothing to regenerate). Boot 4 (after the initramfs-tools boot): Enable of group
    12 warns that the image loads e1000e without its record; Disable 01:00.0 warns that the image still holds its record,
    -UpdateInitramfs regenerates it; no record of any kind is left.
    One "PASS/FAIL [boot N] name" line per check; exit 1 when any failed.
#>
param(
    [Parameter(Mandatory)] [int] $Boot,
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $Image
)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
Set-StrictMode -Version 3.0
$script:Failed = 0
$nic = '0000:01:00.0'; $gpu = '0000:05:00.0'; $audio = '0000:05:00.1'; $ctl = '0000:00:05.1'

function Check([string] $Name, [scriptblock] $Test) {
    # The step in progress, for the boot script's watchdog (watchdog.sh) to name when this process hangs.
    if ($env:GALLIUM_STEP_FILE) { [IO.File]::WriteAllText($env:GALLIUM_STEP_FILE, "$([DateTime]::UtcNow.ToString('HH:mm:ss')) $Name") }
    $why = ''
    try { $ok = [bool] (& $Test) } catch { $ok = $false; $why = " ($($_.Exception.Message))" }
    if ($ok) { "PASS [boot $Boot] $Name" } else { "FAIL [boot $Boot] $Name$why"; $script:Failed++ }
}
function Step([string] $Name, [scriptblock] $Action) { Check $Name { & $Action; $true } }
function Driver([string] $a) {
    $link = "/sys/bus/pci/devices/$a/driver"
    if (Test-Path $link) { Split-Path -Leaf (Get-Item $link).LinkTarget } else { '(none)' }
}
function ImageHas([string] $path) { @(& lsinitramfs $Image) -contains $path }
# One write(2) to a sysfs attribute, as `echo` does (the kernel strips the newline).
function Write-Sysfs([string] $Path, [string] $Value) { [IO.File]::WriteAllText($Path, "$Value`n") }
function NoRecordLeft([string] $a) {
    -not (Test-Path "/etc/gallium/pci.d/$a") -and -not (Test-Path (& $rule $a)) -and -not (Test-Path "/etc/driverctl.d/pci-$a") -and
    -not (Get-ChildItem /etc/gallium/pending.d -ErrorAction SilentlyContinue)
}

if ($env:GALLIUM_STEP_FILE) { [IO.File]::WriteAllText($env:GALLIUM_STEP_FILE, 'Import-Module') }
Import-Module $ModulePath
$rule = { param($a) "/etc/udev/rules.d/70-gallium-vfio-$a.rules" }

switch ($Boot) {
    1 {
        Step "Enable-GalliumPciPassthrough -Address $nic, $gpu (no initramfs yet: no warning)" {
            Enable-GalliumPciPassthrough -Address $nic, $gpu -Confirm:$false -WarningVariable w -WarningAction SilentlyContinue
            if ($w | Where-Object { "$_" -match 'initramfs' }) { throw "unexpected warning: $w" }
        }
        Check "$nic, $gpu, $audio on vfio-pci" { (Driver $nic) -eq 'vfio-pci' -and (Driver $gpu) -eq 'vfio-pci' -and (Driver $audio) -eq 'vfio-pci' }
        Check "the rule sets driver_override during rule processing (PROGRAM --wants, ATTR) and sorts before 80-drivers.rules" {
            $text = Get-Content (& $rule $nic) -Raw
            $text -match [regex]::Escape("PROGRAM==`"/usr/local/libexec/gallium/gallium-vfio-apply --wants %k`", RESULT==`"vfio-pci`", ATTR{driver_override}=`"vfio-pci`"")
        }
        Check "the early unit and its sysinit.target drop-in are installed" {
            (Get-Content /etc/systemd/system/gallium-vfio-early.service -Raw) -match 'Before=systemd-udevd.service systemd-udev-trigger.service' -and
            (Get-Content /etc/systemd/system/sysinit.target.d/gallium-vfio-early.conf -Raw) -match 'Wants=gallium-vfio-early.service'
        }
        Check "the initramfs-tools hook and init-top script are installed and executable" {
            (Get-Item /etc/initramfs-tools/hooks/gallium-vfio).UnixFileMode.HasFlag([IO.UnixFileMode]::UserExecute) -and
            (Get-Item /etc/initramfs-tools/scripts/init-top/gallium-vfio).UnixFileMode.HasFlag([IO.UnixFileMode]::UserExecute)
        }
        Check "the dracut module (module-setup.sh, pre-udev hook) is installed in /usr/lib/dracut/modules.d/90gallium-vfio" {
            (Get-Item /usr/lib/dracut/modules.d/90gallium-vfio/module-setup.sh).UnixFileMode.HasFlag([IO.UnixFileMode]::UserExecute) -and
            (Get-Content /usr/lib/dracut/modules.d/90gallium-vfio/module-setup.sh -Raw) -match 'inst_hook pre-udev'
        }
        Check "Get-GalliumPciDevice: $nic Enabled, persisted by Gallium" {
            $d = Get-GalliumPciDevice -Address $nic -WarningAction SilentlyContinue
            "$($d.PassthroughState)" -eq 'Enabled' -and "$($d.PersistedBy)" -eq 'Gallium'
        }
    }
    2 {
        Check "Get-GalliumPciDevice says $nic, $gpu, $audio are Enabled, persisted by Gallium" {
            $d = @(Get-GalliumPciDevice -Address $nic, $gpu, $audio)
            $d.Count -eq 3 -and -not ($d | Where-Object { "$($_.PassthroughState)" -ne 'Enabled' -or "$($_.PersistedBy)" -ne 'Gallium' })
        }
        # Drift: the recorded device rebound to e1000e by hand, as a host driver winning at boot would leave it.
        Step "rebind $nic to e1000e by hand (clear the override, unbind from vfio-pci, drivers_probe)" {
            Write-Sysfs "/sys/bus/pci/devices/$nic/driver_override" ''
            Write-Sysfs /sys/bus/pci/drivers/vfio-pci/unbind $nic
            Write-Sysfs /sys/bus/pci/drivers_probe $nic
            if ((Driver $nic) -ne 'e1000e') { throw "it is on $(Driver $nic)" }
        }
        Check "Get-GalliumPciDevice shows $nic Drifted, on e1000e, persisted by Gallium, with the Enable that repairs it" {
            $d = Get-GalliumPciDevice -Address $nic
            "boot 2: Problem: $($d.Problem)" | Out-Host
            "$($d.PassthroughState)" -eq 'Drifted' -and $d.Driver -eq 'e1000e' -and "$($d.PersistedBy)" -eq 'Gallium' -and
                $d.Problem -match [regex]::Escape("Enable-GalliumPciPassthrough -Address $nic")
        }
        Check "Get-GalliumIommuGroup shows group 10 not viable, its member Drifted" {
            $g = Get-GalliumIommuGroup -Id 10
            -not $g.IsViable -and "$(($g.Devices | Where-Object { "$($_.Address)" -eq $nic }).PassthroughState)" -eq 'Drifted'
        }
        Check "Test-GalliumPciPassthrough reports $nic as drifted with the command that repairs it" {
            $r = Test-GalliumPciPassthrough
            $line = @($r.Problems) -match [regex]::Escape($nic)
            "boot 2: Test-GalliumPciPassthrough: $line" | Out-Host
            # Not $r.DriftedDevices.Address: on a list that is System.Array's Address method (DESIGN.md).
            @($r.DriftedDevices | ForEach-Object { "$($_.Address)" }) -contains $nic -and "$line" -match [regex]::Escape("Enable-GalliumPciPassthrough -Address $nic")
        }
        Check "Add-GalliumVmPciDevice refuses it as PciDeviceDrifted with the Enable that repairs it" {
            Add-GalliumVmPciDevice -VmName no-such-vm -Address $nic -Confirm:$false -ErrorAction SilentlyContinue -ErrorVariable e
            $e.Count -eq 1 -and $e[0].FullyQualifiedErrorId -like 'PciDeviceDrifted*' -and $e[0].ErrorDetails.RecommendedAction -match [regex]::Escape("Enable-GalliumPciPassthrough -Address $nic")
        }
        Step "Enable-GalliumPciPassthrough -Address $nic repairs it" { Enable-GalliumPciPassthrough -Address $nic -Confirm:$false }
        Check "$nic is on vfio-pci with its override again, Enabled" {
            (Driver $nic) -eq 'vfio-pci' -and (Get-Content "/sys/bus/pci/devices/$nic/driver_override") -eq 'vfio-pci' -and
                "$((Get-GalliumPciDevice -Address $nic).PassthroughState)" -eq 'Enabled'
        }
        # driverctl owns a device: recognised, no second owner, Disable removes driverctl's record (REFERENCE §4.2).
        Step "driverctl set-override $ctl vfio-pci" { & driverctl set-override $ctl vfio-pci; if ($LASTEXITCODE) { throw "driverctl exited $LASTEXITCODE" } }
        Check "Get-GalliumPciDevice: $ctl on vfio-pci, Enabled, persisted by Driverctl" {
            $d = Get-GalliumPciDevice -Address $ctl; $d.Driver -eq 'vfio-pci' -and "$($d.PassthroughState)" -eq 'Enabled' -and "$($d.PersistedBy)" -eq 'Driverctl'
        }
        Step "Enable-GalliumPciPassthrough -Address $ctl" { Enable-GalliumPciPassthrough -Address $ctl -Confirm:$false }
        Check "no Gallium record or rule for $ctl (driverctl stays its only owner)" {
            -not (Test-Path "/etc/gallium/pci.d/$ctl") -and -not (Test-Path (& $rule $ctl)) -and (Test-Path "/etc/driverctl.d/pci-$ctl")
        }
        Step "Disable-GalliumPciPassthrough -Address $ctl" { Disable-GalliumPciPassthrough -Address $ctl -Confirm:$false }
        Check "$ctl is back on e1000e, override (null), and no record of either tool is left" {
            (Driver $ctl) -eq 'e1000e' -and (Get-Content "/sys/bus/pci/devices/$ctl/driver_override") -eq '(null)' -and (NoRecordLeft $ctl)
        }
        Check "driverctl list-overrides does not list it; Get-GalliumPciDevice says Host, persisted by None" {
            $d = Get-GalliumPciDevice -Address $ctl
            -not "$(& driverctl list-overrides 2>$null)".Contains($ctl) -and "$($d.PassthroughState)" -eq 'Host' -and "$($d.PersistedBy)" -eq 'None'
        }
        Step "Disable-GalliumPciPassthrough -Address $gpu (no initramfs image yet: no warning)" {
            Disable-GalliumPciPassthrough -Address $gpu -Confirm:$false -WarningVariable w -WarningAction SilentlyContinue
            if ($w | Where-Object { "$_" -match 'initramfs' }) { throw "unexpected warning: $w" }
        }
        Check "$gpu and $audio are back on e1000e, their records and rules gone" {
            (Driver $gpu) -eq 'e1000e' -and (Driver $audio) -eq 'e1000e' -and (NoRecordLeft $gpu) -and (NoRecordLeft $audio)
        }
    }
    4 {
        Check "Get-GalliumPciDevice says $nic is Enabled" { "$((Get-GalliumPciDevice -Address $nic).PassthroughState)" -eq 'Enabled' }
        $script:w = @()
        Step "Enable-GalliumPciPassthrough -Address $gpu" {
            Enable-GalliumPciPassthrough -Address $gpu -Confirm:$false -WarningVariable script:w -WarningAction SilentlyContinue
        }
        Check "it warns that the initramfs loads e1000e, $gpu's host driver, without its record, and prints the exact command" {
            $text = "$script:w"; "boot 4: warning: $text" | Out-Host
            $text -match [regex]::Escape($Image) -and $text -match "e1000e \(the host driver of $gpu\)" -and $text -match [regex]::Escape('update-initramfs -u -k all')
        }
        Step "Disable-GalliumPciPassthrough -Address $gpu" { Disable-GalliumPciPassthrough -Address $gpu -Confirm:$false }
        $script:w = @()
        Step "Disable-GalliumPciPassthrough -Address $nic without -UpdateInitramfs" {
            Disable-GalliumPciPassthrough -Address $nic -Confirm:$false -WarningVariable script:w -WarningAction SilentlyContinue
        }
        Check "it warns that the initramfs still holds $nic's record and prints the exact command" {
            $text = "$script:w"; "boot 4: warning: $text" | Out-Host
            $text -match [regex]::Escape($Image) -and $text -match [regex]::Escape("record of $nic") -and $text -match [regex]::Escape('update-initramfs -u -k all')
        }
        Check "$nic is back on e1000e; the image still holds its record (not regenerated yet)" { (Driver $nic) -eq 'e1000e' -and (ImageHas "etc/gallium/pci.d/$nic") }
        Step "Disable-GalliumPciPassthrough -Address $nic -UpdateInitramfs (the group is disabled already: it regenerates the image)" {
            Disable-GalliumPciPassthrough -Address $nic -UpdateInitramfs -Confirm:$false -WarningVariable w2 -WarningAction SilentlyContinue
            if ($w2) { throw "unexpected warning: $w2" }
        }
        Check "the regenerated image holds no Gallium record" { -not (@(& lsinitramfs $Image) -match '^etc/gallium/pci\.d/.') }
        Check "no Gallium record, rule or unfinished change and no driverctl record is left" {
            -not (Get-ChildItem /etc/gallium/pci.d -ErrorAction SilentlyContinue) -and -not (Get-ChildItem /etc/udev/rules.d -Filter '*gallium*') -and
                -not (Get-ChildItem /etc/driverctl.d -ErrorAction SilentlyContinue) -and -not (Get-ChildItem /etc/gallium/pending.d -ErrorAction SilentlyContinue)
        }
        Check "Get-GalliumPciDevice says $nic is Host, persisted by None" {
            $d = Get-GalliumPciDevice -Address $nic; "$($d.PassthroughState)" -eq 'Host' -and "$($d.PersistedBy)" -eq 'None'
        }
    }
    default { throw "Boot must be 1, 2 or 4 (boot 3 runs no cmdlet)." }
}
exit ([int] ($script:Failed -gt 0))
