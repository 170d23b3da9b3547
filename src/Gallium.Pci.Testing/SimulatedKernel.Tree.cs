using System.Globalization;
using System.Text;
using Gallium.Pci.Testing.Internal;

namespace Gallium.Pci.Testing;

// Writing the kernel-shaped tree: device directories, groups, drivers, modules, /proc and /dev (REFERENCE §3).
public sealed partial class SimulatedKernel
{
    private string? _iommuUnitDir;

    private void Materialize()
    {
        var t = _tree;
        foreach (var dir in new[]
                 {
                     "sys/devices/virtual", "sys/bus/pci/devices", "sys/bus/pci/drivers", "sys/kernel/iommu_groups", "sys/class/iommu",
                     "sys/class/net", "sys/class/block", "sys/class/graphics", "sys/class/vtconsole", "sys/class/nvme", "sys/block",
                     "sys/dev/block", "sys/dev/char", "sys/firmware/acpi/tables", "sys/module", "proc/self", "proc/net", "proc/sys/kernel", "dev",
                 })
        {
            t.Dir(dir);
        }
        t.Text("sys/bus/pci/drivers_probe", "");
        t.Text("sys/bus/pci/drivers_autoprobe", "1\n");
        // Every ACPI machine publishes these; only the IOMMU's own table depends on the firmware setting (REFERENCE §3.5).
        foreach (string table in new[] { "APIC", "DSDT", "FACP", "MCFG" }) t.Bytes($"sys/firmware/acpi/tables/{table}", AcpiTable(table));
        if (_config.FirmwareIommu) t.Bytes($"sys/firmware/acpi/tables/{_config.FirmwareTable}", AcpiTable(_config.FirmwareTable));

        var order = Grouping.ScanOrder(_devices);
        var windows = BridgeWindows(order);
        t.Text("proc/iomem", ProcContent.IoMem(order, windows));
        WriteNumaNodes();
        foreach (var domain in _devices.Select(d => d.Address.Domain).Distinct()) t.Dir($"sys/devices/pci{domain:x4}:00");
        foreach (var d in order) CreateDeviceNode(d, windows.GetValueOrDefault(d));

        if (_config.IommuOn)
        {
            var amdIommu = _devices.FirstOrDefault(d => _config.Amd && d.ClassCode >> 8 == 0x0806);
            _iommuUnitDir = amdIommu is null ? $"devices/virtual/iommu/{_config.IommuUnit}" : $"{amdIommu.RelDir}/iommu/{_config.IommuUnit}";
            t.Dir($"sys/{_iommuUnitDir}/devices");
            t.Link($"sys/class/iommu/{_config.IommuUnit}", $"sys/{_iommuUnitDir}");
            var groups = new Dictionary<SimDevice, int>();
            int next = 0;
            var slots = _devices.ToLookup(f => f.Address.SlotFunction0);
            foreach (var d in order.Where(d => !d.NoIommuGroup))
            {
                var slot = slots[d.Address.SlotFunction0].Where(f => f != d && groups.ContainsKey(f));
                var shared = _config.SharedGroups.Where(s => s.Contains(d.Address)).SelectMany(s => s)
                    .Where(a => a != d.Address && _byBdf.ContainsKey(a.ToString())).Select(a => _byBdf[a.ToString()]);
                groups[d] = Grouping.Assign(d, x => groups.TryGetValue(x, out int g) ? g : null, slot, shared, () => next++);
            }
            foreach (var (d, g) in groups) AddToGroup(d, g);
        }

        // Built-in drivers register first, then modules in boot order; the first registered matching driver wins a probe.
        foreach (var driver in _drivers.Where(d => d.Loaded && d.Module is null).ToList()) CreateDriverDir(driver);
        foreach (var m in _drivers.Where(d => d.Loaded && d.Module is not null).Select(d => d.Module!).Distinct().ToList())
        {
            foreach (var dep in DriverCatalog.DependenciesOf(m)) LoadModuleFiles(dep, null);
            LoadModuleFiles(m, null);
        }
        LoadModuleFiles("kvm", null);
        LoadModuleFiles(_config.Amd ? "kvm_amd" : "kvm_intel", null);

        foreach (var d in order.Where(d => d.BootOnVfio || d.HostDriver is not null))
        {
            // Without an IOMMU group vfio-pci cannot probe (REFERENCE §4.6): the device then boots driverless.
            if (!d.BootOnVfio) Attach(LoadedDriver(d.HostDriver!)!, d);
            else if (LoadedDriver("vfio-pci") is { } vfio && ProbeError(vfio, d) == 0) Attach(vfio, d);
        }
        foreach (var pf in order.Where(d => d.Sriov is { InitialNumVfs: > 0 })) EnableVfs(pf, pf.Sriov!.InitialNumVfs);

        CreateVtConsoles();
        WriteProc();
    }

