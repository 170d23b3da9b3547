using System.Globalization;
using System.Text.RegularExpressions;
using Gallium.Pci.Host;
using Gallium.Pci.Testing;

namespace Gallium.Pci.Tests.Simulated;

/// <summary>The tree has the real kernel's layout (REFERENCE §3.1-§3.5), readable with the production LinuxSysfs.</summary>
public sealed class LayoutTests : StandardHostTest
{
    private LinuxSysfs Sys => new(Kernel.SysfsRoot);

    [Fact]
    public void BusDeviceLinksPointIntoTheTopologyTree()
    {
        // REFERENCE §3.1 [V]: bus/pci/devices/0000:01:00.0 -> ../../../devices/pci0000:00/0000:00:02.0/0000:01:00.0
        Assert.Equal("../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0", Sys.ReadLink($"bus/pci/devices/{StandardHost.Gpu}"));
        Assert.Equal("devices/pci0000:00/0000:00:01.0/0000:01:00.0", Sys.Resolve($"bus/pci/devices/{StandardHost.Gpu}"));
        Assert.Equal("devices/pci0000:00/0000:00:1c.2/0000:06:00.0/0000:07:01.0", Sys.Resolve($"bus/pci/devices/{StandardHost.LegacyNic}"));
        Assert.Equal("devices/pci0000:00/0000:00:1b.0/0000:03:02.1", Sys.Resolve($"bus/pci/devices/{StandardHost.SriovVf1}"));
        Assert.Equal(Kernel.DeviceAddresses.OrderBy(a => a, StringComparer.Ordinal), Sys.List("bus/pci/devices").Order(StringComparer.Ordinal));
    }

    [Fact]
    public void DriverAndGroupLinksHaveTheKernelsRelativeDepth()
    {
        // REFERENCE §3.2 [V]: driver -> ../../../../bus/pci/drivers/<name> one bridge down; one level less on the root bus.
        Assert.Equal("../../../../bus/pci/drivers/nvidia", Sys.ReadLink(Dev(StandardHost.Gpu, "driver")));
        Assert.Equal("../../../bus/pci/drivers/i915", Sys.ReadLink(Dev(StandardHost.OnboardVga, "driver")));
        Assert.Equal("../../../../../bus/pci/drivers/8139too", Sys.ReadLink(Dev(StandardHost.LegacyNic, "driver")));
        Assert.Equal("bus/pci/drivers/nvidia", Sys.Resolve(Dev(StandardHost.Gpu, "driver")));
        int group = Kernel.GroupOf(StandardHost.Gpu)!.Value;
        Assert.Equal($"../../../../kernel/iommu_groups/{group}", Sys.ReadLink(Dev(StandardHost.Gpu, "iommu_group")));
        Assert.Equal($"kernel/iommu_groups/{group}", Sys.Resolve(Dev(StandardHost.Gpu, "iommu_group")));
        Assert.Equal(Sys.Resolve($"bus/pci/devices/{StandardHost.Gpu}"), Sys.Resolve($"kernel/iommu_groups/{group}/devices/{StandardHost.Gpu}"));
        Assert.Equal(Sys.Resolve($"bus/pci/devices/{StandardHost.Gpu}"), Sys.Resolve($"bus/pci/drivers/nvidia/{StandardHost.Gpu}"));
        Assert.Equal("DMA-FQ\n", Sys.ReadText($"kernel/iommu_groups/{group}/type"));
        Assert.Equal("bus/pci", Sys.Resolve(Dev(StandardHost.Gpu, "subsystem")));
        Assert.False(Sys.Exists(Dev(StandardHost.UnboundDevice, "driver")));
    }

