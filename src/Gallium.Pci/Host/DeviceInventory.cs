using System.Globalization;

namespace Gallium.Pci.Host;

/// <summary>Reads the PCI functions and IOMMU groups the kernel shows in sysfs (REFERENCE §3.1–§3.5), with names from pci.ids.
/// Each read is one pass: one directory listing per function, each attribute file read at most once, and only the files
/// the listing shows. A function whose directory vanishes while it is read (hot-unplug) is left out.</summary>
public sealed class DeviceInventory
{
    private const string DevicesDir = "bus/pci/devices";
    private const string GroupsDir = "kernel/iommu_groups";

    private readonly ISysfs _sysfs;
    private readonly HostPaths _paths;
    private readonly Lazy<HostId> _hostId;
    private readonly CaveatReader _caveats;

    /// <param name="names">A shared pci.ids database (it parses once, on first use); by default one over the host's PciIdsPath.</param>
    public DeviceInventory(HostContext host, PciIds? names = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        _sysfs = host.Sysfs;
        _paths = host.Paths;
        Names = names ?? new PciIds(host.PciIdsPath);
        _hostId = new Lazy<HostId>(() => HostIdReader.Read(host));
        _caveats = new CaveatReader(host);
    }

    /// <summary>The changes an interrupted Enable/Disable left unfinished (each one's endpoints show
    /// <see cref="PassthroughState.Interrupted"/>), and the records of such changes that cannot be read.</summary>
    public (IReadOnlyList<UnfinishedChange> Changes, IReadOnlyList<GalliumException> Unreadable) ReadUnfinishedChanges()
    {
        var state = PersistedState.Read(_paths);
        return (state.Pending, state.Unreadable);
    }

    public PciIds Names { get; }

    /// <summary>This host's identity, which every device read here carries (read once per inventory).</summary>
    public HostId Host => _hostId.Value;

    /// <summary>The IOMMU is on when the kernel has at least one IOMMU group (libvirt's virHostHasIOMMU, REFERENCE §3.5).</summary>
    public bool IommuOn => _sysfs.List(GroupsDir).Count > 0;

    /// <summary>Every PCI function, sorted by address.</summary>
    public IReadOnlyList<PciDevice> ReadAll()
    {
        var found = new List<(PciAddress Address, string Name)>();
        foreach (string name in _sysfs.List(DevicesDir))
        {
            if (PciAddress.TryParse(name, out var address)) found.Add((address, name));
        }
        found.Sort(static (a, b) => a.Address.CompareTo(b.Address));

        // pci.ids parses on a worker while sysfs is read: the first inventory of a process costs the larger of the two, not the sum.
        var namesLoaded = Names.IsLoaded ? null : Task.Run(Names.Load);
        var read = new PciDevice?[found.Count];
        if (found.Count < ParallelThreshold)
        {
            for (int i = 0; i < found.Count; i++) read[i] = ReadDevice(found[i].Address, found[i].Name);
        }
        else
        {
            // Each function is independent and each read is a syscall that may wait on the device: spread them over the cores.
            var options = new ParallelOptions { MaxDegreeOfParallelism = Math.Min(Environment.ProcessorCount, 8) };
            Parallel.For(0, found.Count, options, i => read[i] = ReadDevice(found[i].Address, found[i].Name));
        }
        namesLoaded?.Wait();

        var persisted = PersistedState.Read(_paths);
        var devices = new List<PciDevice>(found.Count);
        foreach (var device in read)
        {
            if (device is not null) devices.Add(Complete(device, persisted));
        }
        return _caveats.Annotate(devices, allFunctions: true);
    }

    /// <summary>One function; null when the host has no such function.</summary>
    public PciDevice? Read(PciAddress address) =>
        ReadDevice(address, address.ToString()) is { } d ? _caveats.Annotate([Complete(d, PersistedState.Read(_paths))], allFunctions: false)[0] : null;

    /// <summary>Below this many functions a sequential read beats starting parallel workers.</summary>
    private const int ParallelThreshold = 48;

    /// <summary>Names from pci.ids and the passthrough state from the binding and what is persisted for it.</summary>
    private PciDevice Complete(PciDevice d, PersistedState persisted)
    {
        var (state, problem) = persisted.StateOf(d.Address, d.Driver, d.DriverOverride);
        return Named(d) with { PassthroughState = state, Problem = problem, PersistedBy = persisted.PersistedBy(d.Address) };
    }