    // ---- one PCI function ---------------------------------------------------------------------------------------------

    private void CreateDeviceNode(SimDevice d, ulong[]? windows)
    {
        var t = _tree;
        string dir = $"sys/{d.RelDir}";
        t.Dir(dir);
        static string H4(int v) => string.Create(CultureInfo.InvariantCulture, $"0x{v:x4}\n");
        t.Text($"{dir}/vendor", H4(d.Vendor));
        t.Text($"{dir}/device", H4(d.Device));
        t.Text($"{dir}/subsystem_vendor", H4(d.SubVendor));
        t.Text($"{dir}/subsystem_device", H4(d.SubDevice));
        t.Text($"{dir}/class", string.Create(CultureInfo.InvariantCulture, $"0x{d.ClassCode:x6}\n"));
        t.Text($"{dir}/revision", string.Create(CultureInfo.InvariantCulture, $"0x{d.Revision:x2}\n"));
        t.Text($"{dir}/modalias", d.ModAlias + "\n");
        t.Text($"{dir}/driver_override", (d.InitialOverride ?? "(null)") + "\n");
        t.Text($"{dir}/numa_node", string.Create(CultureInfo.InvariantCulture, $"{d.NumaNode}\n"));
        t.Text($"{dir}/enable", "1\n");
        t.Text($"{dir}/d3cold_allowed", "1\n");
        t.Text($"{dir}/irq", "16\n");
        t.Text($"{dir}/local_cpulist", (d.NumaNode >= 0 && d.NumaNode < _config.EffectiveNumaNodes.Count
            ? _config.EffectiveNumaNodes[d.NumaNode] : string.Join(",", _config.EffectiveNumaNodes)) + "\n");
        t.Text($"{dir}/resource", ResourceText(d, windows));
        t.Bytes($"{dir}/config", ConfigSpace(d));
        WriteUevent(d, null);
        if (!string.IsNullOrEmpty(d.ResetMethods))
        {
            t.Text($"{dir}/reset_method", d.ResetMethods + "\n");
            t.Text($"{dir}/reset", "");
        }
        else if (d.ResetWithoutMethods) t.Text($"{dir}/reset", "");
        // REFERENCE §3.2: boot_vga exists only for class 0x0300xx.
        if (d.IsVga) t.Text($"{dir}/boot_vga", (d.BootVgaSetting == true ? "1" : "0") + "\n");
        if (HasLink(d))
        {
            string speed = d.IsVga || d.ClassCode >> 16 == 0x03 ? "16.0 GT/s PCIe" : "8.0 GT/s PCIe";
            string width = d.ClassCode >> 16 == 0x03 || d.Kind == DeviceKind.RootPort ? "16" : "4";
            t.Text($"{dir}/current_link_speed", speed + "\n");
            t.Text($"{dir}/max_link_speed", speed + "\n");
            t.Text($"{dir}/current_link_width", width + "\n");
            t.Text($"{dir}/max_link_width", width + "\n");
        }
        if (d.IsBridge)
        {
            t.Text($"{dir}/secondary_bus_number", $"{d.SecondaryBus}\n");
            t.Text($"{dir}/subordinate_bus_number", $"{d.SubordinateBus}\n");
        }
        if (d.Sriov is { } s)
        {
            t.Text($"{dir}/sriov_totalvfs", $"{s.TotalVfs}\n");
            t.Text($"{dir}/sriov_numvfs", "0\n");
            t.Text($"{dir}/sriov_offset", $"{s.Offset}\n");
            t.Text($"{dir}/sriov_stride", $"{s.Stride}\n");
            t.Text($"{dir}/sriov_vf_device", string.Create(CultureInfo.InvariantCulture, $"{s.VfDeviceId:x4}\n"));
            t.Text($"{dir}/sriov_drivers_autoprobe", "1\n");
        }
        if (d.PhysFn is { } pf) t.Link($"{dir}/physfn", $"sys/{pf.RelDir}");
        t.Link($"{dir}/subsystem", "sys/bus/pci");
        t.Link($"sys/bus/pci/devices/{d.Bdf}", dir);
    }

