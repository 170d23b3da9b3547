using Gallium.Pci.Testing;

namespace Gallium.Pci.Tests.Simulated;

/// <summary>bind, unbind, drivers_probe, new_id, remove_id and module loading (REFERENCE §3.6, §4.1-§4.6).</summary>
public sealed class BindingTests : StandardHostTest
{
    private const string Nic = StandardHost.FreeNic;

    private void ToVfioTheLibvirtWay(string bdf)
    {
        W(Dev(bdf, "driver_override"), "vfio-pci");
        if (Kernel.DriverOf(bdf) is not null) W(Dev(bdf, "driver/unbind"), bdf);
        W("bus/pci/drivers_probe", bdf);
    }

    private void BackToTheHostTheLibvirtWay(string bdf)
    {
        W(Dev(bdf, "driver_override"), "\n");
        if (Kernel.DriverOf(bdf) is not null) W(Dev(bdf, "driver/unbind"), bdf);
        W("bus/pci/drivers_probe", bdf);
    }

    [Fact]
    public void LibvirtSequenceMovesTheDeviceToVfioAndBackExactlyAsItWas()
    {
        var before = Kernel.Snapshot();
        int group = Kernel.GroupOf(Nic)!.Value;
        ToVfioTheLibvirtWay(Nic);
        Assert.Equal("vfio-pci", Kernel.DriverOf(Nic));
        Assert.True(Kernel.DevExists($"vfio/{group}"));
        Assert.Equal("bus/pci/drivers/vfio-pci", Kernel.Resolve(Dev(Nic, "driver")));
        Assert.True(Kernel.Exists($"bus/pci/drivers/vfio-pci/{Nic}"));
        Assert.False(Kernel.Exists($"bus/pci/drivers/e1000e/{Nic}"));
        Assert.Contains("DRIVER=vfio-pci\n", Kernel.ReadText(Dev(Nic, "uevent")));
        Assert.NotEqual(before, Kernel.Snapshot());

        BackToTheHostTheLibvirtWay(Nic);
        Assert.Equal("e1000e", Kernel.DriverOf(Nic));
        Assert.False(Kernel.DevExists($"vfio/{group}"));
        Assert.Equal(before, Kernel.Snapshot());
        Assert.Empty(before.Differences(Kernel.Snapshot()));
        Assert.All(Kernel.Writes, w => Assert.Equal(0, w.Errno));
        Assert.Equal("bus/pci/drivers/e1000e/unbind", Kernel.Writes[1].ResolvedPath);
    }

    [Fact]
    public void UnbindFromTheWrongDriverOrAnUnknownDeviceIsEnodev()
    {
        WriteFails(Kernel, "bus/pci/drivers/nvme/unbind", Nic, Errnos.ENODEV);
        WriteFails(Kernel, "bus/pci/drivers/e1000e/unbind", "0000:0f:00.0", Errnos.ENODEV);
        WriteFails(Kernel, "bus/pci/drivers/e1000e/unbind", "05:00.0", Errnos.ENODEV);  // the kernel's name only
        Assert.Equal("e1000e", Kernel.DriverOf(Nic));
        W("bus/pci/drivers/e1000e/unbind", Nic + "\n");  // sysfs_streq: trailing newline is fine
        Assert.Null(Kernel.DriverOf(Nic));
        Assert.False(Kernel.Exists($"bus/pci/drivers/e1000e/{Nic}"));
        WriteFails(Kernel, "bus/pci/drivers/e1000e/unbind", Nic, Errnos.ENODEV);
    }

    [Fact]
    public void BindWithoutAMatchIsEnodevAndOnABoundDeviceEbusy()
    {
        // REFERENCE §3.3 [V]: vfio-pci matches nothing without an override.
        W(Dev(Nic, "driver/unbind"), Nic);
        WriteFails(Kernel, "bus/pci/drivers/vfio-pci/bind", Nic, Errnos.ENODEV);
        WriteFails(Kernel, "bus/pci/drivers/nvme/bind", Nic, Errnos.ENODEV);
        WriteFails(Kernel, "bus/pci/drivers/e1000e/bind", "0000:0f:00.0", Errnos.ENODEV);
        W("bus/pci/drivers/e1000e/bind", Nic);
        Assert.Equal("e1000e", Kernel.DriverOf(Nic));
        WriteFails(Kernel, "bus/pci/drivers/e1000e/bind", Nic, Errnos.EBUSY);
        W(Dev(Nic, "driver_override"), "vfio-pci");
        WriteFails(Kernel, "bus/pci/drivers/vfio-pci/bind", Nic, Errnos.EBUSY);
        Assert.Equal("e1000e", Kernel.DriverOf(Nic));
    }

