using Gallium.Pci.Assignments;
using Gallium.Pci.Host;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Mmio;
using Gallium.Pci.Testing;

namespace Gallium.Pci.Tests.Inventory;

/// <summary>The fast read paths (libc reads, one directory handle per function, reads shared across VMs) give exactly what
/// the plain paths give, and read nothing twice.</summary>
public sealed class ReadPathTests : IDisposable
{
    private readonly List<SimulatedKernel> _kernels = [];
    private readonly string _dir = Directory.CreateTempSubdirectory("gallium-read-").FullName;

    public void Dispose()
    {
        foreach (var k in _kernels) k.DeleteTree();
        Directory.Delete(_dir, recursive: true);
    }

    private SimulatedKernel Kernel(Func<string, SimulatedKernel> build)
    {
        var k = build(SimulatedHosts.CreateTempRoot());
        _kernels.Add(k);
        return k;
    }

    [Theory]
    [InlineData(0)]     // the standard host: GPU, SR-IOV PF with VFs, bridges, unbound device, boot VGA
    [InlineData(300)]   // a big host: read in parallel
    public void Directory_handles_give_what_reading_by_path_through_the_seam_gives(int functions)
    {
        var k = Kernel(root => functions == 0 ? SimulatedHosts.Standard(root) : SimulatedHosts.Large(root, functions));
        var names = new PciIds(PciIdsLocator.Find(null));
        var byHandle = new DeviceInventory(k.CreateContext() with { Sysfs = new LinuxSysfs(k.SysfsRoot) }, names).ReadAll();
        var byPath = new DeviceInventory(k.CreateContext(), names).ReadAll();   // the simulated kernel is a seam, not a LinuxSysfs

        Assert.Equal(k.DeviceAddresses, byHandle.Select(d => d.Address.ToString()));
        Assert.Equal(byPath.Select(DeviceInventoryTests.Describe), byHandle.Select(DeviceInventoryTests.Describe));
        Assert.Contains(byHandle, d => d.VirtualFunctions.Count > 0);
        Assert.Contains(byHandle, d => d.PhysicalFunction is not null);
        Assert.All(byHandle, d => Assert.NotNull(d.IommuGroup));
    }

    [Fact]
    public void LinuxSysfs_reads_long_empty_and_missing_files_links_and_listings()
    {
        string long1 = new('a', 10_000), page = new('b', 4096);
        File.WriteAllText(Path.Combine(_dir, "long"), long1);
        File.WriteAllText(Path.Combine(_dir, "page"), page);
        File.WriteAllText(Path.Combine(_dir, "empty"), "");
        File.WriteAllText(Path.Combine(_dir, "ünï"), "x\n");
        Directory.CreateDirectory(Path.Combine(_dir, "sub"));
        File.CreateSymbolicLink(Path.Combine(_dir, "link"), "../somewhere/else");
        var sys = new LinuxSysfs(_dir);

        Assert.Equal(long1, sys.ReadText("long"));       // more than a page: read until the end
        Assert.Equal(page, sys.ReadText("page"));        // exactly a page
        Assert.Equal("", sys.ReadText("empty"));
        Assert.Equal("x\n", sys.ReadText("ünï"));
        Assert.Null(sys.ReadText("missing"));
        Assert.Null(sys.ReadText("sub"));                // a directory is not an attribute
        Assert.Equal("../somewhere/else", sys.ReadLink("link"));
        Assert.Null(sys.ReadLink("long"));
        Assert.Null(sys.ReadLink("missing"));
        Assert.Equal(["empty", "link", "long", "page", "sub", "ünï"], sys.List("").Order(StringComparer.Ordinal));
        Assert.Empty(sys.List("missing"));
        Assert.Empty(sys.List("long"));
    }

    [Fact]
    public void ReadGroup_takes_members_already_read_instead_of_reading_them_again()
    {
        var k = Kernel(SimulatedHosts.Standard);
        var counting = new CountingSysfs(k);
        var inventory = new DeviceInventory(k.CreateContext() with { Sysfs = counting });
        var gpu = inventory.Read(PciAddress.Parse(StandardHost.Gpu))!;
        var group = inventory.ReadGroup(gpu.IommuGroup!.Value, [gpu])!;

        Assert.Equal([StandardHost.Gpu, StandardHost.GpuAudio], group.Devices.Select(d => d.Address.ToString()));
        Assert.Same(gpu, group.Devices[0]);
        Assert.All(counting.Reads, kv => Assert.True(kv.Value == 1, $"{kv.Key} read {kv.Value} times"));
        Assert.Equal(new DeviceInventory(k.CreateContext()).ReadGroup(gpu.IommuGroup.Value)!.Devices.Select(DeviceInventoryTests.Describe),
            group.Devices.Select(DeviceInventoryTests.Describe));
    }

    [Fact]
    public void Assignments_read_each_function_and_the_host_cpu_once_however_many_vms_hold_them()
    {
        var k = Kernel(SimulatedHosts.Standard);
        var counting = new CountingSysfs(k);
        var inventory = new DeviceInventory(k.CreateContext() with { Sysfs = counting });
        int cpuReads = 0;
        HostCpu? Cpu() { cpuReads++; return HostCpu.Read(k); }
        var domains = Enumerable.Range(0, 5).Select(i => new LibvirtDomain($"vm{i}", Guid.NewGuid(), VmState.ShutOff, 0, true,
            "<domain type='kvm'><name>vm" + i + "</name><memory unit='GiB'>4</memory><vcpu>2</vcpu>" +
            "<os><type arch='x86_64' machine='q35'>hvm</type></os><devices>" +
            "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></source></hostdev>" +
            "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x01' slot='0x00' function='0x1'/></source></hostdev>" +
            "</devices></domain>")).ToArray();

        var assignments = AssignmentView.ReadAssignments(domains, inventory, Cpu);

        Assert.Equal(10, assignments.Count);
        Assert.All(assignments, a => Assert.True(a.MmioNeededSize > 32UL << 30, $"{a.VmName}: needs {a.MmioNeededSize}"));
        Assert.Equal(1, cpuReads);
        Assert.All(counting.Reads, kv => Assert.True(kv.Value == 1, $"{kv.Key} read {kv.Value} times"));
        // The GPU's and its audio function's directories, once each; and, for their caveats (both reset only by a bus reset),
        // the host's functions (who shares the bus) and the group's members (whether those share the group), once each.
        Assert.All(counting.Lists, kv => Assert.True(kv.Value == 1, $"{kv.Key} listed {kv.Value} times"));
        Assert.Equal(4, counting.Lists.Count);
        Assert.Contains("bus/pci/devices", counting.Lists.Keys);
        Assert.Contains($"kernel/iommu_groups/{k.GroupOf(StandardHost.Gpu)}/devices", counting.Lists.Keys);
    }
}