    private static bool HasLink(SimDevice d) =>
        d.Kind is DeviceKind.RootPort or DeviceKind.SwitchUpstream or DeviceKind.SwitchDownstream ||
        (d.Parent is not null && d.Parent.Kind != DeviceKind.PciBridge);

    private void WriteUevent(SimDevice d, string? driver)
    {
        var sb = new StringBuilder();
        if (driver is not null) sb.Append("DRIVER=").Append(driver).Append('\n');
        sb.Append(CultureInfo.InvariantCulture, $"PCI_CLASS={d.ClassCode:X}\n");
        sb.Append(CultureInfo.InvariantCulture, $"PCI_ID={d.Vendor:X4}:{d.Device:X4}\n");
        sb.Append(CultureInfo.InvariantCulture, $"PCI_SUBSYS_ID={d.SubVendor:X4}:{d.SubDevice:X4}\n");
        sb.Append("PCI_SLOT_NAME=").Append(d.Bdf).Append('\n');
        sb.Append("MODALIAS=").Append(d.ModAlias).Append('\n');
        _tree.Text($"sys/{d.RelDir}/uevent", sb.ToString());
    }

    /// <summary>REFERENCE §3.4: 13 lines for endpoints, 17 for bridges, "0x%016llx 0x%016llx 0x%016llx"; the upper half of a
    /// 64-bit BAR is an all-zero line; an unplaced BAR shows start 0 with IORESOURCE_UNSET.</summary>
    private static string ResourceText(SimDevice d, ulong[]? windows)
    {
        int lines = d.IsBridge ? 17 : 13;
        var sb = new StringBuilder(lines * 57);
        void Line(ulong start, ulong end, ulong flags) =>
            sb.Append(CultureInfo.InvariantCulture, $"0x{start:x16} 0x{end:x16} 0x{flags:x16}\n");
        for (int i = 0; i < lines; i++)
        {
            var bar = i < 6 ? d.Bars.FirstOrDefault(b => b.Index == i) : null;
            if (bar is not null) Line(bar.Assigned ? bar.Start : 0, bar.Assigned ? bar.Start + bar.Size - 1 : bar.Size - 1, bar.Flags);
            else if (i == 6 && d.RomSize > 0) Line(d.RomStart, d.RomStart + d.RomSize - 1, 0x46200);
            else if (i is >= 7 and <= 12 && d.Sriov is { TotalVfs: > 0 } s && d.VfBarStarts.TryGetValue(i - 7, out ulong vfStart))
            {
                ulong size = VfBars.First(v => v.Index == i - 7).Size * (ulong)s.TotalVfs;
                Line(vfStart, vfStart + size - 1, 0x14220c);
            }
            else if (i is >= 13 and <= 15 && windows is not null && windows[(i - 13) * 2 + 1] != 0)
            {
                ulong flags = (i - 13) switch { 0 => 0x100UL, 1 => 0x200UL, 2 => 0x102201UL, _ => 0UL };
                Line(windows[(i - 13) * 2], windows[(i - 13) * 2 + 1], flags);
            }
            else Line(0, 0, 0);
        }
        return sb.ToString();
    }