    [Fact]
    public void DriversProbeOfAnUnknownDeviceIsEnodevAndOfAnUnboundOneFindsTheFirstMatchingDriver()
    {
        WriteFails(Kernel, "bus/pci/drivers_probe", "0000:0f:00.0", Errnos.ENODEV);
        W(Dev(Nic, "driver/unbind"), Nic);
        W("bus/pci/drivers_probe", Nic);
        Assert.Equal("e1000e", Kernel.DriverOf(Nic));
        W("bus/pci/drivers_probe", StandardHost.UnboundDevice);  // rtsx_pci is not loaded: nothing binds, no error
        Assert.Null(Kernel.DriverOf(StandardHost.UnboundDevice));
        Assert.Null(Kernel.Load("rtsx_pci"));
        Assert.Equal("rtsx_pci", Kernel.DriverOf(StandardHost.UnboundDevice));
    }

    [Fact]
    public void VfioProbeFailuresAreSilent()
    {
        // REFERENCE §4.5 [V]: vfio-pci forced onto a root port: probe fails (-EINVAL), drivers_probe still succeeds.
        const string port = StandardHost.GpuRootPort;
        ToVfioTheLibvirtWay(port);
        Assert.Null(Kernel.DriverOf(port));
        Assert.All(Kernel.Writes, w => Assert.Equal(0, w.Errno));
        // An explicit bind reports the probe error.
        WriteFails(Kernel, "bus/pci/drivers/vfio-pci/bind", port, Errnos.EINVAL);
        BackToTheHostTheLibvirtWay(port);
        Assert.Equal("pcieport", Kernel.DriverOf(port));

        // REFERENCE §4.4: a PF with VFs enabled refuses vfio-pci (EBUSY in dmesg), silently. A VF held by a VM keeps i40e
        // from disabling SR-IOV when it is unbound.
        Kernel.HoldDevice(StandardHost.SriovVf0);
        ToVfioTheLibvirtWay(StandardHost.SriovPf);
        Assert.Equal(4, Kernel.NumVfs(StandardHost.SriovPf));
        Assert.Null(Kernel.DriverOf(StandardHost.SriovPf));
        Assert.Equal(0, Kernel.Writes[^1].Errno);
        WriteFails(Kernel, "bus/pci/drivers/vfio-pci/bind", StandardHost.SriovPf, Errnos.EBUSY);
    }

    [Fact]
    public void PcieToPciBridgeNeverGetsPcieport()
    {
        Assert.Null(Kernel.DriverOf(StandardHost.PciBridge));
        W("bus/pci/drivers_probe", StandardHost.PciBridge);
        Assert.Null(Kernel.DriverOf(StandardHost.PciBridge));
        WriteFails(Kernel, "bus/pci/drivers/pcieport/bind", StandardHost.PciBridge, Errnos.ENODEV);
    }

    [Fact]
    public void GroupNodeStaysWhileAnyMemberIsOnVfio()
    {
        int group = Kernel.GroupOf(StandardHost.Gpu)!.Value;
        ToVfioTheLibvirtWay(StandardHost.Gpu);
        ToVfioTheLibvirtWay(StandardHost.GpuAudio);
        BackToTheHostTheLibvirtWay(StandardHost.Gpu);
        Assert.True(Kernel.DevExists($"vfio/{group}"));
        BackToTheHostTheLibvirtWay(StandardHost.GpuAudio);
        Assert.False(Kernel.DevExists($"vfio/{group}"));
        Assert.Equal("snd_hda_intel", Kernel.DriverOf(StandardHost.GpuAudio));
    }

