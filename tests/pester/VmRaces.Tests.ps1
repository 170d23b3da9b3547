# One device, one VM, under races; and nothing another tool wrote is lost. Real processes (tests/pester/VmWorker.ps1, each
# its own pwsh) and the real libvirtd (qemu:///system, started by tests/prepare-host.sh); the host side is a simulated
# kernel that the workers reach through GALLIUM_SYSFS_ROOT & co., so every process shares its host lock and machine id.
# A command "waiting at its prompt" is one whose host (PromptGate.cs) holds the -Confirm question until the test answers.
# Domains are diskless type='qemu' ones named with a random prefix, removed afterwards.

BeforeAll {
    Import-Module (Join-Path $env:GALLIUM_REPO 'tests/pester/TestHelpers.psm1') -Force
    Import-GalliumModule
    $H = [Gallium.Pci.Testing.StandardHost]
    $suite = Initialize-VmSuite
    $script:libvirt = $suite.Libvirt
    $script:prefix = $suite.Prefix
    $script:kernel = New-SimulatedHost -Kind Standard
    foreach ($a in $H::FreeNic, $H::ComputeGpu) { Enable-GalliumPciPassthrough -Address $a -Confirm:$false }

    function Get-Held([string] $Vm) { @([Gallium.Pci.Libvirt.DomainXml]::ReadPciHostdevs($script:libvirt.GetDefinition($Vm)) | ForEach-Object { "$($_.Address)" }) }
    function Clear-Device([string] $Address) { Clear-LibvirtTestDevice -Libvirt $script:libvirt -Prefix $script:prefix -Address $Address }
    # Another tool: virsh attach-device --config of N channels, one process per channel, optionally paced.
    function Start-ChannelLoop([string] $Vm, [int] $Count, [string] $Tag, [double] $Pace) {
        $script = Join-Path $TestDrive "loop-$Tag.sh"
        Set-Content -LiteralPath $script -Value @'
vm="$1"; n="$2"; tag="$3"; pace="$4"; dir=$(mktemp -d)
for i in $(seq 1 "$n"); do
  printf "<channel type='pty'><target type='virtio' name='org.gallium.%s.%d'/></channel>" "$tag" "$i" > "$dir/c.xml"
  if virsh -q -c qemu:///system attach-device "$vm" "$dir/c.xml" --config >/dev/null 2>"$dir/err"; then echo "ok $i"; else echo "fail $i $(cat "$dir/err")"; fi
  [ "$pace" = 0 ] || sleep "$pace"
done
rm -rf "$dir"; echo done
'@
        $out = Join-Path $TestDrive "loop-$Tag.out"
        $p = Start-Process bash -ArgumentList @($script, $Vm, $Count, $Tag, $Pace) -RedirectStandardOutput $out -PassThru
        [pscustomobject]@{ Process = $p; Output = $out; Tag = $Tag; Count = $Count }
    }
    function Wait-ChannelLoop($Loop) {
        $Loop.Process.WaitForExit()
        $lines = @(Get-Content $Loop.Output)
        $lines[-1] | Should -Be 'done'
        @($lines | Where-Object { $_ -like 'fail *' }) | Should -BeNullOrEmpty -Because 'every virsh attach-device of the other tool succeeded'
        @($lines | Where-Object { $_ -like 'ok *' }).Count
    }
    function Get-Channels([string] $Vm, [string] $Tag) {
        @([regex]::Matches($script:libvirt.GetDefinition($Vm), "org\.gallium\.$Tag\.(\d+)") | ForEach-Object { [int]$_.Groups[1].Value } | Sort-Object -Unique)
    }
}

AfterAll {
    Remove-LibvirtTestVm -Libvirt $script:libvirt -Prefix $script:prefix
    $script:libvirt.Dispose()
    Remove-SimulatedHost
}

