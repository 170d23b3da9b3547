<#
.SYNOPSIS
    The cmdlet part of one boot of the boot-time binding proof (issue 13); run inside the guest by boot-binding-boot.sh.
.DESCRIPTION
    Boot 1: Enable two groups; the rule, the early unit and the initramfs-tools hook land in the real paths (on the disk).
    Boot 2: the module sees the device Enabled; Disable of group 12 warns that the initramfs is stale, -UpdateInitramfs
    regenerates it. Boot 3: a driverctl override round-trips through Enable/Disable; a device rebound by hand is shown
    drifted, refused by Add and repaired by Enable; Disable 01:00.0 -UpdateInitramfs. Boot 4: back on the host driver.
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

Import-Module $ModulePath
$rule = { param($a) "/etc/udev/rules.d/70-gallium-vfio-$a.rules" }

switch ($Boot) {
    1 {
        Step "Enable-GalliumPciPassthrough -Address $nic, $gpu (no initramfs yet: no warning)" {
            Enable-GalliumPciPassthrough -Address $nic, $gpu -Confirm:$false -WarningVariable w -WarningAction SilentlyContinue
            if ($w) { throw "unexpected warning: $w" }
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
        Check "Get-GalliumPciDevice: $nic persisted by Gallium" { "$((Get-GalliumPciDevice -Address $nic).PersistedBy)" -eq 'Gallium' }
    }
    2 {
        Check "Get-GalliumPciDevice says $nic is Enabled, persisted by Gallium" {
            $d = Get-GalliumPciDevice -Address $nic; "$($d.PassthroughState)" -eq 'Enabled' -and "$($d.PersistedBy)" -eq 'Gallium'
        }
        $w = @()
        Step "Disable-GalliumPciPassthrough -Address $gpu without -UpdateInitramfs" {
            Disable-GalliumPciPassthrough -Address $gpu -Confirm:$false -WarningVariable script:w -WarningAction SilentlyContinue
        }
        Check "it warns that the initramfs holds $gpu's record and prints the exact command" {
            $text = "$script:w"; "boot 2: warning: $text" | Out-Host
            $text -match [regex]::Escape($Image) -and $text -match [regex]::Escape($gpu) -and $text -match [regex]::Escape('update-initramfs -u -k all')
        }
        Check "$gpu and $audio are back on e1000e" { (Driver $gpu) -eq 'e1000e' -and (Driver $audio) -eq 'e1000e' }
        Check "the image still holds $gpu's record (not regenerated yet)" { ImageHas "etc/gallium/pci.d/$gpu" }
        Step "Disable-GalliumPciPassthrough -Address $gpu -UpdateInitramfs (the group is already disabled: only the initramfs)" {
            Disable-GalliumPciPassthrough -Address $gpu -UpdateInitramfs -Confirm:$false -WarningVariable w2 -WarningAction SilentlyContinue
            if ($w2) { throw "unexpected warning: $w2" }
        }
        Check "the regenerated image holds $nic's record and none of group 12" {
            (ImageHas "etc/gallium/pci.d/$nic") -and -not (ImageHas "etc/gallium/pci.d/$gpu") -and -not (ImageHas "etc/gallium/pci.d/$audio")
        }
    }
    3 {
        Check "Get-GalliumPciDevice says $nic is Enabled" { "$((Get-GalliumPciDevice -Address $nic).PassthroughState)" -eq 'Enabled' }
        # driverctl owns a device: recognised, no second owner, Disable removes driverctl's record (REFERENCE §4.2).
        Step "driverctl set-override $ctl vfio-pci" { & driverctl set-override $ctl vfio-pci; if ($LASTEXITCODE) { throw "driverctl exited $LASTEXITCODE" } }
        Check "Get-GalliumPciDevice: $ctl on vfio-pci, persisted by Driverctl" {
            $d = Get-GalliumPciDevice -Address $ctl; $d.Driver -eq 'vfio-pci' -and "$($d.PersistedBy)" -eq 'Driverctl'
        }
        Step "Enable-GalliumPciPassthrough -Address $ctl" { Enable-GalliumPciPassthrough -Address $ctl -Confirm:$false }
        Check "no Gallium record or rule for $ctl (driverctl stays its only owner)" {
            -not (Test-Path "/etc/gallium/pci.d/$ctl") -and -not (Test-Path (& $rule $ctl)) -and (Test-Path "/etc/driverctl.d/pci-$ctl")
        }
        Step "Disable-GalliumPciPassthrough -Address $ctl" { Disable-GalliumPciPassthrough -Address $ctl -Confirm:$false }
        Check "driverctl's record is gone and $ctl is back on e1000e" { -not (Test-Path "/etc/driverctl.d/pci-$ctl") -and (Driver $ctl) -eq 'e1000e' }
        Check "driverctl list-overrides lists nothing" { -not "$(& driverctl list-overrides 2>$null)".Contains($ctl) }
        # Drift: the recorded device rebound to e1000e by hand.
        Step "rebind $nic to e1000e by hand (clear the override, unbind from vfio-pci, drivers_probe)" {
            Set-Content -NoNewline "/sys/bus/pci/devices/$nic/driver_override" "`n"
            Set-Content -NoNewline /sys/bus/pci/drivers/vfio-pci/unbind $nic
            Set-Content -NoNewline /sys/bus/pci/drivers_probe $nic
            if ((Driver $nic) -ne 'e1000e') { throw "it is on $(Driver $nic)" }
        }
        Check "Get-GalliumPciDevice: $nic on e1000e but persisted by Gallium (drift is visible)" {
            $d = Get-GalliumPciDevice -Address $nic; $d.Driver -eq 'e1000e' -and "$($d.PersistedBy)" -eq 'Gallium'
        }
        Check "Add-GalliumVmPciDevice refuses it as PciDeviceDrifted with the Enable that repairs it" {
            Add-GalliumVmPciDevice -VmName no-such-vm -Address $nic -Confirm:$false -ErrorAction SilentlyContinue -ErrorVariable e
            $e.Count -eq 1 -and $e[0].FullyQualifiedErrorId -like 'PciDeviceDrifted*' -and $e[0].ErrorDetails.RecommendedAction -match "Enable-GalliumPciPassthrough -Address $nic"
        }
        Step "Enable-GalliumPciPassthrough -Address $nic repairs it" { Enable-GalliumPciPassthrough -Address $nic -Confirm:$false }
        Check "$nic is on vfio-pci again" { (Driver $nic) -eq 'vfio-pci' }
        Step "Disable-GalliumPciPassthrough -Address $nic -UpdateInitramfs" { Disable-GalliumPciPassthrough -Address $nic -UpdateInitramfs -Confirm:$false }
        Check "$nic is on e1000e and the regenerated image holds no record" { (Driver $nic) -eq 'e1000e' -and -not (ImageHas "etc/gallium/pci.d/$nic") }
    }
    4 {
        Check "Get-GalliumPciDevice says $nic is on its host driver, persisted by nothing" {
            $d = Get-GalliumPciDevice -Address $nic; "$($d.PassthroughState)" -eq 'Host' -and "$($d.PersistedBy)" -eq 'None'
        }
    }
    default { throw "Boot must be 1 to 4." }
}
exit ([int] ($script:Failed -gt 0))
