using System.Globalization;

namespace Gallium.Pci.Host;

/// <summary>Works out the caveats of devices and IOMMU groups from what the kernel shows (DESIGN.md "Caveats"): reset methods
/// (REFERENCE §3.2, §8.4), firmware framebuffers in /proc/iomem, boot VGA, chipset functions, and the host-wide
/// <see cref="HostIsolation"/>. The inventory calls it after reading devices; it reads only what those need beyond sysfs
/// attributes already read (one /proc/iomem per call, the host facts once per reader).</summary>
public sealed class CaveatReader
{
    private const string DevicesDir = "bus/pci/devices";

    private readonly HostContext _host;
    private readonly Lazy<HostIsolation> _isolation;
    private readonly Lazy<PciAddress[]> _functions;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<int, HashSet<PciAddress>> _groupMembers = new();

    public CaveatReader(HostContext host)
    {
        _host = host ?? throw new ArgumentNullException(nameof(host));
        _isolation = new Lazy<HostIsolation>(() => HostIsolation.Read(_host));
        // Read at most once per reader, and only when a bus-reset-only device asks who shares its bus.
        _functions = new Lazy<PciAddress[]>(() => _host.Sysfs.List(DevicesDir)
            .Select(n => PciAddress.TryParse(n, out var x) ? x : (PciAddress?)null).OfType<PciAddress>().Order().ToArray());
    }

    /// <summary>The host-wide facts (read on first use, then kept for this reader's life).</summary>
    public HostIsolation Isolation => _isolation.Value;

    /// <summary>Chipset functions: class 06xx other than the PCI-to-PCI, CardBus and semi-transparent bridges (those stay on
    /// their port driver), and SMBus (0x0c05): host bridge, ISA/LPC bridge, EISA, MCA, PCMCIA, NuBus, RACEway, other bridges.</summary>
    public static bool IsChipsetClass(uint classCode) =>
        SysfsFormat.BaseClass(classCode) == 0x06 ? !SysfsFormat.IsBridgeClass(classCode) : classCode >> 8 == 0x0c05;

    /// <summary>The devices with their caveats. <paramref name="allFunctions"/>: the list holds every function of the host, so the
    /// functions sharing a bus reset are found in it instead of in sysfs.</summary>
    public IReadOnlyList<PciDevice> Annotate(IReadOnlyList<PciDevice> devices, bool allFunctions)
    {
        ArgumentNullException.ThrowIfNull(devices);
        if (devices.Count == 0) return devices;
        var iomem = new Lazy<IoMem>(() => IoMem.Read(_host.Procfs), LazyThreadSafetyMode.None);
        var bus = allFunctions ? new BusIndex(devices) : new BusIndex(this);
        var result = new PciDevice[devices.Count];
        for (int i = 0; i < devices.Count; i++) result[i] = devices[i] with { Caveats = For(devices[i], iomem, bus) };
        return result;
    }

    /// <summary>A group's caveats: each member's, then the host's (when the group has an endpoint to pass through).</summary>
    public IReadOnlyList<PassthroughCaveat> ForGroup(IReadOnlyList<PciDevice> members)
    {
        ArgumentNullException.ThrowIfNull(members);
        var caveats = members.SelectMany(d => d.Caveats).ToList();
        if (members.Any(d => d.IsEndpoint)) caveats.AddRange(Isolation.Caveats());
        return caveats;
    }

    private List<PassthroughCaveat> For(PciDevice d, Lazy<IoMem> iomem, BusIndex bus)
    {
        var caveats = new List<PassthroughCaveat>();
        if (d.IsBridge) return caveats;
        bool chipset = IsChipsetClass(d.ClassCode);
        if (chipset)
        {
            string what = d.ClassName.Length > 0 ? d.ClassName : string.Create(CultureInfo.InvariantCulture, $"class {d.ClassCode >> 8:x4}");
            caveats.Add(new ChipsetFunctionCaveat
            {
                Address = d.Address, ClassCode = (ushort)(d.ClassCode >> 8),
                Reason = $"It is a chipset function ({what}): the host's platform (firmware interfaces, sensors, power management) " +
                         "runs through it, and taking it from the host can hang it.",
                Remedy = "Pass through a device in another IOMMU group: a chipset group is not meant for a VM.",
            });
        }
        foreach (var (bar, fb) in iomem.Value.FramebuffersIn(d.Bars)) caveats.Add(Framebuffer(d, bar, fb));
        if (d.IsBootVga)
        {
            caveats.Add(new BootVgaCaveat
            {
                Address = d.Address,
                Reason = "It is the firmware's boot display: its option ROM ran (and changed its image) at boot, so the guest may need " +
                         "a clean ROM, and the host's boot console lives on it.",
                Remedy = "Make another display the primary one in the firmware setup, or give the VM a clean ROM dump of the card " +
                         "(<rom file='...'/> on the hostdev).",
            });
        }
        if (!chipset && ResetCaveat(d, bus) is { } reset) caveats.Add(reset);
        return caveats;
    }

