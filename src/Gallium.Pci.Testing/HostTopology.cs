using Gallium.Pci.Testing.Internal;

namespace Gallium.Pci.Testing;

/// <summary>Fluent description of a host's PCI topology and kernel, written out as a kernel-shaped tree by
/// <see cref="Build"/>. Device methods add a function; the modifier methods after them (Mem64Bar, Sriov, ...) apply to the
/// function added last. Addresses are <c>DDDD:BB:DD.F</c> or <c>BB:DD.F</c>; a bridge names the bus below it, and a
/// device on bus N hangs below the bridge whose secondary bus is N (bus 0 is the root bus).</summary>
/// <example>
/// <code>
/// var kernel = HostTopology.Create()
///     .RootPort("00:01.0", secondaryBus: 1)
///     .Endpoint("01:00.0", 0x10de, 0x2684, 0x030000, "nvidia").Mem64Bar(1, 32L &lt;&lt; 30, prefetchable: true)
///     .Build(tempDir);
/// </code>
/// </example>
public sealed class HostTopology
{
    private readonly KernelConfig _config = new();
    private readonly List<SimDevice> _devices = [];
    private readonly List<SimDriver> _drivers = DriverCatalog.Create();
    private readonly HashSet<string> _loadedDrivers = new(StringComparer.Ordinal);
    private SimDevice? _last;
    private bool _built;

    /// <summary>An Intel host with the IOMMU on (DMAR table present, enabled in the kernel), vfio-pci loaded, no devices.</summary>
    public static HostTopology Create() => new();

    // ---- host-wide -------------------------------------------------------------------------------------------------

    /// <summary>"intel" (GenuineIntel, vmx, DMAR, dmar0) or "amd" (AuthenticAMD, svm, IVRS, ivhd0).</summary>
    public HostTopology Cpu(string vendor)
    {
        _config.Amd = vendor.Trim().ToLowerInvariant() switch
        {
            "intel" or "genuineintel" => false,
            "amd" or "authenticamd" => true,
            _ => throw new ArgumentException($"CPU vendor is 'intel' or 'amd', not '{vendor}'.", nameof(vendor)),
        };
        if (_config.Amd && _config.PhysicalAddressBits == 46) { _config.PhysicalAddressBits = 48; _config.VirtualAddressBits = 48; }
        return this;
    }

    /// <summary>Whether firmware publishes the DMAR/IVRS table and whether the kernel enabled the IOMMU; groups exist only when both.</summary>
    public HostTopology Iommu(bool firmwareTable, bool kernelEnabled)
    {
        _config.FirmwareIommu = firmwareTable;
        _config.KernelIommu = kernelEnabled;
        return this;
    }

    public HostTopology PhysicalAddressBits(int bits) { _config.PhysicalAddressBits = bits; return this; }
    public HostTopology KernelRelease(string release) { _config.Release = release; return this; }
    /// <summary>Replaces the whole /proc/cmdline.</summary>
    public HostTopology KernelCommandLine(string commandLine) { _config.CommandLine = commandLine; return this; }
    /// <summary>Tokens appended to the generated /proc/cmdline (e.g. "iommu=pt").</summary>
    public HostTopology ExtraCommandLine(string tokens) { _config.ExtraCommandLine = tokens; return this; }
    /// <summary>Interrupt remapping (on by default with the IOMMU): off leaves no "IR-" chip in /proc/interrupts.</summary>
    public HostTopology InterruptRemapping(bool enabled) { _config.InterruptRemapping = enabled; return this; }
    /// <summary>vfio_iommu_type1.allow_unsafe_interrupts (sys/module/vfio_iommu_type1/parameters, Y/N once the module is loaded).</summary>
    public HostTopology AllowUnsafeInterrupts(bool allowed) { _config.AllowUnsafeInterrupts = allowed; return this; }
    /// <summary>NUMA nodes 0..n-1 with these CPU lists (e.g. "0-7", "8-15"): sys/devices/system/node and /proc/cpuinfo follow.</summary>
    public HostTopology NumaNodes(params string[] cpuLists)
    {
        if (cpuLists.Length == 0) throw new ArgumentException("At least one node.", nameof(cpuLists));
        _config.NumaNodes.Clear();
        _config.NumaNodes.AddRange(cpuLists);
        return this;
    }
    /// <summary>The groups' <c>type</c> (REFERENCE §3.5: DMA-FQ by default, identity with iommu=pt).</summary>
    public HostTopology IommuDefaultDomain(string type) { _config.DefaultDomainType = type; return this; }
    /// <summary>Whether vfio-pci (and vfio, vfio_iommu_type1, ...) is loaded at boot; when not, Load("vfio-pci") loads it.</summary>
    public HostTopology VfioPciLoaded(bool loaded) { _config.VfioLoaded = loaded; return this; }
    /// <summary>modprobe of this module fails with this reason (e.g. "administratively prohibited").</summary>
    public HostTopology ModuleLoadFails(string module, string reason) { _config.LoadFailures[KernelConfig.Normalize(module)] = reason; return this; }
    /// <summary>The kernel has no such module (IsAvailable false, Load fails "not found").</summary>
    public HostTopology ModuleUnavailable(string module) { _config.UnavailableModules.Add(KernelConfig.Normalize(module)); return this; }

