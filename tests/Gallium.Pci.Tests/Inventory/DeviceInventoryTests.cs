using Gallium.Pci.Host;

namespace Gallium.Pci.Tests.Inventory;

public sealed class DeviceInventoryTests : IDisposable
{
    private const string Zero = "0x0000000000000000 0x0000000000000000 0x0000000000000000\n";
    private readonly InventoryTree _t = new();
    private readonly string _ids;

    public DeviceInventoryTests()
    {
        _ids = Path.Combine(_t.Base, "pci.ids");
        File.WriteAllText(_ids,
            "10de  NVIDIA Corporation\n\t2204  GA102 [GeForce RTX 3090]\n\t1aef  GA102 High Definition Audio Controller\n" +
            "8086  Intel Corporation\n\t1521  I350 Gigabit Network Connection\n\t1520  I350 Ethernet Controller Virtual Function\n" +
            "\t7c18  Root Port\n" +
            "C 02  Network controller\n\t00  Ethernet controller\n" +
            "C 03  Display controller\n\t00  VGA compatible controller\n" +
            "C 04  Multimedia controller\n\t03  Audio device\n" +
            "C 06  Bridge\n\t04  PCI bridge\n\t\t00  Normal decode\n");
    }

    public void Dispose() => _t.Dispose();

    /// <summary>A root port with a GPU (VGA + audio) behind it, and an SR-IOV NIC with two VFs, like a real host.</summary>
    private void BuildHost()
    {
        _t.Function("0000:00:01.0", 0x8086, 0x7c18, 0x060400, revision: 0x11);
        _t.SubordinateBus("0000:00:01.0", "0000:01");
        _t.Bind("0000:00:01.0", "pcieport");
        _t.Attr("0000:00:01.0", "resource", string.Concat(Enumerable.Repeat(Zero, 17)));

        string gpuBars =
            "0x00000000fb000000 0x00000000fbffffff 0x0000000000040200\n" + Zero +
            "0x0000006000000000 0x00000067ffffffff 0x000000000014220c\n" + Zero +
            "0x000000000000e000 0x000000000000e07f 0x0000000000040101\n" + Zero +
            "0x00000000fc000000 0x00000000fc07ffff 0x0000000000046200\n" + string.Concat(Enumerable.Repeat(Zero, 6));
        _t.Function("0000:01:00.0", 0x10de, 0x2204, 0x030000, parent: "0000:00:01.0", revision: 0xa1,
            subsystemVendor: 0x10de, subsystemDevice: 0x1454, resource: gpuBars);
        _t.Attr("0000:01:00.0", "boot_vga", "1\n");
        _t.Attr("0000:01:00.0", "numa_node", "0\n");
        _t.Attr("0000:01:00.0", "reset_method", "flr bus\n");
        _t.Bind("0000:01:00.0", "vfio-pci");
        _t.Attr("0000:01:00.0", "driver_override", "vfio-pci\n");
        _t.Function("0000:01:00.1", 0x10de, 0x1aef, 0x040300, parent: "0000:00:01.0", revision: 0xa1);

        _t.Function("0000:02:00.0", 0x8086, 0x1521, 0x020000, revision: 0x01);
        _t.Bind("0000:02:00.0", "igb");
        _t.Attr("0000:02:00.0", "sriov_totalvfs", "7\n");
        _t.Function("0000:02:10.0", 0x8086, 0x1520, 0x020000, revision: 0x01);
        _t.Function("0000:02:10.4", 0x8086, 0x1520, 0x020000, revision: 0x01);
        _t.Bind("0000:02:10.4", "igbvf");
        // virtfn10 sorts after virtfn2 by number, not by text.
        _t.Function("0000:02:11.2", 0x8086, 0x1520, 0x020000, revision: 0x01);
        foreach (var (n, vf) in new[] { (0, "0000:02:10.0"), (1, "0000:02:10.4"), (10, "0000:02:11.2") })
        {
            _t.Link($"{_t.FunctionDir("0000:02:00.0")}/virtfn{n}", _t.FunctionDir(vf));
            _t.Link($"{_t.FunctionDir(vf)}/physfn", _t.FunctionDir("0000:02:00.0"));
        }
    }

    private void Groups()
    {
        _t.Group("0000:00:01.0", 1);
        _t.Group("0000:01:00.0", 12, "DMA-FQ");
        _t.Group("0000:01:00.1", 12, "DMA-FQ");
        _t.Group("0000:02:00.0", 13);
        _t.Group("0000:02:10.0", 14);
        _t.Group("0000:02:10.4", 15);
        _t.Group("0000:02:11.2", 16);
    }

