namespace Gallium.Pci;

/// <summary>An IOMMU group: the smallest set of devices the host can isolate, and so the unit of passthrough (REFERENCE §3.5, §4.5).</summary>
public sealed record IommuGroup
{
    public required int Id { get; init; }
    private readonly IReadOnlyList<PciDevice> _devices = [];

    /// <summary>Members in address order. A read-only collection, not an array: PowerShell's member enumeration
    /// ($group.Devices.Address) would otherwise find the array's own Address() method.</summary>
    public required IReadOnlyList<PciDevice> Devices
    {
        get => _devices;
        init => _devices = value is PciDevice[] array ? Array.AsReadOnly(array) : value;
    }
    /// <summary>The group's default domain type (DMA, DMA-FQ, identity), when the kernel says.</summary>
    public string? Type { get; init; }
    /// <summary>Every caveat of the group: its members' (<see cref="PciDevice.Caveats"/>) and the host's that weaken every
    /// group (the ACS override, unsafe interrupts). Enable and Add write one warning per caveat.</summary>
    public IReadOnlyList<PassthroughCaveat> Caveats { get; init; } = [];

    /// <summary>Viable for VFIO: every endpoint on vfio-pci (or a vfio variant), pci-stub, or no driver; bridges may keep pcieport (REFERENCE §4.5).</summary>
    public bool IsViable => Devices.All(IsViableMember);

    public IReadOnlyList<PciDevice> Endpoints => Array.AsReadOnly(Devices.Where(d => d.IsEndpoint).ToArray());

    public IReadOnlyList<string> AssignedTo => Devices.SelectMany(d => d.AssignedTo).Distinct(StringComparer.Ordinal).ToArray();

    /// <summary>The host the group was read on (its members').</summary>
    public HostId? Host => Devices.Select(d => d.Host).FirstOrDefault(h => h is not null);

    public static bool IsViableMember(PciDevice d) =>
        d.IsBridge
            ? d.Driver is null or "pcieport" or "shpchp"
            : d.Driver is null or "vfio-pci" or "pci-stub" || (d.Driver?.EndsWith("_vfio_pci", StringComparison.Ordinal) ?? false);

    public override string ToString() => $"IOMMU group {Id} ({Devices.Count} devices)";
}