    /// <summary>Adds or replaces a driver. <paramref name="ids"/>: "VVVV:DDDD", "VVVV:*" or "class:CCCCCC[/MASK]".
    /// <paramref name="module"/> null = built into the kernel.</summary>
    public HostTopology Driver(string name, string? module, bool loaded, bool sriovConfigure, params string[] ids)
    {
        _drivers.RemoveAll(d => d.Name == name);
        var driver = new SimDriver { Name = name, Module = module is null ? null : KernelConfig.Normalize(module), SriovConfigure = sriovConfigure };
        foreach (var id in ids) driver.Ids.Add(IdMatch.Parse(id));
        _drivers.Add(driver);
        if (loaded) _loadedDrivers.Add(name); else _loadedDrivers.Remove(name);
        return this;
    }

    /// <summary>Marks a catalog driver (e.g. pci-stub, rtsx_pci) as loaded at boot.</summary>
    public HostTopology DriverLoaded(string name)
    {
        if (_drivers.All(d => d.Name != name)) throw new ArgumentException($"No driver '{name}'; add it with Driver(...).", nameof(name));
        _loadedDrivers.Add(name);
        return this;
    }

    // ---- functions -------------------------------------------------------------------------------------------------

    /// <summary>A root-complex function that is not a port: host bridge, LPC, SMBus, integrated GPU, AMD IOMMU.</summary>
    public HostTopology RootComplex(string bdf, int vendor, int device, int classCode, string? driver) =>
        Add(bdf, DeviceKind.RootComplex, vendor, device, classCode, driver, -1);

    /// <summary>A PCIe root port (class 060400, driver pcieport, ACS on unless <see cref="Acs"/>(false)).</summary>
    public HostTopology RootPort(string bdf, int secondaryBus, int vendor = 0x8086, int device = 0xa338) =>
        Add(bdf, DeviceKind.RootPort, vendor, device, 0x060400, "pcieport", secondaryBus);

    public HostTopology SwitchUpstreamPort(string bdf, int secondaryBus, int vendor = 0x10b5, int device = 0x8747) =>
        Add(bdf, DeviceKind.SwitchUpstream, vendor, device, 0x060400, "pcieport", secondaryBus);

    public HostTopology SwitchDownstreamPort(string bdf, int secondaryBus, int vendor = 0x10b5, int device = 0x8747) =>
        Add(bdf, DeviceKind.SwitchDownstream, vendor, device, 0x060400, "pcieport", secondaryBus);

    /// <summary>A PCIe-to-PCI bridge (no driver): it and everything behind it share one IOMMU group.</summary>
    public HostTopology PciBridge(string bdf, int secondaryBus, int vendor = 0x1b21, int device = 0x1080) =>
        Add(bdf, DeviceKind.PciBridge, vendor, device, 0x060400, null, secondaryBus);

