<#
.SYNOPSIS
    The product guide, walked for real inside the QEMU test guest (tools/Demo.ps1 boots it): what an admin types and sees.
.DESCRIPTION
    Runs only in the disposable guest of tests/guest/run-guest.sh (Debian's kernel with an emulated VT-d IOMMU; its /sys
    is safe to change, /proc/cmdline carries gallium.testguest=1). Starts the guest's own libvirtd, defines two stopped
    VMs, then: readiness, inventory, IOMMU groups, Enable (-WhatIf, then for real), Add to a stopped VM, the VM started
    with the device, Disable refused while assigned, Remove (answering its confirmation prompt), Disable, and the
    large-BAR MMIO fix on the pci-testdev stand-in. After each step it shows where the state lives (sysfs, /dev/vfio,
    the persisted files, virsh dumpxml).
#>
param([Parameter(Mandatory)] [string] $ModulePath)
$ErrorActionPreference = 'Stop'
# Progress bars are for an interactive console; on the serial console they become long runs of redrawn lines.
$ProgressPreference = 'SilentlyContinue'
Set-StrictMode -Version 3.0

if ((Get-Content /proc/cmdline -Raw) -notmatch 'gallium\.testguest=1') {
    throw 'Demo-Guest.ps1 changes /sys and libvirt: it runs only inside the test guest (tools/Demo.ps1 boots it).'
}

$Nic = '0000:01:00.0'        # e1000e, alone in its IOMMU group
$Bar = '0000:02:00.0'        # pci-testdev with a 1 GiB 64-bit prefetchable BAR (the large-VRAM GPU stand-in)
$Uri = 'qemu:///system'
$script:Step = 0
$script:Started = Get-Date
$script:StepStarted = Get-Date
$Timings = [System.Collections.Generic.List[string]]::new()

function Section([string] $Title) {
    if ($script:Step -gt 0) { $Timings.Add(('{0,5:N1}s  {1}' -f ((Get-Date) - $script:StepStarted).TotalSeconds, $script:Title)) }
    $script:Step++
    $script:Title = "$script:Step. $Title"
    $script:StepStarted = Get-Date
    Write-Host ''
    Write-Host ('=' * 100)
    Write-Host "== $script:Title"
    Write-Host ('=' * 100)
}
function Say([string] $Text) { Write-Host "# $Text" }
# What the admin types at the PowerShell prompt, then what PowerShell shows (errors rendered as the console renders them).
function Show([string] $Command) {
    Write-Host ''
    Write-Host "PS> $Command"
    $ErrorActionPreference = 'Continue'
    # Wide enough for the default table views; errors come out in the console's concise view ("Cmdlet: message").
    & { Invoke-Expression $Command } 2>&1 | Out-String -Stream -Width 150 | ForEach-Object { Write-Host $_ }
}
# A look at the state behind the cmdlets, with the shell command an admin would use.
function Look([string] $Command) {
    Write-Host "`$ $Command"
    & bash -c "$Command 2>&1" | ForEach-Object { Write-Host "    $_" }
}
function Invoke-Virsh {
    $out = & virsh -q -c $Uri @args 2>&1
    if ($LASTEXITCODE -ne 0) { throw "virsh $($args -join ' ') failed: $out" }
}

Import-Module $ModulePath

Section 'The box: a real Debian kernel with an IOMMU, in a QEMU guest'
Say 'Everything below runs inside a disposable QEMU guest; nothing on the machine running the demo is touched.'
Look 'uname -r; cat /proc/cmdline'
Say 'The guest has no libvirtd of its own: start one (as a systemd host would at boot) and define two stopped VMs.'
Look "bash $(Join-Path $PSScriptRoot '../tests/libvirt/start-libvirtd.sh')"
$tmp = [System.IO.Directory]::CreateTempSubdirectory('gallium-demo').FullName
@"
<domain type='qemu'>
  <name>web1</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>
"@ | Set-Content "$tmp/web1.xml"
# gpu1 boots OVMF with its aperture once set to 512 MiB (OVMF rounds it to 1 GiB) and two spare hot-plug root ports (OVMF
# pads each): too small for a 1 GiB BAR, the failure a 32+ GiB GPU meets in the default window (REFERENCE §6.1, §6.4).
@"
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>gpu1</name><memory unit='MiB'>2048</memory><vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
  </os>
  <features><acpi/></features>
  <cpu mode='custom' match='exact'><model fallback='allow'>Skylake-Client</model></cpu>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='pci' model='pcie-root'/>
    <controller type='pci' model='pcie-root-port'/>
    <controller type='pci' model='pcie-root-port'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-fw_cfg'/>
    <qemu:arg value='name=opt/ovmf/X-PciMmio64Mb,string=512'/>
  </qemu:commandline>
</domain>
"@ | Set-Content "$tmp/gpu1.xml"
Invoke-Virsh define "$tmp/web1.xml"
Invoke-Virsh define "$tmp/gpu1.xml"
Look "virsh -c $Uri list --all"

Section 'Is this host ready for passthrough?'
Show 'Test-GalliumPciPassthrough'

Section 'What devices are there, and where are they now?'
Show 'Get-GalliumPciDevice | Format-Table'
Say 'Each device is a directory under /sys/bus/pci/devices/<address>; "driver" links to its current driver.'

