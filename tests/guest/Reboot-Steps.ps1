<#
.SYNOPSIS
    The cmdlet part of one boot of the reboot persistence test (issue 7.2); run inside the guest by reboot-boot.sh.
.DESCRIPTION
    Boot 1: Enable the device (its record, udev rule and apply script land under GALLIUM_STATE_ROOT, on the persistent
    disk) and add it to a stopped VM. Boot 2: the module sees it Assigned, the VM starts with it; then Remove and
    Disable. Boot 3: the module sees it back on its host driver. One "PASS/FAIL [boot N] name" line per check; exit 1
    when any failed.
#>
param(
    [Parameter(Mandatory)] [int] $Boot,
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $VmName,
    [Parameter(Mandatory)] [string] $Address,
    [Parameter(Mandatory)] [string] $Group
)
$ErrorActionPreference = 'Stop'
# Progress bars are for an interactive console; on the serial console they become long runs of redrawn lines.
$ProgressPreference = 'SilentlyContinue'
Set-StrictMode -Version 3.0
$script:Failed = 0

function Check([string] $Name, [scriptblock] $Test) {
    # The step in progress, for the boot script's watchdog (watchdog.sh) to name when this process hangs.
    if ($env:GALLIUM_STEP_FILE) { [IO.File]::WriteAllText($env:GALLIUM_STEP_FILE, "$([DateTime]::UtcNow.ToString('HH:mm:ss')) $Name") }
    $why = ''
    try { $ok = [bool] (& $Test) } catch { $ok = $false; $why = " ($($_.Exception.Message))" }
    if ($ok) { "PASS [boot $Boot] $Name" } else { "FAIL [boot $Boot] $Name$why"; $script:Failed++ }
}
function Step([string] $Name, [scriptblock] $Action) {
    Check $Name { & $Action; $true }
}
function Get-KernelDriver {
    $link = "/sys/bus/pci/devices/$Address/driver"
    if (Test-Path $link) { Split-Path -Leaf (Get-Item $link).LinkTarget } else { '(none)' }
}

if ($env:GALLIUM_STEP_FILE) { [IO.File]::WriteAllText($env:GALLIUM_STEP_FILE, 'Import-Module') }
Import-Module $ModulePath
$state = $env:GALLIUM_STATE_ROOT
$record = "$state/etc/gallium/pci.d/$Address"
$rule = "$state/etc/udev/rules.d/70-gallium-vfio-$Address.rules"
$applyScript = "$state/usr/local/libexec/gallium/gallium-vfio-apply"

switch ($Boot) {
    1 {
        Step "Enable-GalliumPciPassthrough -Address $Address" { Enable-GalliumPciPassthrough -Address $Address -Confirm:$false }
        Check "$Address on vfio-pci" { (Get-KernelDriver) -eq 'vfio-pci' }
        Check "its record is on the persistent disk ($record says vfio-pci)" { (Get-Content $record -Raw) -eq "vfio-pci`n" }
        Check "its udev rule is on the disk and runs the apply script" { (Get-Content $rule -Raw) -match [regex]::Escape("RUN+=`"$applyScript %k`"") }
        Check "the apply script is on the disk and executable" { (Get-Item $applyScript).UnixFileMode.HasFlag([IO.UnixFileMode]::UserExecute) }
        Step "Add-GalliumVmPciDevice -VmName $VmName -Address $Address" { Add-GalliumVmPciDevice -VmName $VmName -Address $Address -Confirm:$false }
        Check "Get-GalliumVmPciDevice shows $VmName holding $Address" { "$((Get-GalliumVmPciDevice -VmName $VmName).Address)" -eq $Address }
    }
    2 {
        Check "Get-GalliumPciDevice says $Address is Assigned" { "$((Get-GalliumPciDevice -Address $Address).PassthroughState)" -eq 'Assigned' }
        Check "Get-GalliumVmPciDevice shows $VmName still holding $Address" { "$((Get-GalliumVmPciDevice -VmName $VmName).Address)" -eq $Address }
        # The surviving assignment is usable: the VM starts with the device and its QEMU opens the group.
        Step "$VmName starts (paused) with the device" {
            $c = [Gallium.Pci.Libvirt.LibvirtConnection]::Open('qemu:///system')
            try { $c.StartDomain($VmName, $true) } finally { $c.Dispose() }
        }
        Check "its QEMU holds /dev/vfio/$Group" {
            $qemuPid = (Get-Content "/run/libvirt/qemu/$VmName.pid" -Raw).Trim()
            @(Get-ChildItem "/proc/$qemuPid/fd" | ForEach-Object LinkTarget) -contains "/dev/vfio/$Group"
        }
        Step "virsh destroy $VmName" { & virsh -q -c qemu:///system destroy $VmName | Out-Null; if ($LASTEXITCODE) { throw "virsh exited $LASTEXITCODE" } }
        Step "Remove-GalliumVmPciDevice -VmName $VmName -Address $Address" { Remove-GalliumVmPciDevice -VmName $VmName -Address $Address -Confirm:$false }
        Step "Disable-GalliumPciPassthrough -Address $Address" { Disable-GalliumPciPassthrough -Address $Address -Confirm:$false }
        Check "$Address back on e1000e" { (Get-KernelDriver) -eq 'e1000e' }
        Check "its record and udev rule are gone from the disk" { -not (Test-Path $record) -and -not (Test-Path $rule) }
    }
    3 {
        Check "Get-GalliumPciDevice says $Address is on its host driver (Host)" { "$((Get-GalliumPciDevice -Address $Address).PassthroughState)" -eq 'Host' }
        Check "Get-GalliumVmPciDevice shows no assignment in $VmName" { @(Get-GalliumVmPciDevice -VmName $VmName).Count -eq 0 }
    }
    default { throw "Boot must be 1, 2 or 3." }
}
exit ([int] ($script:Failed -gt 0))