    [Fact]
    public void VfioNotLoadedLeavesTheDeviceDriverlessUntilTheModuleLoadsAndAutoBinds()
    {
        var k = SimulatedHosts.Standard(NewRoot("noload"), new HostOptions { VfioPciLoaded = false });
        Assert.False(k.Exists("bus/pci/drivers/vfio-pci"));
        Assert.False(k.DevExists("vfio/vfio"));
        Assert.False(k.IsModuleLoaded("vfio_pci"));
        Assert.True(k.IsAvailable("vfio-pci"));
        k.Write(Dev(Nic, "driver_override"), "vfio-pci", Timeout);
        k.Write(Dev(Nic, "driver/unbind"), Nic, Timeout);
        k.Write("bus/pci/drivers_probe", Nic, Timeout);
        Assert.Null(k.DriverOf(Nic));                       // REFERENCE §4.6: probe silently succeeds, driverless
        Assert.Null(k.Load("vfio-pci"));                    // TEST A: loading binds every device whose override is vfio-pci
        Assert.Equal("vfio-pci", k.DriverOf(Nic));
        Assert.True(k.DevExists("vfio/vfio"));
        Assert.True(k.DevExists($"vfio/{k.GroupOf(Nic)}"));
        Assert.True(k.IsModuleLoaded("vfio"));
        Assert.True(k.IsModuleLoaded("vfio_iommu_type1"));
        Assert.Contains("vfio_pci ", k.ReadProc("modules"));
        Assert.Null(k.Load("vfio_pci"));                    // already loaded
    }

    [Fact]
    public void ModuleLoadCanBeProhibitedOrUnavailable()
    {
        var k = SimulatedHosts.Standard(NewRoot("prohibited"), new HostOptions { VfioPciLoaded = false, VfioPciLoadFailure = "administratively prohibited" });
        Assert.Equal("administratively prohibited", k.Load("vfio-pci"));
        Assert.False(k.Exists("bus/pci/drivers/vfio-pci"));
        var gone = SimulatedHosts.Standard(NewRoot("gone"), new HostOptions { VfioPciLoaded = false, VfioPciAvailable = false });
        Assert.False(gone.IsAvailable("vfio-pci"));
        Assert.Contains("not found", gone.Load("vfio-pci"));
        Assert.Contains("not found", Kernel.Load("no_such_module"));
        Assert.False(Kernel.IsAvailable("no_such_module"));
    }

    [Fact]
    public void NewIdBindsEveryUnboundMatchingDeviceAndRemoveIdUnbindsNothing()
    {
        // REFERENCE §4.3 TEST G: new_id "8086 10d3" grabs every unbound 82574L; bound ones are untouched.
        W(Dev(Nic, "driver/unbind"), Nic);
        W("bus/pci/drivers/vfio-pci/new_id", "8086 10d3");
        Assert.Equal("vfio-pci", Kernel.DriverOf(Nic));
        Assert.Equal("e1000e", Kernel.DriverOf(StandardHost.HostNic));
        WriteFails(Kernel, "bus/pci/drivers/vfio-pci/new_id", "8086 10d3", Errnos.EEXIST);
        // A later probe of an unbound 82574L goes to the first registered matching driver: e1000e here, since it was
        // registered before vfio-pci (REFERENCE §4.3's guest loaded vfio-pci first, so there vfio-pci won).
        W(Dev(StandardHost.HostNic, "driver/unbind"), StandardHost.HostNic);
        W("bus/pci/drivers_probe", StandardHost.HostNic);
        Assert.Equal("e1000e", Kernel.DriverOf(StandardHost.HostNic));
        W("bus/pci/drivers/vfio-pci/remove_id", "8086 10d3");
        Assert.Equal("vfio-pci", Kernel.DriverOf(Nic));
        WriteFails(Kernel, "bus/pci/drivers/vfio-pci/remove_id", "8086 10d3", Errnos.ENODEV);
    }

    [Fact]
    public void NewIdValidatesItsFieldsAndRespectsOverrides()
    {
        WriteFails(Kernel, "bus/pci/drivers/vfio-pci/new_id", "8086", Errnos.EINVAL);
        WriteFails(Kernel, "bus/pci/drivers/vfio-pci/remove_id", "zz 10d3", Errnos.EINVAL);
        WriteFails(Kernel, "bus/pci/drivers/e1000e/new_id", "8086 10d3", Errnos.EEXIST);  // in e1000e's static table
        W(Dev(Nic, "driver_override"), "none");
        W(Dev(Nic, "driver/unbind"), Nic);
        W("bus/pci/drivers/vfio-pci/new_id", "0x8086 0x10d3 ffffffff ffffffff 020000 ffffff");
        Assert.Null(Kernel.DriverOf(Nic));  // the override admits only "none"
    }