    [Fact]
    public void EveryLinkIsRelativeAndResolvesInsideTheTree()
    {
        var links = new List<FileInfo>();
        var pending = new Stack<DirectoryInfo>([new DirectoryInfo(Kernel.RootDirectory)]);
        while (pending.Count > 0)
        {
            foreach (var entry in pending.Pop().EnumerateFileSystemInfos())
            {
                if (entry.LinkTarget is not null) links.Add(new FileInfo(entry.FullName));
                else if (entry is DirectoryInfo dir) pending.Push(dir);  // never descend through a link: sysfs links form cycles
            }
        }
        Assert.True(links.Count > 100, $"only {links.Count} links");
        foreach (var link in links)
        {
            Assert.False(Path.IsPathRooted(link.LinkTarget!), $"{link.FullName} -> {link.LinkTarget}");
            string target = Path.GetFullPath(Path.Combine(link.DirectoryName!, link.LinkTarget!));
            Assert.True(File.Exists(target) || Directory.Exists(target), $"{link.FullName} -> {link.LinkTarget} dangles");
            Assert.StartsWith(Kernel.RootDirectory + "/", target);
        }
    }

    [Fact]
    public void AttributesUseTheKernelFormats()
    {
        Assert.Equal("0x10de\n", Sys.ReadText(Dev(StandardHost.Gpu, "vendor")));
        Assert.Equal("0x2684\n", Sys.ReadText(Dev(StandardHost.Gpu, "device")));
        Assert.Equal("0x1043\n", Sys.ReadText(Dev(StandardHost.Gpu, "subsystem_vendor")));
        Assert.Equal("0x030000\n", Sys.ReadText(Dev(StandardHost.Gpu, "class")));
        Assert.Equal("0x030200\n", Sys.ReadText(Dev(StandardHost.ComputeGpu, "class")));
        Assert.Equal("0xa1\n", Sys.ReadText(Dev(StandardHost.Gpu, "revision")));
        Assert.Equal("(null)\n", Sys.ReadText(Dev(StandardHost.Gpu, "driver_override")));
        Assert.Equal("-1\n", Sys.ReadText(Dev(StandardHost.Gpu, "numa_node")));
        Assert.Equal("pm bus\n", Sys.ReadText(Dev(StandardHost.FreeNic, "reset_method")));
        Assert.Equal("pci:v000010DEd00002684sv00001043sd0000889Cbc03sc00i00\n", Sys.ReadText(Dev(StandardHost.Gpu, "modalias")));
        // REFERENCE §3.2: boot_vga only for class 0x0300xx.
        Assert.Equal("0\n", Sys.ReadText(Dev(StandardHost.Gpu, "boot_vga")));
        Assert.Equal("1\n", Sys.ReadText(Dev(StandardHost.OnboardVga, "boot_vga")));
        Assert.False(Sys.Exists(Dev(StandardHost.ComputeGpu, "boot_vga")));
        Assert.False(Sys.Exists(Dev(StandardHost.FreeNic, "boot_vga")));
    }

    [Fact]
    public void ResourceFileHas13LinesForEndpointsAnd17ForBridgesWithZeroUpperHalves()
    {
        var line = new Regex("^0x[0-9a-f]{16} 0x[0-9a-f]{16} 0x[0-9a-f]{16}$");
        string[] gpu = Sys.ReadText(Dev(StandardHost.Gpu, "resource"))!.TrimEnd('\n').Split('\n');
        string[] port = Sys.ReadText(Dev(StandardHost.GpuRootPort, "resource"))!.TrimEnd('\n').Split('\n');
        string[] bridge = Sys.ReadText(Dev(StandardHost.PciBridge, "resource"))!.TrimEnd('\n').Split('\n');
        Assert.Equal(13, gpu.Length);
        Assert.Equal(17, port.Length);
        Assert.Equal(17, bridge.Length);
        Assert.All(gpu.Concat(port), l => Assert.Matches(line, l));

        var bars = gpu.Select(Parse).ToArray();
        Assert.Equal((16UL << 20, 0x40200UL), (bars[0].Size, bars[0].Flags));                // 32-bit non-prefetchable
        Assert.Equal((32UL << 30, 0x14220cUL), (bars[1].Size, bars[1].Flags));               // 64-bit prefetchable 32 GiB
        Assert.Equal("0x0000000000000000 0x0000000000000000 0x0000000000000000", gpu[2]);  // upper half of BAR1
        Assert.Equal((32UL << 20, 0x14220cUL), (bars[3].Size, bars[3].Flags));
        Assert.Equal("0x0000000000000000 0x0000000000000000 0x0000000000000000", gpu[4]);
        Assert.Equal((128UL, 0x40101UL), (bars[5].Size, bars[5].Flags));                     // I/O
        Assert.Equal(0UL, bars[1].Start % (32UL << 30));                                      // naturally aligned
        var h100 = Parse(Sys.ReadText(Dev(StandardHost.ComputeGpu, "resource"))!.Split('\n')[1]);
        Assert.Equal(128UL << 30, h100.Size);
        Assert.Equal(0x00102200UL, h100.Flags & 0x00102200UL);                                // REFERENCE §3.4 big-window test
        // The root port's prefetchable window spans the GPU's 64-bit BARs.
        var window = Parse(port[15]);
        Assert.True(window.Start <= bars[1].Start && window.Start + window.Size >= bars[3].Start + bars[3].Size);
    }