    /// <summary>An endpoint function; <paramref name="driver"/> null leaves it unbound.</summary>
    public HostTopology Endpoint(string bdf, int vendor, int device, int classCode, string? driver) =>
        Add(bdf, DeviceKind.Endpoint, vendor, device, classCode, driver, -1);

    // ---- modifiers of the last function ----------------------------------------------------------------------------

    public HostTopology Subsystem(int vendor, int device) { Last.SubVendor = (ushort)vendor; Last.SubDevice = (ushort)device; return this; }
    public HostTopology Revision(int revision) { Last.Revision = (byte)revision; return this; }

    public HostTopology Mem32Bar(int index, long size, bool prefetchable = false) => Bar(index, size, BarType.Mem32, prefetchable, true);
    public HostTopology Mem64Bar(int index, long size, bool prefetchable = true) => Bar(index, size, BarType.Mem64, prefetchable, true);
    public HostTopology IoBar(int index, long size) => Bar(index, size, BarType.Io, false, true);
    /// <summary>A 64-bit prefetchable BAR the firmware could not place (start 0, IORESOURCE_UNSET; REFERENCE §3.4, §6.1).</summary>
    public HostTopology UnassignedMem64Bar(int index, long size) => Bar(index, size, BarType.Mem64, true, false);
    /// <summary>An expansion ROM (resource line 6).</summary>
    public HostTopology Rom(long size) { Last.RomSize = (ulong)size; return this; }

    /// <summary>boot_vga value (the attribute exists only for class 0x0300xx).</summary>
    public HostTopology BootVga(bool value) { Last.BootVgaSetting = value; return this; }
    public HostTopology NumaNode(int node) { Last.NumaNode = node; return this; }
    /// <summary>reset_method content, e.g. "flr bus"; empty = no reset method (no reset attribute).</summary>
    public HostTopology ResetMethods(string methods) { Last.ResetMethods = methods; Last.ResetWithoutMethods = false; return this; }
    /// <summary>A kernel older than 5.15: a reset attribute but no reset_method (which methods exist is not shown).</summary>
    public HostTopology ResetWithoutMethodList() { Last.ResetMethods = ""; Last.ResetWithoutMethods = true; return this; }
    /// <summary>A firmware framebuffer (/proc/iomem name: efifb, vesafb, simplefb, simpledrm, simple-framebuffer, BOOTFB) holds
    /// the start of BAR <paramref name="bar"/> (default: the largest prefetchable memory BAR, the VRAM).</summary>
    public HostTopology FirmwareFramebuffer(string holder = "efifb", int bar = -1)
    {
        Last.FirmwareFramebuffer = holder;
        Last.FramebufferBar = bar;
        return this;
    }
    /// <summary>ACS on a port, or on the functions of a multi-function endpoint (default: ports on, multi-function endpoints off).</summary>
    public HostTopology Acs(bool enabled) { Last.AcsSetting = enabled; return this; }
    /// <summary>The function is not behind the IOMMU (no iommu_group), like the AMD IOMMU's own function.</summary>
    public HostTopology NoIommuGroup() { Last.NoIommuGroup = true; return this; }
    /// <summary>driver_override set at boot.</summary>
    public HostTopology DriverOverride(string driver) { Last.InitialOverride = driver; return this; }

    /// <summary>The last function is on vfio-pci at boot with override vfio-pci (as a persisted Enable leaves it); its host
    /// driver stays the one given to Endpoint, which a reprobe finds after the override is cleared.</summary>
    public HostTopology OnVfio() => OnVfio(Last.Bdf);

    /// <summary>The same for any function already added.</summary>
    public HostTopology OnVfio(string bdf)
    {
        var address = PciAddress.Parse(bdf);
        var d = _devices.FirstOrDefault(x => x.Address == address) ?? throw new ArgumentException($"No function {address} in the topology.", nameof(bdf));
        d.BootOnVfio = true;
        d.InitialOverride = "vfio-pci";
        return this;
    }