    private PciDevice Named(PciDevice d) => d with
    {
        ClassName = Names.ClassName(d.ClassCode) ?? $"Class {d.ClassCode >> 8:x4}",
        BaseClassName = Names.BaseClassName(SysfsFormat.BaseClass(d.ClassCode)) ?? $"Class {SysfsFormat.BaseClass(d.ClassCode):x2}",
        // Unknown ids get lspci's stand-ins ("Device 0d57"), so names read as lspci shows them.
        VendorName = Names.VendorName(d.VendorId) ?? $"Vendor {d.VendorId:x4}",
        DeviceName = Names.DeviceName(d.VendorId, d.DeviceId) ?? $"Device {d.DeviceId:x4}",
        Host = Host,
    };

    /// <summary>The IOMMU groups that hold PCI functions, sorted by number, each with its functions sorted by address.
    /// Empty when the IOMMU is off.</summary>
    public IReadOnlyList<IommuGroup> ReadGroups()
    {
        var byGroup = new SortedDictionary<int, List<PciDevice>>();
        foreach (var device in ReadAll())
        {
            if (device.IommuGroup is not { } id) continue;
            if (!byGroup.TryGetValue(id, out var members)) byGroup[id] = members = [];
            members.Add(device);
        }
        return byGroup.Select(g => MakeGroup(g.Key, g.Value)).ToArray();
    }

    /// <summary>One IOMMU group with its PCI functions; null when there is no such group or it holds no PCI function.</summary>
    public IommuGroup? ReadGroup(int id) => ReadGroup(id, []);

    /// <summary>The same, taking members read moments ago (the function whose group this is) as they are instead of reading
    /// them again; one that is no longer listed in the group is left out.</summary>
    public IommuGroup? ReadGroup(int id, IReadOnlyCollection<PciDevice> alreadyRead)
    {
        ArgumentNullException.ThrowIfNull(alreadyRead);
        if (id < 0) return null;
        var members = new List<PciDevice>();
        var read = new List<PciDevice>();
        PersistedState? persisted = null;
        foreach (string name in _sysfs.List($"{GroupsDir}/{id.ToString(CultureInfo.InvariantCulture)}/devices"))
        {
            // Groups may also hold non-PCI devices (platform devices on some hosts): only PCI functions are listed.
            if (!PciAddress.TryParse(name, out var address)) continue;
            if (alreadyRead.FirstOrDefault(d => d.Address == address && d.IommuGroup == id) is { } known) members.Add(known);
            else if (ReadDevice(address, name) is { } device) read.Add(Complete(device, persisted ??= PersistedState.Read(_paths)));
        }
        members.AddRange(_caveats.Annotate(read, allFunctions: false));  // those already read carry their caveats
        if (members.Count == 0) return null;
        members.Sort(static (a, b) => a.Address.CompareTo(b.Address));
        return MakeGroup(id, members);
    }

    private IommuGroup MakeGroup(int id, List<PciDevice> members) => new()
    {
        Id = id,
        Devices = members,
        Type = _sysfs.ReadText($"{GroupsDir}/{id.ToString(CultureInfo.InvariantCulture)}/type")?.Trim() is { Length: > 0 } t ? t : null,
        Caveats = _caveats.ForGroup(members),
    };

    /// <summary>The function's sysfs facts, without names (<see cref="Named"/> adds them).</summary>
    private PciDevice? ReadDevice(PciAddress address, string name)
    {
        using var directory = SysfsDirectories.Open(_sysfs, DevicesDir + "/" + name);
        return directory is null ? null : ReadDevice(address, directory);  // null: no such function, or it was just removed
    }