    /// <summary>Bridge I/O, memory and prefetchable windows spanning everything placed below each bridge: [start,end] x 3.</summary>
    private static Dictionary<SimDevice, ulong[]> BridgeWindows(List<SimDevice> order)
    {
        var result = new Dictionary<SimDevice, ulong[]>();
        static ulong Down(ulong v, ulong a) => v & ~(a - 1);
        static ulong Up(ulong v, ulong a) => (v + a - 1) & ~(a - 1);
        foreach (var d in order)
        {
            var ranges = new List<(int Kind, ulong Start, ulong End)>();
            foreach (var b in d.Bars.Where(b => b.Assigned))
                ranges.Add((b.Type == BarType.Io ? 0 : b.Prefetchable ? 2 : 1, b.Start, b.Start + b.Size - 1));
            if (d.RomSize > 0) ranges.Add((1, d.RomStart, d.RomStart + d.RomSize - 1));
            if (d.Sriov is { TotalVfs: > 0 } s)
            {
                foreach (var (index, size) in VfBars)
                {
                    if (d.VfBarStarts.TryGetValue(index, out ulong start)) ranges.Add((2, start, start + size * (ulong)s.TotalVfs - 1));
                }
            }
            for (var p = d.Parent; p is not null; p = p.Parent)
            {
                if (!result.TryGetValue(p, out var w)) result[p] = w = new ulong[6];
                foreach (var (kind, start, end) in ranges)
                {
                    ulong align = kind == 0 ? 0x1000UL : 0x100000UL;
                    ulong s0 = Down(start, align), e0 = Up(end + 1, align) - 1;
                    if (w[kind * 2 + 1] == 0) { w[kind * 2] = s0; w[kind * 2 + 1] = e0; }
                    else { w[kind * 2] = Math.Min(w[kind * 2], s0); w[kind * 2 + 1] = Math.Max(w[kind * 2 + 1], e0); }
                }
            }
        }
        return result;
    }

    /// <summary>The first 64 bytes of config space (what an unprivileged read returns, REFERENCE §3.2); header type at 0x0e.</summary>
    private static byte[] ConfigSpace(SimDevice d)
    {
        var c = new byte[64];
        void W16(int at, int v) { c[at] = (byte)v; c[at + 1] = (byte)(v >> 8); }
        void W32(int at, ulong v) { W16(at, (int)(v & 0xffff)); W16(at + 2, (int)((v >> 16) & 0xffff)); }
        // An SR-IOV VF reads vendor/device 0xffff in config space; sysfs vendor/device show the real ids.
        W16(0x00, d.IsVirtualFunction ? 0xffff : d.Vendor);
        W16(0x02, d.IsVirtualFunction ? 0xffff : d.Device);
        W16(0x04, 0x0406);
        W16(0x06, 0x0010);
        c[0x08] = d.Revision;
        c[0x09] = (byte)d.ClassCode;
        c[0x0a] = (byte)(d.ClassCode >> 8);
        c[0x0b] = (byte)(d.ClassCode >> 16);
        c[0x0e] = (byte)(d.HeaderType | (d.MultiFunction ? 0x80 : 0));
        if (d.HeaderType == 0)
        {
            foreach (var b in d.Bars)
            {
                int at = 0x10 + 4 * b.Index;
                ulong start = b.Assigned ? b.Start : 0;
                switch (b.Type)
                {
                    case BarType.Io: W32(at, (start & ~3UL) | 1); break;
                    case BarType.Mem32: W32(at, (start & ~0xfUL) | (b.Prefetchable ? 8UL : 0)); break;
                    default:
                        W32(at, (start & 0xfffffff0UL) | 4 | (b.Prefetchable ? 8UL : 0));
                        W32(at + 4, start >> 32);
                        break;
                }
            }
            W16(0x2c, d.SubVendor);
            W16(0x2e, d.SubDevice);
            c[0x3d] = 1;
        }
        else
        {
            c[0x18] = d.Address.Bus;
            c[0x19] = (byte)d.SecondaryBus;
            c[0x1a] = (byte)d.SubordinateBus;
            c[0x3d] = 1;
        }
        c[0x34] = 0x40;
        c[0x3c] = 0xff;
        return c;
    }

    // ---- IOMMU groups -------------------------------------------------------------------------------------------------