    [Fact]
    public void ReadAll_fills_every_property_from_sysfs_and_pci_ids()
    {
        BuildHost();
        Groups();
        var all = new DeviceInventory(_t.Context(_ids)).ReadAll();

        Assert.Equal(["0000:00:01.0", "0000:01:00.0", "0000:01:00.1", "0000:02:00.0", "0000:02:10.0", "0000:02:10.4", "0000:02:11.2"],
            all.Select(d => d.Address.ToString()));

        var gpu = all[1];
        Assert.Equal(0x10de, gpu.VendorId);
        Assert.Equal(0x2204, gpu.DeviceId);
        Assert.Equal(0x10de, gpu.SubsystemVendorId);
        Assert.Equal(0x1454, gpu.SubsystemDeviceId);
        Assert.Equal(0x030000u, gpu.ClassCode);
        Assert.Equal("VGA compatible controller", gpu.ClassName);
        Assert.Equal("Display controller", gpu.BaseClassName);
        Assert.Equal("NVIDIA Corporation", gpu.VendorName);
        Assert.Equal("GA102 [GeForce RTX 3090]", gpu.DeviceName);
        Assert.Equal(0xa1, gpu.Revision);
        Assert.Equal("vfio-pci", gpu.Driver);
        Assert.Equal("vfio-pci", gpu.DriverOverride);
        Assert.Equal(12, gpu.IommuGroup);
        Assert.Equal(0, gpu.NumaNode);
        Assert.Equal([new PciBar(0, 0xfb000000, 16UL << 20, false, false, false, true),
                      new PciBar(2, 0x6000000000, 32UL << 30, true, true, false, true),
                      new PciBar(4, 0xe000, 0x80, false, false, true, true)], gpu.Bars);
        Assert.Equal(32UL << 30, gpu.Bar64Size);
        Assert.False(gpu.IsBridge);
        Assert.True(gpu.IsBootVga);
        Assert.Null(gpu.PhysicalFunction);
        Assert.Empty(gpu.VirtualFunctions);
        Assert.Null(gpu.SriovTotalVfs);
        Assert.Equal(["flr", "bus"], gpu.ResetMethods);
        // On vfio-pci with the override, but nothing recorded: it would go back to its host driver at the next reboot.
        Assert.Equal(PassthroughState.NotPersisted, gpu.PassthroughState);
        Assert.Contains("nothing is recorded", gpu.Problem);
        Assert.Empty(gpu.AssignedTo);

        var audio = all[2];
        Assert.Equal("Audio device", audio.ClassName);
        Assert.Equal("Multimedia controller", audio.BaseClassName);
        Assert.Null(audio.Driver);
        Assert.Null(audio.DriverOverride);   // "(null)"
        Assert.Null(audio.NumaNode);         // -1
        Assert.Empty(audio.Bars);
        Assert.Empty(audio.ResetMethods);
        Assert.False(audio.IsBootVga);
        Assert.Equal(PassthroughState.Unbound, audio.PassthroughState);

        var port = all[0];
        Assert.True(port.IsBridge);
        Assert.Equal("PCI bridge", port.ClassName);
        Assert.Equal("pcieport", port.Driver);
        Assert.Equal(PassthroughState.Host, port.PassthroughState);
        Assert.Empty(port.Bars);              // 17 all-zero lines
    }

    [Fact]
    public void SR_IOV_links_give_physical_and_virtual_functions()
    {
        BuildHost();
        var all = new DeviceInventory(_t.Context(_ids)).ReadAll().ToDictionary(d => d.Address.ToString());
        var pf = all["0000:02:00.0"];
        Assert.Equal(7, pf.SriovTotalVfs);
        Assert.Equal(["0000:02:10.0", "0000:02:10.4", "0000:02:11.2"], pf.VirtualFunctions.Select(a => a.ToString()));
        Assert.Null(pf.PhysicalFunction);
        foreach (string vf in new[] { "0000:02:10.0", "0000:02:10.4", "0000:02:11.2" })
        {
            Assert.Equal(pf.Address, all[vf].PhysicalFunction);
            Assert.Empty(all[vf].VirtualFunctions);
            Assert.Null(all[vf].SriovTotalVfs);
            Assert.Equal("I350 Ethernet Controller Virtual Function", all[vf].DeviceName);
        }
        Assert.Equal("igbvf", all["0000:02:10.4"].Driver);
    }

    [Fact]
    public void Functions_are_sorted_by_address_across_domains_and_buses()
    {
        foreach (string a in new[] { "0001:00:00.0", "0000:10:00.0", "0000:02:00.1", "0000:02:00.0", "10000:00:00.0", "0000:00:1f.7" })
            _t.Function(a, 0x8086, 0x1521, 0x020000);
        var all = new DeviceInventory(_t.Context(_ids)).ReadAll();
        Assert.Equal(["0000:00:1f.7", "0000:02:00.0", "0000:02:00.1", "0000:10:00.0", "0001:00:00.0", "10000:00:00.0"],
            all.Select(d => d.Address.ToString()));
    }