    private static PciDevice? ReadDevice(PciAddress address, ISysfsDirectory directory)
    {
        var entries = directory.Names;
        var present = Attributes.None;
        List<(int Index, string Entry)>? virtfns = null;
        foreach (string entry in entries)
        {
            present |= entry switch
            {
                "vendor" => Attributes.Vendor,
                "device" => Attributes.Device,
                "subsystem_vendor" => Attributes.SubsystemVendor,
                "subsystem_device" => Attributes.SubsystemDevice,
                "class" => Attributes.Class,
                "revision" => Attributes.Revision,
                "driver" => Attributes.Driver,
                "driver_override" => Attributes.DriverOverride,
                "iommu_group" => Attributes.IommuGroup,
                "numa_node" => Attributes.NumaNode,
                "resource" => Attributes.Resource,
                "reset_method" => Attributes.ResetMethod,
                "boot_vga" => Attributes.BootVga,
                "sriov_totalvfs" => Attributes.SriovTotalVfs,
                "physfn" => Attributes.PhysFn,
                "pci_bus" => Attributes.PciBus,
                _ => Attributes.None,
            };
            // virtfn<N> links: one per enabled VF (REFERENCE §3.2).
            if (entry.StartsWith("virtfn", StringComparison.Ordinal)
                && int.TryParse(entry.AsSpan(6), NumberStyles.None, CultureInfo.InvariantCulture, out int n))
                (virtfns ??= []).Add((n, entry));
        }

        string? Text(Attributes a, string file) => (present & a) != 0 ? directory.ReadText(file) : null;
        string? Link(Attributes a, string file) => (present & a) != 0 ? directory.ReadLink(file) : null;

        // vendor and device identify the function; if they cannot be read, it is gone.
        if (SysfsFormat.ParseId(Text(Attributes.Vendor, "vendor")) is not { } vendor) return null;
        if (SysfsFormat.ParseId(Text(Attributes.Device, "device")) is not { } deviceId) return null;

        uint classCode = SysfsFormat.ParseClass(Text(Attributes.Class, "class")) ?? 0;
        string? driver = SysfsFormat.LinkName(Link(Attributes.Driver, "driver"));

        IReadOnlyList<PciAddress> vfs = [];
        if (virtfns is not null)
        {
            virtfns.Sort(static (a, b) => a.Index.CompareTo(b.Index));
            var list = new List<PciAddress>(virtfns.Count);
            foreach (var (_, entry) in virtfns)
            {
                if (SysfsFormat.ParseDeviceLink(directory.ReadLink(entry)) is { } vf) list.Add(vf);
            }
            vfs = list;
        }

        return new PciDevice
        {
            Address = address,
            VendorId = vendor,
            DeviceId = deviceId,
            SubsystemVendorId = SysfsFormat.ParseId(Text(Attributes.SubsystemVendor, "subsystem_vendor")) ?? 0,
            SubsystemDeviceId = SysfsFormat.ParseId(Text(Attributes.SubsystemDevice, "subsystem_device")) ?? 0,
            ClassCode = classCode,
            Revision = SysfsFormat.ParseRevision(Text(Attributes.Revision, "revision")) ?? 0,
            Driver = driver,
            DriverOverride = SysfsFormat.ParseDriverOverride(Text(Attributes.DriverOverride, "driver_override")),
            IommuGroup = SysfsFormat.ParseIommuGroupLink(Link(Attributes.IommuGroup, "iommu_group")),
            NumaNode = SysfsFormat.ParseNumaNode(Text(Attributes.NumaNode, "numa_node")),
            Bars = SysfsFormat.ParseResource(Text(Attributes.Resource, "resource")),
            // A bridge class, or a subordinate bus (pci_bus/ exists only under functions with header type 1 or 2): the
            // kernel's own bridge test, read from the listing we already have instead of a config-space read per function.
            IsBridge = SysfsFormat.IsBridgeClass(classCode) || (present & Attributes.PciBus) != 0,
            IsBootVga = SysfsFormat.ParseBootVga(Text(Attributes.BootVga, "boot_vga")),
            PhysicalFunction = SysfsFormat.ParseDeviceLink(Link(Attributes.PhysFn, "physfn")),
            VirtualFunctions = vfs,
            SriovTotalVfs = SysfsFormat.ParseSriovTotalVfs(Text(Attributes.SriovTotalVfs, "sriov_totalvfs")),
            ResetMethods = SysfsFormat.ParseResetMethods(Text(Attributes.ResetMethod, "reset_method")),
        };
    }

    [Flags]
    private enum Attributes
    {
        None = 0,
        Vendor = 1 << 0,
        Device = 1 << 1,
        SubsystemVendor = 1 << 2,
        SubsystemDevice = 1 << 3,
        Class = 1 << 4,
        Revision = 1 << 5,
        Driver = 1 << 6,
        DriverOverride = 1 << 7,
        IommuGroup = 1 << 8,
        NumaNode = 1 << 9,
        Resource = 1 << 10,
        ResetMethod = 1 << 11,
        BootVga = 1 << 12,
        SriovTotalVfs = 1 << 13,
        PhysFn = 1 << 14,
        PciBus = 1 << 15,
    }
}