    private void AddToGroup(SimDevice d, int group)
    {
        string g = $"sys/kernel/iommu_groups/{group}";
        if (_groupIds.Add(group))
        {
            _tree.Dir($"{g}/devices");
            _tree.Text($"{g}/type", _config.DefaultDomainType + "\n");
            _tree.Text($"{g}/reserved_regions", "0x00000000fee00000 0x00000000feefffff msi\n");
        }
        _tree.Link($"{g}/devices/{d.Bdf}", $"sys/{d.RelDir}");
        _tree.Link($"sys/{d.RelDir}/iommu_group", g);
        if (_iommuUnitDir is not null)
        {
            _tree.Link($"sys/{d.RelDir}/iommu", $"sys/{_iommuUnitDir}");
            _tree.Link($"sys/{_iommuUnitDir}/devices/{d.Bdf}", $"sys/{d.RelDir}");
        }
    }

    private void RemoveFromGroup(SimDevice d)
    {
        if (GroupOf(d) is not int group) return;
        string g = $"sys/kernel/iommu_groups/{group}";
        _tree.Remove($"{g}/devices/{d.Bdf}");
        if (!_tree.Names($"{g}/devices").Any()) { _tree.Remove(g); _groupIds.Remove(group); }
        if (_iommuUnitDir is not null) _tree.Remove($"sys/{_iommuUnitDir}/devices/{d.Bdf}");
    }

    // ---- drivers and modules ------------------------------------------------------------------------------------------

    private void CreateDriverDir(SimDriver driver)
    {
        driver.Loaded = true;
        _drivers.Remove(driver);
        _drivers.Add(driver);  // registration order
        string dir = $"sys/bus/pci/drivers/{driver.Name}";
        foreach (var f in new[] { "bind", "unbind", "new_id", "remove_id", "uevent" }) _tree.Text($"{dir}/{f}", "");
        if (driver.Module is not null)
        {
            _tree.Link($"{dir}/module", $"sys/module/{driver.Module}");
            _tree.Link($"sys/module/{driver.Module}/drivers/pci:{driver.Name}", dir);
        }
    }

    /// <summary>sys/module/NAME, the module's drivers, /dev/vfio/vfio for vfio. Collects newly registered drivers for autoprobe.</summary>
    private void LoadModuleFiles(string module, List<SimDriver>? registered)
    {
        if (!_loadedModules.Add(module)) return;
        _moduleOrder.Add(module);
        _tree.Text($"sys/module/{module}/initstate", "live\n");
        _tree.Text($"sys/module/{module}/refcnt", "0\n");
        // /dev/vfio/vfio is the vfio module's container device (REFERENCE §3.5: VFIO usable = IOMMU and /dev/vfio/vfio).
        if (module == "vfio") _tree.Text("dev/vfio/vfio", "");
        // The type1 backend's parameters (REFERENCE §8.4: allow_unsafe_interrupts reads Y/N), as the real module has them.
        if (module == "vfio_iommu_type1")
        {
            string p = "sys/module/vfio_iommu_type1/parameters";
            _tree.Text($"{p}/allow_unsafe_interrupts", _config.AllowUnsafeInterrupts ? "Y\n" : "N\n");
            _tree.Text($"{p}/disable_hugepages", "N\n");
            _tree.Text($"{p}/dma_entry_limit", "65535\n");
        }
        foreach (var driver in _drivers.Where(d => d.Module == module).ToList())
        {
            CreateDriverDir(driver);
            registered?.Add(driver);
        }
    }

    private void WriteProcModules()
    {
        var sb = new StringBuilder();
        foreach (var m in Enumerable.Reverse(_moduleOrder))
        {
            string users = string.Join(',', _moduleOrder.Where(o => DriverCatalog.DependenciesOf(o).Contains(m)));
            sb.Append(CultureInfo.InvariantCulture, $"{m} 16384 {users.Split(',', StringSplitOptions.RemoveEmptyEntries).Length} {(users.Length == 0 ? "-" : users + ",")} Live 0x0000000000000000\n");
        }
        _tree.Text("proc/modules", sb.ToString());
    }

    // ---- what host drivers create below their devices -------------------------------------------------------------------