    private static FirmwareFramebufferCaveat Framebuffer(PciDevice d, PciBar bar, IoMemEntry fb)
    {
        var parameters = IoMem.ParametersThatFree(fb.Name);
        string range = string.Create(CultureInfo.InvariantCulture, $"[mem 0x{fb.Start:x}-0x{fb.End:x}]");
        return new FirmwareFramebufferCaveat
        {
            Address = d.Address, Holder = fb.Name, BarIndex = bar.Index, Start = fb.Start, End = fb.End, KernelParameters = parameters,
            Reason = $"A firmware framebuffer ({fb.Name}) holds BAR {bar.Index} {range}: the host's boot console draws into it; vfio-pci " +
                     $"takes it away, and where it stays VFIO cannot claim the BAR (\"BAR {bar.Index}: can't reserve\") and the VM does not start.",
            Remedy = $"Boot with {string.Join(" (or ", parameters)}{(parameters.Count > 1 ? ")" : "")} on the kernel command line " +
                     $"({ReadinessProbe.GrubHowTo}), or make another display the boot display in the firmware setup.",
        };
    }

    /// <summary>No reset method at all, or only bus resets (REFERENCE §3.2 reset_method, §8.4). A device without
    /// reset_method but with reset is on a kernel older than 5.15: its methods are unknown, so nothing is claimed.</summary>
    private PassthroughCaveat? ResetCaveat(PciDevice d, BusIndex bus)
    {
        if (d.ResetMethods.Count == 0)
        {
            if (_host.Sysfs.Exists($"{DevicesDir}/{d.Address}/reset")) return null;
            return new NoResetCaveat
            {
                Address = d.Address,
                Reason = "It has no reset method (reset_method is empty): it keeps its state from one VM run to the next, and many " +
                         "such devices do not start in a VM a second time until the host reboots.",
                Remedy = "Prefer a device with FLR; for AMD GPUs the vendor-reset module adds a device-specific reset; otherwise plan " +
                         "a host reboot between VM runs.",
                Security = "The next VM, or the host, may find what the last VM left in the device.",
            };
        }
        if (!d.ResetMethods.All(m => m is "bus" or "cxl_bus")) return null;
        var shared = bus.SiblingsOf(d.Address);
        var outside = shared.Where(s => !bus.SameGroup(s, d.IommuGroup)).ToArray();
        string busName = string.Create(CultureInfo.InvariantCulture, $"{d.Address.Domain:x4}:{d.Address.Bus:x2}");
        string reason = shared.Count == 0
            ? $"Its only reset is a secondary bus reset of bus {busName} ({string.Join(" ", d.ResetMethods)}): slower than FLR, and some devices (many GPUs) do not come back from it cleanly."
            : $"Its only reset is a secondary bus reset of bus {busName}, which resets {string.Join(", ", shared)} too"
              + (outside.Length == 0 ? " (all in this IOMMU group)." : $"; {string.Join(", ", outside)} {(outside.Length == 1 ? "is" : "are")} in another group, and VFIO resets the bus only when one VM holds every function on it.");
        return new BusResetOnlyCaveat
        {
            Address = d.Address, SharedWith = shared, OutsideGroup = outside,
            Reason = reason,
            Remedy = shared.Count == 0
                ? "Prefer a device with FLR; where the device does not recover from a bus reset, reboot the host between VM runs."
                : $"Give every function on bus {busName} to the same VM, or move the device to a slot of its own.",
        };
    }

    /// <summary>The members of a group (its devices directory, listed once per reader).</summary>
    private HashSet<PciAddress> GroupMembers(int id) => _groupMembers.GetOrAdd(id, g => _host.Sysfs
        .List($"kernel/iommu_groups/{g.ToString(CultureInfo.InvariantCulture)}/devices")
        .Select(n => PciAddress.TryParse(n, out var x) ? x : (PciAddress?)null).OfType<PciAddress>().ToHashSet());

    /// <summary>Which functions share a bus, and whether they share the device's group: from the full list when the caller has
    /// it, else from the bus/pci/devices and group listings (never a second read of a function's own attributes).</summary>
    private sealed class BusIndex
    {
        private readonly CaveatReader? _reader;
        private readonly Dictionary<(uint, byte), List<PciAddress>>? _byBus;
        private readonly Dictionary<PciAddress, int?>? _groups;

        public BusIndex(IReadOnlyList<PciDevice> all)
        {
            _byBus = all.GroupBy(d => (d.Address.Domain, d.Address.Bus)).ToDictionary(g => g.Key, g => g.Select(d => d.Address).ToList());
            _groups = all.ToDictionary(d => d.Address, d => d.IommuGroup);
        }

        public BusIndex(CaveatReader reader) => _reader = reader;

        public IReadOnlyList<PciAddress> SiblingsOf(PciAddress a)
        {
            IEnumerable<PciAddress> onBus = _byBus is not null
                ? _byBus.TryGetValue((a.Domain, a.Bus), out var list) ? list : []
                : _reader!._functions.Value.Where(x => x.Domain == a.Domain && x.Bus == a.Bus);
            return onBus.Where(x => x != a).Order().ToArray();
        }

        public bool SameGroup(PciAddress sibling, int? group) =>
            group is int g && (_groups is not null ? _groups.GetValueOrDefault(sibling) == g : _reader!.GroupMembers(g).Contains(sibling));
    }
}