    private static (ulong Start, ulong Size, ulong Flags) Parse(string line)
    {
        var f = line.Split(' ').Select(x => ulong.Parse(x.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture)).ToArray();
        return (f[0], f[2] == 0 ? 0 : f[1] - f[0] + 1, f[2]);
    }

    [Fact]
    public void ConfigSpaceHas64BytesWithTheHeaderType()
    {
        byte[] gpu = File.ReadAllBytes(Path.Combine(Kernel.SysfsRoot, Kernel.DevicePath(StandardHost.Gpu), "config"));
        Assert.Equal(64, gpu.Length);
        Assert.Equal(0x10de, gpu[0] | gpu[1] << 8);
        Assert.Equal(0x80, gpu[0x0e]);  // type 0, multi-function (GPU + audio)
        Assert.Equal(0x01, File.ReadAllBytes(Path.Combine(Kernel.SysfsRoot, Kernel.DevicePath(StandardHost.PciBridge), "config"))[0x0e]);
        Assert.Equal(0x00, File.ReadAllBytes(Path.Combine(Kernel.SysfsRoot, Kernel.DevicePath(StandardHost.Nvme), "config"))[0x0e]);
        Assert.Equal(0x81, File.ReadAllBytes(Path.Combine(Kernel.SysfsRoot, Kernel.DevicePath("0000:00:1c.0"), "config"))[0x0e]);
    }