    [Fact]
    public void Bridges_by_class_or_by_subordinate_bus()
    {
        _t.Function("0000:00:1e.0", 0x8086, 0x244e, 0x060401);   // subtractive-decode PCI bridge
        _t.Function("0000:00:1c.0", 0x8086, 0x7c18, 0x068000);   // "other bridge" class with a secondary bus
        _t.SubordinateBus("0000:00:1c.0", "0000:05");
        _t.Function("0000:00:00.0", 0x8086, 0x0d57, 0x060000);   // host bridge: header type 0
        _t.Function("0000:00:1f.0", 0x8086, 0x7a84, 0x060100);   // ISA bridge
        var all = new DeviceInventory(_t.Context(_ids)).ReadAll().ToDictionary(d => d.Address.ToString(), d => d.IsBridge);
        Assert.Equal(new Dictionary<string, bool>
        {
            ["0000:00:00.0"] = false, ["0000:00:1c.0"] = true, ["0000:00:1e.0"] = true, ["0000:00:1f.0"] = false,
        }, all);
    }

    [Fact]
    public void Read_one_function_and_unknown_addresses()
    {
        BuildHost();
        var inv = new DeviceInventory(_t.Context(_ids));
        var gpu = inv.Read(PciAddress.Parse("01:00.0"));
        Assert.NotNull(gpu);
        Assert.Equal(Describe(inv.ReadAll()[1]), Describe(gpu));
        Assert.Null(inv.Read(PciAddress.Parse("0000:09:00.0")));
    }

    [Fact]
    public void Vanished_and_half_written_functions_are_skipped()
    {
        BuildHost();
        // Hot-unplug: the bus/pci/devices link remains but its directory is gone.
        Directory.Delete(_t.Full(_t.FunctionDir("0000:02:11.2")), recursive: true);
        // A function caught without a vendor file, and a name that is not an address.
        _t.Function("0000:03:00.0", 0x8086, 0x1521, 0x020000);
        File.Delete(_t.Full($"{_t.FunctionDir("0000:03:00.0")}/vendor"));
        _t.Link("bus/pci/devices/not-an-address", _t.FunctionDir("0000:02:00.0"));
        var inv = new DeviceInventory(_t.Context(_ids));
        var all = inv.ReadAll();
        Assert.DoesNotContain(all, d => d.Address.ToString() is "0000:02:11.2" or "0000:03:00.0");
        Assert.Equal(6, all.Count);
        // The PF's dangling virtfn10 link still names the VF; the function itself is gone.
        Assert.Equal(3, all.Single(d => d.Address.ToString() == "0000:02:00.0").VirtualFunctions.Count);
        Assert.Null(inv.Read(PciAddress.Parse("0000:02:11.2")));
    }

    [Fact]
    public void Groups_follow_the_iommu_group_links()
    {
        BuildHost();
        var inv = new DeviceInventory(_t.Context(_ids));
        Assert.False(inv.IommuOn);
        Assert.Empty(inv.ReadGroups());
        Assert.Null(inv.ReadGroup(12));
        Assert.All(inv.ReadAll(), d => Assert.Null(d.IommuGroup));

        Groups();
        Assert.True(inv.IommuOn);
        var groups = inv.ReadGroups();
        Assert.Equal([1, 12, 13, 14, 15, 16], groups.Select(g => g.Id));
        var gpuGroup = groups[1];
        Assert.Equal(["0000:01:00.0", "0000:01:00.1"], gpuGroup.Devices.Select(d => d.Address.ToString()));
        Assert.Equal("DMA-FQ", gpuGroup.Type);
        Assert.Equal("DMA", groups[0].Type);
        Assert.True(gpuGroup.IsViable);                          // vfio-pci + no driver
        Assert.False(groups[2].IsViable);                        // igb
        Assert.True(groups[0].IsViable);                         // a bridge on pcieport

        var one = inv.ReadGroup(12);
        Assert.NotNull(one);
        Assert.Equal(gpuGroup.Devices.Select(Describe), one.Devices.Select(Describe));
        Assert.Equal("DMA-FQ", one.Type);
        Assert.Null(inv.ReadGroup(99));
        Assert.Null(inv.ReadGroup(-1));
    }