    private void CreateChildren(SimDevice d)
    {
        foreach (var child in d.Children)
        {
            switch (child)
            {
                case NetChild net:
                {
                    string dir = $"sys/{d.RelDir}/net/{net.Interface}";
                    _tree.Text($"{dir}/ifindex", $"{2 + _devices.IndexOf(d)}\n");
                    _tree.Text($"{dir}/address", string.Create(CultureInfo.InvariantCulture, $"3c:ec:ef:{d.Address.Bus:x2}:{d.Address.Device:x2}:{d.Address.Function:x2}\n"));
                    _tree.Text($"{dir}/operstate", "up\n");
                    _tree.Text($"{dir}/type", "1\n");
                    _tree.Link($"{dir}/device", $"sys/{d.RelDir}");
                    _tree.Link($"sys/class/net/{net.Interface}", dir);
                    break;
                }
                case DiskChild disk:
                {
                    string ctrl = $"sys/{d.RelDir}/nvme/{disk.Controller}";
                    string ns = $"{ctrl}/{disk.Controller}n1";
                    _tree.Text($"{ctrl}/model", "Samsung SSD 970 EVO Plus 1TB\n");
                    _tree.Link($"{ctrl}/device", $"sys/{d.RelDir}");
                    _tree.Link($"sys/class/nvme/{disk.Controller}", ctrl);
                    BlockNode(ns, $"{disk.Controller}n1", disk.FirstMinor, null);
                    _tree.Link($"sys/block/{disk.Controller}n1", ns);
                    BlockNode($"{ns}/{disk.Controller}n1p1", $"{disk.Controller}n1p1", disk.FirstMinor + 1, 1);
                    BlockNode($"{ns}/{disk.Controller}n1p2", $"{disk.Controller}n1p2", disk.FirstMinor + 2, 2);
                    break;
                }
                case FramebufferChild fb:
                {
                    string dir = $"sys/{d.RelDir}/graphics/{fb.Name}";
                    _tree.Text($"{dir}/dev", $"29:{fb.Name[2..]}\n");
                    _tree.Link($"{dir}/device", $"sys/{d.RelDir}");
                    _tree.Link($"sys/class/graphics/{fb.Name}", dir);
                    _tree.Link($"sys/dev/char/29:{fb.Name[2..]}", dir);
                    if (_tree.Exists("sys/devices/virtual/vtconsole/vtcon1")) _tree.Text("sys/devices/virtual/vtconsole/vtcon1/bind", "1\n");
                    break;
                }
            }
        }
        if (d.Children.OfType<NetChild>().Any()) WriteRoutes();
    }

    private void BlockNode(string dir, string name, int minor, int? partition)
    {
        _tree.Text($"{dir}/dev", $"259:{minor}\n");
        _tree.Text($"{dir}/size", partition == 1 ? "1048576\n" : "1952475136\n");
        if (partition is int p) _tree.Text($"{dir}/partition", $"{p}\n");
        _tree.Link($"sys/dev/block/259:{minor}", dir);
        _tree.Link($"sys/class/block/{name}", dir);
    }

    private void RemoveChildren(SimDevice d)
    {
        foreach (var child in d.Children)
        {
            switch (child)
            {
                case NetChild net:
                    _tree.Remove($"sys/class/net/{net.Interface}");
                    _tree.Remove($"sys/{d.RelDir}/net/{net.Interface}");
                    break;
                case DiskChild disk:
                    string n = $"{disk.Controller}n1";
                    for (int i = 0; i < 3; i++) _tree.Remove($"sys/dev/block/259:{disk.FirstMinor + i}");
                    foreach (var name in new[] { n, n + "p1", n + "p2" }) _tree.Remove($"sys/class/block/{name}");
                    _tree.Remove($"sys/block/{n}");
                    _tree.Remove($"sys/class/nvme/{disk.Controller}");
                    _tree.Remove($"sys/{d.RelDir}/nvme");
                    break;
                case FramebufferChild fb:
                    _tree.Remove($"sys/class/graphics/{fb.Name}");
                    _tree.Remove($"sys/dev/char/29:{fb.Name[2..]}");
                    _tree.Remove($"sys/{d.RelDir}/graphics");
                    // fbcon lets go of the console when its framebuffer goes away.
                    if (_tree.Exists("sys/devices/virtual/vtconsole/vtcon1")) _tree.Text("sys/devices/virtual/vtconsole/vtcon1/bind", "0\n");
                    break;
            }
        }
        if (d.Children.OfType<NetChild>().Any()) WriteRoutes();
    }