Describe 'One device, one VM: Add, Remove and Disable racing in separate processes' {
    BeforeAll {
        $a = New-LibvirtTestVm -Libvirt $script:libvirt -Prefix $script:prefix -Suffix 'race-a'
        $b = New-LibvirtTestVm -Libvirt $script:libvirt -Prefix $script:prefix -Suffix 'race-b'
        $w1 = Start-GalliumWorker -Kernel $script:kernel
        $w2 = Start-GalliumWorker -Kernel $script:kernel
    }
    AfterAll { Stop-GalliumWorker $w1; Stop-GalliumWorker $w2 }
    AfterEach { Clear-Device $H::FreeNic }

    It '20 simultaneous Add pairs for one device: every time exactly one VM gets it and the other Add is refused PciDeviceAssigned' {
        for ($trial = 1; $trial -le 20; $trial++) {
            Send-GalliumWorker $w1 Add $a $H::FreeNic
            Send-GalliumWorker $w2 Add $b $H::FreeNic
            $r = @((Receive-GalliumWorker $w1), (Receive-GalliumWorker $w2))
            $holders = @(@($a, $b) | Where-Object { (Get-Held $_) -contains $H::FreeNic })
            $holders.Count | Should -Be 1 -Because "trial ${trial}: one device, one VM ($($r | ConvertTo-Json -Compress))"
            @($r | Where-Object Ok).Count | Should -Be 1
            $loser = $r | Where-Object { -not $_.Ok }
            $loser.Errors[0] | Should -BeLike 'PciDeviceAssigned:*'
            $loser.Errors[0] | Should -Match ([regex]::Escape($holders[0]))
            Clear-Device $H::FreeNic
        }
    }

    It 'an Add waiting at its prompt while another process adds the device elsewhere is refused when answered Yes' {
        $gated = Start-GatedCommand Add-GalliumVmPciDevice @{ VmName = $a; Address = $H::FreeNic; Confirm = $true }
        $gated.Gate.WaitForPrompt(120000) | Should -BeTrue
        Send-GalliumWorker $w1 Add $b $H::FreeNic
        (Receive-GalliumWorker $w1).Ok | Should -BeTrue
        $gated.Gate.Answer('Yes')
        $r = Complete-GatedCommand $gated
        $r.Errors[0].FullyQualifiedErrorId | Should -BeLike 'PciDeviceAssigned,*'
        "$($r.Errors[0])" | Should -Match ([regex]::Escape($b))
        Get-Held $a | Should -BeNullOrEmpty
        Get-Held $b | Should -Be @($H::FreeNic)
    }

    It 'an Add waiting at its prompt while Disable runs is refused PciDeviceNotEnabled: never a VM holding a device back on its host driver' {
        $gated = Start-GatedCommand Add-GalliumVmPciDevice @{ VmName = $a; Address = $H::FreeNic; Confirm = $true }
        $gated.Gate.WaitForPrompt(120000) | Should -BeTrue
        Disable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false
        $script:kernel.DriverOf($H::FreeNic) | Should -Be 'e1000e'
        $gated.Gate.Answer('Yes')
        $r = Complete-GatedCommand $gated
        $r.Errors[0].FullyQualifiedErrorId | Should -BeLike 'PciDeviceNotEnabled,*'
        Get-Held $a | Should -BeNullOrEmpty
        Enable-GalliumPciPassthrough -Address $H::FreeNic -Confirm:$false
    }

    It 'a Disable waiting at its prompt while another process adds the device is refused IommuGroupAssigned and the device stays on vfio-pci' {
        $gated = Start-GatedCommand Disable-GalliumPciPassthrough @{ Address = $H::FreeNic; Confirm = $true }
        $gated.Gate.WaitForPrompt(120000) | Should -BeTrue
        Send-GalliumWorker $w1 Add $a $H::FreeNic
        (Receive-GalliumWorker $w1).Ok | Should -BeTrue
        $gated.Gate.Answer('Yes')
        $r = Complete-GatedCommand $gated
        $r.Errors[0].FullyQualifiedErrorId | Should -BeLike 'IommuGroupAssigned,*'
        "$($r.Errors[0])" | Should -Match ([regex]::Escape($a))
        $script:kernel.DriverOf($H::FreeNic) | Should -Be 'vfio-pci'
        Get-Held $a | Should -Be @($H::FreeNic)
    }

    It 'a Remove waiting at its prompt keeps the device its VM''s: an Add elsewhere meanwhile is refused, and after the Remove it succeeds' {
        Add-GalliumVmPciDevice -VmName $a -Address $H::FreeNic
        $gated = Start-GatedCommand Remove-GalliumVmPciDevice @{ VmName = $a; Address = $H::FreeNic }   # ConfirmImpact High: it asks
        $gated.Gate.WaitForPrompt(120000) | Should -BeTrue
        Send-GalliumWorker $w1 Add $b $H::FreeNic
        $refused = Receive-GalliumWorker $w1
        $refused.Ok | Should -BeFalse
        $refused.Errors[0] | Should -BeLike 'PciDeviceAssigned:*'
        $gated.Gate.Answer('Yes')
        (Complete-GatedCommand $gated).Errors | Should -BeNullOrEmpty
        Get-Held $a | Should -BeNullOrEmpty
        Send-GalliumWorker $w1 Add $b $H::FreeNic
        (Receive-GalliumWorker $w1).Ok | Should -BeTrue
        Get-Held $b | Should -Be @($H::FreeNic)
    }

    It 'Remove from one VM and Add to another at the same moment, 10 times: never both VMs hold the device' {
        for ($trial = 1; $trial -le 10; $trial++) {
            Add-GalliumVmPciDevice -VmName $a -Address $H::FreeNic
            Send-GalliumWorker $w1 Remove $a $H::FreeNic
            Send-GalliumWorker $w2 Add $b $H::FreeNic
            $removed = Receive-GalliumWorker $w1
            $added = Receive-GalliumWorker $w2
            $removed.Ok | Should -BeTrue
            Get-Held $a | Should -BeNullOrEmpty
            if ($added.Ok) { Get-Held $b | Should -Be @($H::FreeNic) }
            else {
                $added.Errors[0] | Should -BeLike 'PciDeviceAssigned:*' -Because 'the Add came first and saw the device still in the other VM'
                Get-Held $b | Should -BeNullOrEmpty
            }
            Clear-Device $H::FreeNic
        }
    }
}