    /// <summary>Makes the last function an SR-IOV PF: VF n is at routing id PF + offset + n*stride (same domain).</summary>
    public HostTopology Sriov(int totalVfs, int vfDeviceId, string? vfDriver, int numVfs = 0, int vfOffset = 0x10, int vfStride = 1)
    {
        if (numVfs > totalVfs) throw new ArgumentOutOfRangeException(nameof(numVfs), "numVfs > totalVfs");
        Last.Sriov = new SimSriov { TotalVfs = totalVfs, VfDeviceId = (ushort)vfDeviceId, VfDriver = vfDriver, InitialNumVfs = numVfs, Offset = vfOffset, Stride = vfStride };
        return this;
    }

    /// <summary>A network interface the function's host driver creates (sys/class/net/NAME/device); optionally carrying the default route.</summary>
    public HostTopology NetInterface(string name, bool defaultRoute = false) { Last.Children.Add(new NetChild(name, defaultRoute)); return this; }

    /// <summary>An NVMe controller with one namespace (&lt;controller&gt;n1, major 259); with <paramref name="rootFilesystem"/> its
    /// partitions p1 (/boot/efi) and p2 (/) are mounted in mountinfo.</summary>
    public HostTopology Nvme(string controller = "nvme0", bool rootFilesystem = false) { Last.Children.Add(new DiskChild(controller, rootFilesystem)); return this; }

    /// <summary>The function's host driver runs the framebuffer console (graphics/fb0, vtcon1 bound).</summary>
    public HostTopology Framebuffer(string name = "fb0") { Last.Children.Add(new FramebufferChild(name)); return this; }

    /// <summary>These functions share one IOMMU group whatever ACS says (a platform quirk, e.g. host bridge with the LPC/SMBus functions).</summary>
    public HostTopology ShareGroup(params string[] bdfs)
    {
        _config.SharedGroups.Add(bdfs.Select(PciAddress.Parse).ToArray());
        return this;
    }

    // ---- build -----------------------------------------------------------------------------------------------------

    /// <summary>Writes the tree under <paramref name="root"/> (created if missing; must be empty) and returns the kernel over it.</summary>
    public SimulatedKernel Build(string root)
    {
        if (string.IsNullOrWhiteSpace(root)) throw new ArgumentException("A root directory is required.", nameof(root));
        if (_built) throw new InvalidOperationException("A HostTopology builds one tree; describe a new one for another host.");
        string full = Path.GetFullPath(root).TrimEnd('/');
        if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any())
            throw new InvalidOperationException($"{full} is not empty; a simulated host is built into an empty directory.");
        Directory.CreateDirectory(full);
        _built = true;