    [Fact]
    public void UnbindingAHostDriverTakesItsNetdevDiskOrConsoleWithIt()
    {
        W(Dev(StandardHost.HostNic, "driver/unbind"), StandardHost.HostNic);
        Assert.False(Kernel.Exists("class/net/enp4s0"));
        Assert.DoesNotContain("enp4s0", Kernel.ReadProc("net/route"));
        W("bus/pci/drivers_probe", StandardHost.HostNic);
        Assert.Equal(Kernel.DevicePath(StandardHost.HostNic), Kernel.Resolve("class/net/enp4s0/device"));
        Assert.Contains("enp4s0\t00000000", Kernel.ReadProc("net/route"));

        W(Dev(StandardHost.OnboardVga, "driver/unbind"), StandardHost.OnboardVga);
        Assert.Equal("0\n", Kernel.ReadText("class/vtconsole/vtcon1/bind"));
        Assert.False(Kernel.Exists("class/graphics/fb0"));

        W(Dev(StandardHost.Nvme, "driver/unbind"), StandardHost.Nvme);
        Assert.False(Kernel.Exists("dev/block/259:2"));
        W("bus/pci/drivers/nvme/bind", StandardHost.Nvme);
        Assert.StartsWith(Kernel.DevicePath(StandardHost.Nvme), Kernel.Resolve("dev/block/259:2"));
    }

    [Fact]
    public void GroupOwnedByUserspaceRefusesDmaApiDrivers()
    {
        // REFERENCE §4.5 table: while QEMU owns the group, drivers_probe (e1000e) -> EINVAL, bind -> EBUSY, pci-stub allowed.
        int group = Kernel.GroupOf(Nic)!.Value;
        ToVfioTheLibvirtWay(Nic);
        Kernel.ClaimGroup(group);
        WriteFails(Kernel, Dev(Nic, "driver/unbind"), Nic, Errnos.ETIMEDOUT);  // vfio-pci remove() waits for the VM
        Kernel.ReleaseGroup(group);
        W(Dev(Nic, "driver_override"), "\n");
        W(Dev(Nic, "driver/unbind"), Nic);
        Kernel.ClaimGroup(group);
        WriteFails(Kernel, "bus/pci/drivers_probe", Nic, Errnos.EINVAL);
        WriteFails(Kernel, "bus/pci/drivers/e1000e/bind", Nic, Errnos.EBUSY);
        Assert.Null(Kernel.DriverOf(Nic));
        Assert.Null(Kernel.Load("pci-stub"));
        W(Dev(Nic, "driver_override"), "pci-stub");
        W("bus/pci/drivers_probe", Nic);
        Assert.Equal("pci-stub", Kernel.DriverOf(Nic));
    }

    [Fact]
    public void DevicesCanBootOnVfioAndReturnToTheirHostDrivers()
    {
        var k = SimulatedHosts.Standard(NewRoot("onvfio"), new HostOptions { VfioDevices = [StandardHost.Gpu, StandardHost.GpuAudio] });
        int group = k.GroupOf(StandardHost.Gpu)!.Value;
        Assert.Equal("vfio-pci", k.DriverOf(StandardHost.Gpu));
        Assert.Equal("vfio-pci", k.OverrideOf(StandardHost.GpuAudio));
        Assert.Equal([group.ToString(System.Globalization.CultureInfo.InvariantCulture), "vfio"], k.Snapshot().VfioNodes);  // ordinal order
        foreach (var bdf in new[] { StandardHost.Gpu, StandardHost.GpuAudio })
        {
            k.Write(Dev(bdf, "driver_override"), "\n", Timeout);
            k.Write(Dev(bdf, "driver/unbind"), bdf, Timeout);
            k.Write("bus/pci/drivers_probe", bdf, Timeout);
        }
        Assert.Equal("nvidia", k.DriverOf(StandardHost.Gpu));
        Assert.Equal("snd_hda_intel", k.DriverOf(StandardHost.GpuAudio));
        Assert.Equal(["vfio"], k.Snapshot().VfioNodes);
    }

    [Fact]
    public void WithTheIommuOffVfioPciCannotProbe()
    {
        var k = SimulatedHosts.IommuOff(NewRoot("off"));
        k.Write(Dev(Nic, "driver_override"), "vfio-pci", Timeout);
        k.Write(Dev(Nic, "driver/unbind"), Nic, Timeout);
        k.Write("bus/pci/drivers_probe", Nic, Timeout);
        Assert.Null(k.DriverOf(Nic));
        Assert.Equal(["vfio"], k.Snapshot().VfioNodes);
    }
}