Describe 'Another tool editing the same definition: a virsh attach-device --config loop of 150 channels' {
    BeforeAll {
        $serial = "<controller type='virtio-serial' index='0' ports='200'/>"   # channels take serial ports, never PCI slots
        $vm = New-LibvirtTestVm -Libvirt $script:libvirt -Prefix $script:prefix -Suffix 'loop' -Uefi -Devices $serial
    }

    It 'loses none during 20 Add/Remove cycles of a device that needs no define, and the large GPU the VM keeps keeps its fix' {
        Add-GalliumVmPciDevice -VmName $vm -Address $H::ComputeGpu
        $fix = [Gallium.Pci.Mmio.MmioDomainXml]::FixFingerprint($script:libvirt.GetDefinition($vm))
        [Gallium.Pci.Mmio.MmioDomainXml]::HasFix($script:libvirt.GetDefinition($vm)) | Should -BeTrue
        $loop = Start-ChannelLoop $vm 150 'atomic' 0.1       # paced to run through the cycles
        $cycles = 0
        while ($cycles -lt 20) {
            Add-GalliumVmPciDevice -VmName $vm -Address $H::FreeNic
            Remove-GalliumVmPciDevice -VmName $vm -Address $H::FreeNic -Force
            $cycles++
        }
        $stillRunning = -not $loop.Process.HasExited
        (Wait-ChannelLoop $loop) | Should -Be 150
        Write-Host "    the loop was still running after the 20 cycles: $stillRunning"
        @(Get-Channels $vm 'atomic') | Should -Be (1..150)
        Get-Held $vm | Should -Be @($H::ComputeGpu)
        [Gallium.Pci.Mmio.MmioDomainXml]::FixFingerprint($script:libvirt.GetDefinition($vm)) | Should -Be $fix
    }

    It 'loses none during 20 Add/Remove cycles of a large GPU, whose fix is a define: each waits for the tool to stop, or is refused VmDefinitionBusy' {
        if ((Get-Held $vm) -contains $H::ComputeGpu) { Remove-GalliumVmPciDevice -VmName $vm -Address $H::ComputeGpu -Force }
        $loop = Start-ChannelLoop $vm 150 'define' 0         # as fast as virsh goes
        $outcomes = [System.Collections.Generic.List[string]]::new()
        for ($cycle = 1; $cycle -le 20; $cycle++) {
            $holds = (Get-Held $vm) -contains $H::ComputeGpu
            $errs = $null
            $watch = [System.Diagnostics.Stopwatch]::StartNew()
            if ($holds) { Remove-GalliumVmPciDevice -VmName $vm -Address $H::ComputeGpu -Force -ErrorAction SilentlyContinue -ErrorVariable errs }
            else { Add-GalliumVmPciDevice -VmName $vm -Address $H::ComputeGpu -ErrorAction SilentlyContinue -ErrorVariable errs }
            $outcomes.Add("$(if ($holds) { 'Remove' } else { 'Add' }) $(if ($errs) { $errs[0].FullyQualifiedErrorId.Split(',')[0] } else { 'done' }) $([int]$watch.Elapsed.TotalMilliseconds) ms $(if (-not $loop.Process.HasExited) { '(loop running)' })")
            foreach ($e in @($errs)) { $e.FullyQualifiedErrorId | Should -BeLike 'VmDefinitionBusy,*' -Because 'the only refusal allowed is waiting out the other tool' }
            # Whole or nothing, whatever happened: the GPU and its fix are in the definition together or not at all.
            $xml = $script:libvirt.GetDefinition($vm)
            [Gallium.Pci.Mmio.MmioDomainXml]::HasFix($xml) | Should -Be ((Get-Held $vm) -contains $H::ComputeGpu)
        }
        (Wait-ChannelLoop $loop) | Should -Be 150
        Write-Host ("    " + ($outcomes -join "`n    "))
        @(Get-Channels $vm 'define') | Should -Be (1..150)
        @(Get-Channels $vm 'atomic') | Should -Be (1..150)
        @($outcomes | Where-Object { $_ -like '* done *' }).Count | Should -BeGreaterThan 0
    }
}
