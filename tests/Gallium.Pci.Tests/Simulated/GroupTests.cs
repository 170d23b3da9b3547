using Gallium.Pci.Host;
using Gallium.Pci.Testing;

namespace Gallium.Pci.Tests.Simulated;

/// <summary>IOMMU groups of the ready-made hosts and of built topologies (REFERENCE §3.5, §4.5).</summary>
public sealed class GroupTests : TempDirectoryTest
{
    [Fact]
    public void StandardHostGroupsAreAsDescribed()
    {
        var k = SimulatedHosts.Standard(NewRoot());
        int gpu = k.GroupOf(StandardHost.Gpu)!.Value;
        Assert.Equal([StandardHost.Gpu, StandardHost.GpuAudio], k.GroupMembers(gpu));
        Assert.NotEqual(gpu, k.GroupOf(StandardHost.GpuRootPort));
        Assert.Equal([StandardHost.ComputeGpu], k.GroupMembers(k.GroupOf(StandardHost.ComputeGpu)!.Value));
        Assert.Equal([StandardHost.PciBridge, StandardHost.LegacyAudio, StandardHost.LegacyNic], k.GroupMembers(k.GroupOf(StandardHost.PciBridge)!.Value));
        Assert.Equal([StandardHost.HostBridge, StandardHost.Lpc, StandardHost.Smbus], k.GroupMembers(k.GroupOf(StandardHost.HostBridge)!.Value));
        Assert.Equal([StandardHost.SriovPf], k.GroupMembers(k.GroupOf(StandardHost.SriovPf)!.Value));
        Assert.Equal([StandardHost.SriovPf2], k.GroupMembers(k.GroupOf(StandardHost.SriovPf2)!.Value));
        foreach (var vf in StandardHost.SriovVfs) Assert.Equal([vf], k.GroupMembers(k.GroupOf(vf)!.Value));
        Assert.Equal([StandardHost.FreeNic], k.GroupMembers(k.GroupOf(StandardHost.FreeNic)!.Value));
        Assert.Equal([StandardHost.Nvme], k.GroupMembers(k.GroupOf(StandardHost.Nvme)!.Value));
        // Every device is in exactly one group, and the groups are numbered from 0 without gaps.
        Assert.Equal(k.DeviceAddresses.Count, k.Groups.Sum(g => k.GroupMembers(g).Count));
        Assert.Equal(Enumerable.Range(0, k.Groups.Count), k.Groups);
        Assert.Equal(0, k.GroupOf(StandardHost.HostBridge));
    }

    [Fact]
    public void IommuOffHasNoGroupsButKeepsTheFirmwareTable()
    {
        var k = SimulatedHosts.IommuOff(NewRoot());
        var sys = new LinuxSysfs(k.SysfsRoot);
        Assert.Empty(sys.List("kernel/iommu_groups"));
        Assert.True(sys.Exists("kernel/iommu_groups"));
        Assert.Empty(sys.List("class/iommu"));
        Assert.True(sys.Exists("firmware/acpi/tables/DMAR"));
        Assert.Contains("intel_iommu=off", k.ReadProc("cmdline"));
        Assert.All(k.DeviceAddresses, a => Assert.Null(k.GroupOf(a)));
        Assert.False(sys.Exists(Path.Combine("bus/pci/devices", StandardHost.Gpu, "iommu_group")));
        Assert.Contains(" PCI-MSIX-", k.ReadProc("interrupts"));  // no interrupt remapping
        Assert.Equal(SimulatedHosts.Standard(NewRoot("other")).DeviceAddresses, k.DeviceAddresses);
    }

    [Fact]
    public void FirmwareOffHasNoDmarTable()
    {
        var k = SimulatedHosts.FirmwareOff(NewRoot());
        var sys = new LinuxSysfs(k.SysfsRoot);
        Assert.False(sys.Exists("firmware/acpi/tables/DMAR"));
        Assert.Empty(sys.List("kernel/iommu_groups"));
        Assert.Empty(sys.List("class/iommu"));
    }

    [Fact]
    public void AmdHostHasIvrsIvhdAndSvm()
    {
        var k = SimulatedHosts.Amd(NewRoot());
        var sys = new LinuxSysfs(k.SysfsRoot);
        Assert.True(sys.Exists("firmware/acpi/tables/IVRS"));
        Assert.False(sys.Exists("firmware/acpi/tables/DMAR"));
        Assert.Equal(["ivhd0"], sys.List("class/iommu"));
        Assert.Equal($"{k.DevicePath(StandardHost.AmdIommu)}/iommu/ivhd0", sys.Resolve("class/iommu/ivhd0"));
        Assert.Null(k.GroupOf(StandardHost.AmdIommu));
        Assert.Contains("AuthenticAMD", k.ReadProc("cpuinfo"));
        Assert.Matches(@"flags\t\t: .* svm ", k.ReadProc("cpuinfo"));
        Assert.DoesNotContain("intel_iommu", k.ReadProc("cmdline"));
        Assert.Equal([StandardHost.Gpu, StandardHost.GpuAudio], k.GroupMembers(k.GroupOf(StandardHost.Gpu)!.Value));
        Assert.Equal("ast", k.DriverOf(StandardHost.OnboardVga));
    }