    [Fact]
    public void SriovPfListsItsVirtualFunctions()
    {
        Assert.Equal("64\n", Sys.ReadText(Dev(StandardHost.SriovPf, "sriov_totalvfs")));
        Assert.Equal("4\n", Sys.ReadText(Dev(StandardHost.SriovPf, "sriov_numvfs")));
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(Sys.Resolve($"bus/pci/devices/{StandardHost.SriovVfs[i]}"), Sys.Resolve(Dev(StandardHost.SriovPf, $"virtfn{i}")));
            Assert.Equal(Sys.Resolve($"bus/pci/devices/{StandardHost.SriovPf}"), Sys.Resolve(Dev(StandardHost.SriovVfs[i], "physfn")));
            Assert.Equal("iavf", Kernel.DriverOf(StandardHost.SriovVfs[i]));
            Assert.Equal("0x154c\n", Sys.ReadText(Dev(StandardHost.SriovVfs[i], "device")));
        }
        Assert.False(Sys.Exists(Dev(StandardHost.SriovPf, "virtfn4")));
        Assert.Equal("0\n", Sys.ReadText(Dev(StandardHost.SriovPf2, "sriov_numvfs")));
        Assert.False(Sys.Exists(Dev(StandardHost.SriovPf2, "virtfn0")));
        Assert.False(Sys.Exists(Dev(StandardHost.SriovVf0, "sriov_numvfs")));
    }

    [Fact]
    public void ProcFilesDescribeTheHost()
    {
        string cpuinfo = Kernel.ReadProc("cpuinfo")!;
        Assert.Contains("vendor_id\t: GenuineIntel", cpuinfo);
        Assert.Matches(@"flags\t\t: .* vmx ", cpuinfo);
        Assert.Contains("address sizes\t: 46 bits physical, 57 bits virtual", cpuinfo);
        Assert.Contains("intel_iommu=on", Kernel.ReadProc("cmdline"));
        Assert.Equal("6.1.0-27-amd64\n", Kernel.ReadProc("sys/kernel/osrelease"));
        Assert.Contains("vfio_pci ", Kernel.ReadProc("modules"));
        Assert.Contains("IR-PCI-MSIX-0000:04:00.0", Kernel.ReadProc("interrupts"));
    }

    [Fact]
    public void RootFilesystemAndDefaultRouteLeadBackToTheirPciDevices()
    {
        string root = Kernel.ReadProc("self/mountinfo")!.Split('\n', StringSplitOptions.RemoveEmptyEntries).Single(l => l.Split(' ')[4] == "/");
        string majMin = root.Split(' ')[2];
        Assert.Equal("259:2", majMin);
        string? disk = Sys.Resolve($"dev/block/{majMin}");
        Assert.Equal($"{Kernel.DevicePath(StandardHost.Nvme)}/nvme/nvme0/nvme0n1/nvme0n1p2", disk);

        string defaultRoute = Kernel.ReadProc("net/route")!.Split('\n').Skip(1).First(l => l.Split('\t')[1] == "00000000");
        string iface = defaultRoute.Split('\t')[0];
        Assert.Equal("enp4s0", iface);
        Assert.Equal(Kernel.DevicePath(StandardHost.HostNic), Sys.Resolve($"class/net/{iface}/device"));
    }

    [Fact]
    public void FramebufferConsoleRunsOnTheOnboardVga()
    {
        Assert.Equal("(M) frame buffer device\n", Sys.ReadText("class/vtconsole/vtcon1/name"));
        Assert.Equal("1\n", Sys.ReadText("class/vtconsole/vtcon1/bind"));
        Assert.Equal(Kernel.DevicePath(StandardHost.OnboardVga), Sys.Resolve("class/graphics/fb0/device"));
    }

    [Fact]
    public void IommuFirmwareAndVfioAreVisible()
    {
        Assert.True(Sys.Exists("firmware/acpi/tables/DMAR"));
        Assert.False(Sys.Exists("firmware/acpi/tables/IVRS"));
        Assert.Equal(["dmar0"], Sys.List("class/iommu"));
        Assert.Equal("devices/virtual/iommu/dmar0", Sys.Resolve("class/iommu/dmar0"));
        Assert.True(Kernel.DevExists("vfio/vfio"));
        Assert.True(Sys.Exists("module/vfio_pci"));
        Assert.True(Sys.Exists("bus/pci/drivers/vfio-pci/bind"));
        Assert.Equal("module/vfio_pci", Sys.Resolve("bus/pci/drivers/vfio-pci/module"));
        Assert.True(Sys.Exists("bus/pci/drivers_probe"));
        Assert.Equal(["vfio"], Directory.EnumerateFileSystemEntries(Path.Combine(Kernel.DevRoot, "vfio")).Select(Path.GetFileName));
    }

    [Fact]
    public void DeviceNamesResolveFromTheSystemPciIds()
    {
        var context = Kernel.CreateContext();
        Assert.NotNull(context.PciIdsPath);  // CI installs the pci.ids package
        string ids = File.ReadAllText(context.PciIdsPath!);
        foreach (var (vendor, device, name) in new[] { ("10de", "2684", "RTX 4090"), ("10de", "2330", "H100"), ("8086", "1572", "X710"), ("8086", "10d3", "82574L"), ("1b21", "1080", "PCI Bridge") })
        {
            int v = ids.IndexOf($"\n{vendor}  ", StringComparison.Ordinal);
            Assert.True(v >= 0, vendor);
            int d = ids.IndexOf($"\n\t{device}  ", v, StringComparison.Ordinal);
            Assert.True(d > v, $"{vendor}:{device}");
            Assert.Contains(name, ids.Substring(d, ids.IndexOf('\n', d + 1) - d));
        }
    }
}