    [Fact]
    public void Groups_list_only_pci_functions()
    {
        BuildHost();
        Groups();
        // A platform device in a group of its own, and one sharing group 12.
        Directory.CreateDirectory(_t.Full("devices/platform/AMDI0010:00"));
        _t.Link("kernel/iommu_groups/12/devices/AMDI0010:00", "devices/platform/AMDI0010:00");
        _t.Write("kernel/iommu_groups/30/type", "DMA\n");
        _t.Link("kernel/iommu_groups/30/devices/AMDI0010:01", "devices/platform/AMDI0010:00");
        var inv = new DeviceInventory(_t.Context(_ids));
        Assert.Equal(2, inv.ReadGroup(12)!.Devices.Count);
        Assert.Null(inv.ReadGroup(30));
        Assert.DoesNotContain(inv.ReadGroups(), g => g.Id == 30);
    }

    [Fact]
    public void Without_pci_ids_names_are_lspci_stand_ins()
    {
        BuildHost();
        var gpu = new DeviceInventory(_t.Context(pciIds: null)).Read(PciAddress.Parse("0000:01:00.0"))!;
        // What lspci -vmm prints without a database: "Vendor 10de", "Device 2204", "Class 0300".
        Assert.Equal(("Vendor 10de", "Device 2204", "Class 0300", "Class 03"), (gpu.VendorName, gpu.DeviceName, gpu.ClassName, gpu.BaseClassName));
        Assert.Equal(0x10de, gpu.VendorId);
    }

    [Fact]
    public void ReadAll_reads_each_file_once_lists_each_function_once_and_opens_only_listed_files()
    {
        BuildHost();
        Groups();
        var counting = new CountingSysfs(new LinuxSysfs(_t.Sys));
        var all = new DeviceInventory(_t.Context(_ids, sysfs: counting)).ReadAll();
        Assert.Equal(7, all.Count);
        Assert.All(counting.Reads, kv => Assert.True(kv.Value == 1, $"{kv.Key} read {kv.Value} times"));
        Assert.All(counting.Lists, kv => Assert.True(kv.Value == 1, $"{kv.Key} listed {kv.Value} times"));
        Assert.Equal(1 + all.Count, counting.Lists.Count);      // bus/pci/devices + one per function
        Assert.Empty(counting.Misses);                          // never tried a file the listing did not show
        Assert.DoesNotContain(counting.Reads.Keys, k => k.EndsWith("/config", StringComparison.Ordinal));
    }

    [Fact]
    public void A_big_host_read_in_parallel_gives_the_same_functions_each_file_read_once()
    {
        // 3 buses x 32 slots x 1-2 functions: above the parallel threshold.
        var expected = new List<string>();
        for (int bus = 4; bus < 7; bus++)
            for (int slot = 0; slot < 32; slot++)
                for (int fn = 0; fn < (slot % 2) + 1; fn++)
                {
                    string a = $"0000:{bus:x2}:{slot:x2}.{fn}";
                    _t.Function(a, 0x8086, 0x1520 + fn, 0x020000, revision: slot);
                    if (slot % 3 == 0) _t.Bind(a, "igb");
                    _t.Group(a, bus * 100 + slot);
                    expected.Add(a);
                }
        var counting = new CountingSysfs(new LinuxSysfs(_t.Sys));
        var inv = new DeviceInventory(_t.Context(_ids, sysfs: counting));
        var all = inv.ReadAll();
        Assert.Equal(expected, all.Select(d => d.Address.ToString()));
        Assert.All(counting.Reads, kv => Assert.True(kv.Value == 1, $"{kv.Key} read {kv.Value} times"));
        Assert.Equal(1 + expected.Count, counting.Lists.Count);
        Assert.Empty(counting.Misses);
        // Each function equals what a single Read gives, names included.
        Assert.Equal(all.Select(Describe), all.Select(d => Describe(inv.Read(d.Address)!)));
        Assert.All(all, d => Assert.Equal("Intel Corporation", d.VendorName));
        Assert.Equal(96 + 48, all.Count);
    }

    /// <summary>Every property, lists spelled out (the record's own equality compares lists by reference).</summary>
    internal static string Describe(PciDevice d) =>
        $"{d}|{d.VendorId}:{d.DeviceId}|{d.SubsystemVendorId}:{d.SubsystemDeviceId}|" +
        $"{d.ClassCode}|{d.BaseClassName}|{d.Revision}|{d.Driver}|{d.DriverOverride}|{d.IommuGroup}|{d.NumaNode}|{d.IsBridge}|{d.IsBootVga}|" +
        $"{d.PhysicalFunction}|{d.SriovTotalVfs}|{d.PassthroughState}|{string.Join(",", d.Bars.Select(b => $"{b}@{b.Start:x}/{b.IsAssigned}"))}|{string.Join(",", d.VirtualFunctions)}|" +
        $"{string.Join(",", d.ResetMethods)}|{string.Join(",", d.AssignedTo)}";
}