    [Fact]
    public void RootPortsWithoutAcsInOneSlotMergeWithTheirSubtrees()
    {
        // REFERENCE §4.5 TEST E/F: root ports 00:04.0/00:04.1 with ACS disabled and their NICs form one group.
        var k = HostTopology.Create()
            .RootPort("00:04.0", 3).Acs(false)
            .RootPort("00:04.1", 4).Acs(false)
            .RootPort("00:05.0", 5)
            .Endpoint("03:00.0", 0x8086, 0x10d3, 0x020000, "e1000e")
            .Endpoint("04:00.0", 0x8086, 0x10d3, 0x020000, "e1000e")
            .Endpoint("05:00.0", 0x8086, 0x10d3, 0x020000, "e1000e")
            .Build(NewRoot());
        Assert.Equal(["0000:00:04.0", "0000:00:04.1", "0000:03:00.0", "0000:04:00.0"], k.GroupMembers(k.GroupOf("00:04.0")!.Value));
        Assert.Equal(["0000:05:00.0"], k.GroupMembers(k.GroupOf("05:00.0")!.Value));
        Assert.NotEqual(k.GroupOf("00:05.0"), k.GroupOf("05:00.0"));
    }

    [Fact]
    public void MultiFunctionEndpointsShareUnlessTheyHaveAcs()
    {
        var k = HostTopology.Create()
            .RootPort("00:01.0", 1).RootPort("00:02.0", 2)
            .Endpoint("01:00.0", 0x10de, 0x2684, 0x030000, "nvidia").Endpoint("01:00.1", 0x10de, 0x22ba, 0x040300, "snd_hda_intel")
            .Endpoint("02:00.0", 0x8086, 0x1572, 0x020000, "i40e").Acs(true).Endpoint("02:00.1", 0x8086, 0x1572, 0x020000, "i40e").Acs(true)
            .Build(NewRoot());
        Assert.Equal(k.GroupOf("01:00.0"), k.GroupOf("01:00.1"));
        Assert.NotEqual(k.GroupOf("02:00.0"), k.GroupOf("02:00.1"));
    }

    [Fact]
    public void SwitchDownstreamPortsWithAcsIsolateAndWithoutAcsShareWithTheirSubtree()
    {
        var k = HostTopology.Create()
            .RootPort("00:01.0", 1)
            .SwitchUpstreamPort("01:00.0", 2)
            .SwitchDownstreamPort("02:00.0", 3).SwitchDownstreamPort("02:01.0", 4).SwitchDownstreamPort("02:02.0", 5).Acs(false)
            .Endpoint("03:00.0", 0x10de, 0x2330, 0x030200, "nvidia")
            .Endpoint("04:00.0", 0x10de, 0x2330, 0x030200, "nvidia")
            .Endpoint("05:00.0", 0x8086, 0x10d3, 0x020000, "e1000e")
            .Build(NewRoot());
        Assert.Equal(["0000:03:00.0"], k.GroupMembers(k.GroupOf("03:00.0")!.Value));
        Assert.Equal(["0000:04:00.0"], k.GroupMembers(k.GroupOf("04:00.0")!.Value));
        Assert.Equal(["0000:02:02.0", "0000:05:00.0"], k.GroupMembers(k.GroupOf("05:00.0")!.Value));
        Assert.Equal("pcieport", k.DriverOf("02:00.0"));
    }

    [Theory]
    [InlineData(256)]
    [InlineData(1024)]
    public void LargeHostHasExactlyTheRequestedFunctions(int functions)
    {
        var k = SimulatedHosts.Large(NewRoot(), functions);
        Assert.Equal(functions, k.DeviceAddresses.Count);
        Assert.Equal(functions, new LinuxSysfs(k.SysfsRoot).List("bus/pci/devices").Count);
        var vfs = k.DeviceAddresses.Where(a => k.PhysicalFunctionOf(a) is not null).ToList();
        Assert.True(vfs.Count > functions * 3 / 4, $"{vfs.Count} VFs");
        Assert.Equal(vfs.Count / 4, vfs.Count(v => k.DriverOf(v) == "vfio-pci"));
        Assert.All(vfs.Where(v => k.DriverOf(v) == "vfio-pci"), v => Assert.True(k.DevExists($"vfio/{k.GroupOf(v)}")));
        Assert.Equal(0, k.WriteCount);
        Assert.Equal(0, k.ReadCount);
        Assert.Empty(k.Writes);
    }

    [Fact]
    public void BuilderRejectsInconsistentTopologies()
    {
        Assert.Throws<InvalidOperationException>(() => HostTopology.Create().Endpoint("05:00.0", 0x8086, 0x10d3, 0x020000, null).Build(NewRoot("a")));
        Assert.Throws<ArgumentException>(() => HostTopology.Create().Endpoint("00:05.0", 0x8086, 0x10d3, 0x020000, null).Endpoint("00:05.0", 0x8086, 0x10d3, 0x020000, null));
        Assert.Throws<InvalidOperationException>(() => HostTopology.Create().Mem64Bar(0, 4096));
        Assert.Throws<ArgumentOutOfRangeException>(() => HostTopology.Create().Endpoint("00:05.0", 0x8086, 0x10d3, 0x020000, null).Mem64Bar(0, 3000));
        string used = NewRoot("used");
        Directory.CreateDirectory(used);
        File.WriteAllText(Path.Combine(used, "x"), "");
        Assert.Throws<InvalidOperationException>(() => SimulatedHosts.Standard(used));
    }
}