        var devices = _devices.ToList();
        Link(devices);
        int minor = 0;
        foreach (var disk in Grouping.ScanOrder(devices).SelectMany(d => d.Children.OfType<DiskChild>())) { disk.FirstMinor = minor; minor += 3; }
        AllocateBars(devices);
        var drivers = _drivers.Select(d => d.Clone()).ToList();
        foreach (var d in devices.Where(d => d.HostDriver is not null))
        {
            var driver = drivers.FirstOrDefault(x => x.Name == d.HostDriver);
            if (driver is null)
            {
                driver = new SimDriver { Name = d.HostDriver!, Module = KernelConfig.Normalize(d.HostDriver!) };
                drivers.Add(driver);
            }
            // The boot driver must be the one a reprobe finds again (its id table matches the device).
            if (!driver.OverrideOnly && !driver.Ids.Any(id => id.Matches(d))) driver.Ids.Add(IdMatch.ForDevice(d.Vendor, d.Device));
            driver.Loaded = true;
        }
        foreach (var d in devices.Where(d => d.Sriov?.VfDriver is not null))
        {
            var driver = drivers.FirstOrDefault(x => x.Name == d.Sriov!.VfDriver);
            if (driver is null)
            {
                driver = new SimDriver { Name = d.Sriov!.VfDriver!, Module = KernelConfig.Normalize(d.Sriov.VfDriver!) };
                drivers.Add(driver);
            }
            if (!driver.Ids.Any(id => id.Vendor == d.Vendor && id.Device == d.Sriov!.VfDeviceId)) driver.Ids.Add(IdMatch.ForDevice(d.Vendor, d.Sriov!.VfDeviceId));
            driver.Loaded = true;
        }
        foreach (var name in _loadedDrivers) drivers.First(x => x.Name == name).Loaded = true;
        var vfio = drivers.First(x => x.Name == "vfio-pci");
        vfio.Loaded = _config.VfioLoaded || devices.Any(d => d.HostDriver == "vfio-pci" || d.BootOnVfio);
        return new SimulatedKernel(full, _config, devices, drivers);
    }

    private SimDevice Last => _last ?? throw new InvalidOperationException("Add a function (Endpoint, RootPort, ...) before modifying it.");

    private HostTopology Add(string bdf, DeviceKind kind, int vendor, int device, int classCode, string? driver, int secondaryBus)
    {
        var address = PciAddress.Parse(bdf);
        if (_devices.Any(d => d.Address == address)) throw new ArgumentException($"Function {address} is already in the topology.", nameof(bdf));
        if (kind != DeviceKind.Endpoint && kind != DeviceKind.RootComplex && (secondaryBus <= address.Bus || secondaryBus > 255))
            throw new ArgumentOutOfRangeException(nameof(secondaryBus), $"A bridge's secondary bus must be above its own bus ({address}).");
        var d = new SimDevice
        {
            Address = address, Kind = kind, Vendor = (ushort)vendor, Device = (ushort)device, ClassCode = (uint)classCode & 0xffffff,
            SubVendor = (ushort)vendor, SubDevice = kind == DeviceKind.Endpoint ? (ushort)0x0001 : (ushort)0x0000,
            HostDriver = string.IsNullOrEmpty(driver) ? null : driver, SecondaryBus = secondaryBus,
            ResetMethods = kind switch { DeviceKind.Endpoint => "flr bus", DeviceKind.RootPort or DeviceKind.SwitchDownstream => "pm", _ => "" },
        };
        if (kind == DeviceKind.Endpoint && (classCode >> 8) == 0x0604) throw new ArgumentException("Use RootPort/PciBridge for bridges.", nameof(classCode));
        _devices.Add(d);
        _last = d;
        return this;
    }

    private HostTopology Bar(int index, long size, BarType type, bool prefetchable, bool assigned)
    {
        if (index is < 0 or > 5) throw new ArgumentOutOfRangeException(nameof(index), "BARs are 0-5.");
        if (type == BarType.Mem64 && index == 5) throw new ArgumentOutOfRangeException(nameof(index), "A 64-bit BAR takes two registers; BAR5 cannot be 64-bit.");
        if (size <= 0 || (size & (size - 1)) != 0) throw new ArgumentOutOfRangeException(nameof(size), "A BAR size is a power of two.");
        var d = Last;
        int limit = d.IsBridge ? 2 : 6;
        if (index >= limit) throw new ArgumentOutOfRangeException(nameof(index), "Bridges have BAR0 and BAR1 only.");
        bool taken = d.Bars.Any(b => b.Index == index || (b.Type == BarType.Mem64 && b.Index + 1 == index)) ||
                     (type == BarType.Mem64 && d.Bars.Any(b => b.Index == index + 1));
        if (taken) throw new ArgumentException($"BAR{index} of {d.Bdf} overlaps another BAR.", nameof(index));
        d.Bars.Add(new SimBar { Index = index, Size = (ulong)size, Type = type, Prefetchable = prefetchable, Assigned = assigned });
        return this;
    }

    /// <summary>Parents from bus numbers, multi-function flags, sysfs directories, subordinate bus numbers.</summary>
    private static void Link(List<SimDevice> devices)
    {
        var bridgeOfBus = new Dictionary<(uint, int), SimDevice>();
        foreach (var b in devices.Where(d => d.IsBridge))
        {
            if (!bridgeOfBus.TryAdd((b.Address.Domain, b.SecondaryBus), b))
                throw new InvalidOperationException($"Bus {b.SecondaryBus:x2} is below both {bridgeOfBus[(b.Address.Domain, b.SecondaryBus)].Bdf} and {b.Bdf}.");
        }
        foreach (var d in devices)
        {
            if (d.Address.Bus == 0) continue;
            if (!bridgeOfBus.TryGetValue((d.Address.Domain, d.Address.Bus), out var parent))
                throw new InvalidOperationException($"{d.Bdf} is on bus {d.Address.Bus:x2}, but no bridge has that secondary bus.");
            d.Parent = parent;
        }
        var slots = devices.GroupBy(d => (d.Address.Domain, d.Address.Bus, d.Address.Device));
        foreach (var slot in slots)
        {
            bool multi = slot.Count() > 1;
            foreach (var f in slot) f.MultiFunction = multi;
        }
        foreach (var d in Grouping.ScanOrder(devices))
        {
            d.RelDir = d.Parent is null
                ? $"devices/pci{d.Address.Domain:x4}:{d.Address.Bus:x2}/{d.Bdf}"
                : $"{d.Parent.RelDir}/{d.Bdf}";
        }
        foreach (var b in devices.Where(d => d.IsBridge))
        {
            int max = b.SecondaryBus;
            foreach (var d in devices)
            {
                for (var p = d.Parent; p is not null; p = p.Parent)
                {
                    if (p == b) { max = Math.Max(max, d.Address.Bus); break; }
                }
            }
            b.SubordinateBus = max;
        }
        // VFs land at routing id PF + offset + n*stride; none may collide with a built function.
        var taken = devices.Select(d => d.Address).ToHashSet();
        foreach (var pf in devices.Where(d => d.Sriov is not null))
        {
            for (int n = 0; n < pf.Sriov!.TotalVfs; n++)
            {
                var vf = VfAddress(pf, n) ?? throw new InvalidOperationException($"VF {n} of {pf.Bdf} falls outside bus 255.");
                if (taken.Contains(vf)) throw new InvalidOperationException($"VF {n} of {pf.Bdf} would be at {vf}, which is taken.");
            }
        }
    }

    internal static PciAddress? VfAddress(SimDevice pf, int n)
    {
        int rid = (pf.Address.Bus << 8) | (pf.Address.Device << 3) | pf.Address.Function;
        int vf = rid + pf.Sriov!.Offset + n * pf.Sriov.Stride;
        if (vf > 0xffff) return null;
        return new PciAddress(pf.Address.Domain, (byte)(vf >> 8), (byte)((vf >> 3) & 0x1f), (byte)(vf & 7));
    }

    /// <summary>Places BARs at naturally aligned addresses (what firmware does): 32-bit from 2 GiB, 64-bit from 128 GiB, I/O from 0x3000.</summary>
    private static void AllocateBars(List<SimDevice> devices)
    {
        ulong mem32 = 0x8000_0000UL, mem64 = 0x20_0000_0000UL, io = 0x3000UL;
        static ulong Place(ref ulong cursor, ulong size)
        {
            ulong start = (cursor + size - 1) & ~(size - 1);
            cursor = start + size;
            return start;
        }
        foreach (var d in Grouping.ScanOrder(devices))
        {
            foreach (var bar in d.Bars.OrderByDescending(b => b.Size))
            {
                if (!bar.Assigned) continue;
                bar.Start = bar.Type switch
                {
                    BarType.Io => Place(ref io, Math.Max(bar.Size, 4)),
                    BarType.Mem32 => Place(ref mem32, Math.Max(bar.Size, 4096)),
                    _ => Place(ref mem64, Math.Max(bar.Size, 4096)),
                };
            }
            if (d.RomSize > 0) d.RomStart = Place(ref mem32, d.RomSize);
            if (d.Sriov is { TotalVfs: > 0 } s)
            {
                foreach (var (index, size) in SimulatedKernel.VfBars) d.VfBarStarts[index] = Place(ref mem64, size * (ulong)s.TotalVfs);
            }
        }
    }
}