    private void CreateVtConsoles()
    {
        _tree.Text("sys/devices/virtual/vtconsole/vtcon0/name", "(S) dummy device\n");
        _tree.Text("sys/devices/virtual/vtconsole/vtcon0/bind", "0\n");
        _tree.Link("sys/class/vtconsole/vtcon0", "sys/devices/virtual/vtconsole/vtcon0");
        var fbOwner = _devices.FirstOrDefault(d => d.Children.OfType<FramebufferChild>().Any());
        if (fbOwner is null) return;
        _tree.Text("sys/devices/virtual/vtconsole/vtcon1/name", "(M) frame buffer device\n");
        _tree.Text("sys/devices/virtual/vtconsole/vtcon1/bind", DriverOf(fbOwner) == fbOwner.HostDriver ? "1\n" : "0\n");
        _tree.Link("sys/class/vtconsole/vtcon1", "sys/devices/virtual/vtconsole/vtcon1");
    }

    /// <summary>sys/devices/system/node ([K] Documentation/ABI/stable/sysfs-devices-node): online, possible, has_cpu, nodeN/cpulist.</summary>
    private void WriteNumaNodes()
    {
        var nodes = _config.EffectiveNumaNodes;
        string all = nodes.Count == 1 ? "0" : $"0-{nodes.Count - 1}";
        foreach (string f in new[] { "online", "possible", "has_cpu", "has_memory", "has_normal_memory" }) _tree.Text($"sys/devices/system/node/{f}", all + "\n");
        for (int i = 0; i < nodes.Count; i++)
        {
            string dir = string.Create(CultureInfo.InvariantCulture, $"sys/devices/system/node/node{i}");
            _tree.Text($"{dir}/cpulist", nodes[i] + "\n");
            _tree.Text($"{dir}/distance", string.Join(" ", Enumerable.Range(0, nodes.Count).Select(j => j == i ? "10" : "21")) + "\n");
        }
    }

    // ---- /proc ----------------------------------------------------------------------------------------------------------

    private void WriteProc()
    {
        _tree.Text("proc/cmdline", _config.EffectiveCommandLine() + "\n");
        _tree.Text("proc/sys/kernel/osrelease", _config.Release + "\n");
        _tree.Text("proc/cpuinfo", ProcContent.CpuInfo(_config));
        _tree.Text("proc/self/mountinfo", ProcContent.MountInfo(_devices));
        _tree.Text("proc/interrupts", ProcContent.Interrupts(_devices.Where(d => DriverOf(d) is not null).ToList(), _config.IommuOn && _config.InterruptRemapping));
        WriteProcModules();
        WriteRoutes();
    }

    /// <summary>net/route lists only interfaces that exist: a NIC's routes go when its driver lets go of it.</summary>
    private void WriteRoutes()
    {
        var present = _devices.SelectMany(d => d.Children.OfType<NetChild>())
            .Where(n => _tree.Exists($"sys/class/net/{n.Interface}")).ToList();
        _tree.Text("proc/net/route", ProcContent.Routes(present));
    }

    private byte[] AcpiTable(string signature)
    {
        var t = new byte[48];
        Encoding.ASCII.GetBytes(signature).CopyTo(t, 0);
        BitConverter.GetBytes(48).CopyTo(t, 4);
        t[8] = 1;
        Encoding.ASCII.GetBytes("GALLIM").CopyTo(t, 10);
        Encoding.ASCII.GetBytes("SIMHOST ").CopyTo(t, 16);
        if (signature == "DMAR") { t[36] = (byte)(_config.PhysicalAddressBits - 1); t[37] = 1; }  // host address width, INTR_REMAP
        t[9] = (byte)((256 - t.Sum(b => b) % 256) % 256);
        return t;
    }
}