Section 'IOMMU groups: the unit of passthrough'
Show 'Get-GalliumIommuGroup'
Say 'The kernel keeps them in /sys/kernel/iommu_groups/<id>/devices.'
Look "ls /sys/kernel/iommu_groups/$(Split-Path -Leaf (Get-Item /sys/bus/pci/devices/$Nic/iommu_group).LinkTarget)/devices"

Section "Enable passthrough for the NIC at ${Nic}: first ask what it would do"
Show "Enable-GalliumPciPassthrough -Address $Nic -WhatIf"
Look "readlink /sys/bus/pci/devices/$Nic/driver"

Section 'Enable it for real'
Show "Enable-GalliumPciPassthrough -Address $Nic"
Show "Get-GalliumPciDevice -Address $Nic"
Say 'Where to see it: the driver link and override in sysfs, the VFIO group node QEMU will open, and the files that'
Say 'rebind it at the next boot (a record, a udev rule, the apply script).'
Look "readlink /sys/bus/pci/devices/$Nic/driver; cat /sys/bus/pci/devices/$Nic/driver_override; ls -l /dev/vfio"
Look "cat /etc/gallium/pci.d/$Nic; grep -v '^#' /etc/udev/rules.d/70-gallium-vfio-$Nic.rules; ls -l /usr/local/libexec/gallium"

Section 'Give the device to the stopped VM web1'
Show "Add-GalliumVmPciDevice -VmName web1 -Address $Nic"
Show 'Get-GalliumVmPciDevice -VmName web1'
Say 'Where to see it: the VM''s persistent definition.'
Look "virsh -c $Uri dumpxml --inactive web1 | sed -n '/<hostdev/,/<\/hostdev>/p'"

Section 'Start the VM with the device'
Say 'A diskless VM has nothing to boot, so start it paused: QEMU is up and holds the device.'
Look "virsh -c $Uri start --paused web1; virsh -c $Uri domstate web1"
Look "ls -l /proc/`$(cat /run/libvirt/qemu/web1.pid)/fd | grep /dev/vfio"
Show "Get-GalliumPciDevice -Address $Nic | Format-Table"

Section 'Disable is refused while a VM holds the device'
Show "Disable-GalliumPciPassthrough -Address $Nic"
Show '$Error[0] | Format-List FullyQualifiedErrorId, CategoryInfo, TargetObject -Force'
Look "readlink /sys/bus/pci/devices/$Nic/driver"

Section 'Stop the VM and take the device out (Remove asks first)'
Look "virsh -c $Uri destroy web1; virsh -c $Uri domstate web1"
Say 'Remove-GalliumVmPciDevice has ConfirmImpact High, so it asks, with the real console prompt; the demo types the'
Say 'answer "y" for you (a scripted console input). In scripts, -Confirm:$false or -Force skips the prompt.'
$keyboard = [Console]::In
[Console]::SetIn([System.IO.StringReader]::new("y`n"))
try { Show "Remove-GalliumVmPciDevice -VmName web1 -Address $Nic" } finally { [Console]::SetIn($keyboard) }
Look "virsh -c $Uri dumpxml --inactive web1 | grep -c '<hostdev' || true"

Section 'Disable: the NIC goes back to its host driver'
Show "Disable-GalliumPciPassthrough -Address $Nic"
Look "readlink /sys/bus/pci/devices/$Nic/driver; cat /sys/bus/pci/devices/$Nic/driver_override; ls /dev/vfio; ls /etc/gallium/pci.d"

Section "Large BARs: a device whose 64-bit BAR does not fit the VM's firmware window"
Say "$Bar is a pci-testdev with a 1 GiB 64-bit prefetchable BAR, standing in for a GPU with 32+ GiB of VRAM."
Show "(Get-GalliumPciDevice -Address $Bar).Bars | Format-Table"
Show "Enable-GalliumPciPassthrough -Address $Bar"
Say 'gpu1 boots OVMF with its 64-bit window cut to 512 MiB (rounded up to 1 GiB by OVMF): the BAR would not fit and'
Say 'the device would fail to start in the guest. Add sees that and sizes the window in the same change:'
Show "Add-GalliumVmPciDevice -VmName gpu1 -Address $Bar -WhatIf"
Show "Add-GalliumVmPciDevice -VmName gpu1 -Address $Bar"
Show 'Get-GalliumVmPciDevice -VmName gpu1'
Say 'Where to see it: the fix is in the definition (and noted in <metadata>, so Remove can undo it).'
Look "virsh -c $Uri dumpxml --inactive gpu1 | grep -e maxphysaddr -e X-PciMmio64Mb"
Say 'VMs that got such devices before the module was used are fixed with Repair-GalliumVmPciDevice.'
Say 'Removing the last large-BAR device takes the fix out again (only what Add put in).'
Show "Remove-GalliumVmPciDevice -VmName gpu1 -Address $Bar -Confirm:`$false"
Look "virsh -c $Uri dumpxml --inactive gpu1 | grep -c -e maxphysaddr -e '<hostdev' || true"
Show "Disable-GalliumPciPassthrough -Address $Bar"

Write-Host ''
$Timings.Add(('{0,5:N1}s  {1}' -f ((Get-Date) - $script:StepStarted).TotalSeconds, $script:Title))
$Timings | ForEach-Object { Write-Host $_ }
Write-Host ('Demo walked in {0:N0}s inside the guest.' -f ((Get-Date) - $script:Started).TotalSeconds)
