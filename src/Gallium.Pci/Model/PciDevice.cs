namespace Gallium.Pci;

/// <summary>One PCI function as the kernel shows it in sysfs (REFERENCE §3.2), with names from pci.ids.</summary>
public sealed record PciDevice
{
    public required PciAddress Address { get; init; }
    public required ushort VendorId { get; init; }
    public required ushort DeviceId { get; init; }
    public ushort SubsystemVendorId { get; init; }
    public ushort SubsystemDeviceId { get; init; }
    /// <summary>24-bit class code: base class (23:16), subclass (15:8), programming interface (7:0).</summary>
    public uint ClassCode { get; init; }
    /// <summary>The subclass name as lspci shows it ("VGA compatible controller"), or the base class name.</summary>
    public string ClassName { get; init; } = "";
    /// <summary>The base class name ("Display controller").</summary>
    public string BaseClassName { get; init; } = "";
    public string VendorName { get; init; } = "";
    public string DeviceName { get; init; } = "";
    public byte Revision { get; init; }
    /// <summary>The bound driver's name; null when no driver is bound.</summary>
    public string? Driver { get; init; }
    /// <summary>The per-device override; null when unset (the kernel prints "(null)", REFERENCE §3.3).</summary>
    public string? DriverOverride { get; init; }
    /// <summary>IOMMU group number; null when the IOMMU is off.</summary>
    public int? IommuGroup { get; init; }
    /// <summary>NUMA node; null when the kernel does not know (-1) or does not say.</summary>
    public int? NumaNode { get; init; }
    public IReadOnlyList<PciBar> Bars { get; init; } = [];
    public bool IsBridge { get; init; }
    public bool IsBootVga { get; init; }
    /// <summary>For an SR-IOV virtual function: its physical function.</summary>
    public PciAddress? PhysicalFunction { get; init; }
    /// <summary>For an SR-IOV physical function: its enabled virtual functions.</summary>
    public IReadOnlyList<PciAddress> VirtualFunctions { get; init; } = [];
    /// <summary>SR-IOV VFs the PF can have (sriov_totalvfs); null when not SR-IOV capable.</summary>
    public int? SriovTotalVfs { get; init; }
    public IReadOnlyList<string> ResetMethods { get; init; } = [];
    public PassthroughState PassthroughState { get; init; }
    /// <summary>Which tool persists this device's binding across reboots: Gallium's record (/etc/gallium/pci.d), driverctl's
    /// (/etc/driverctl.d/pci-&lt;bdf&gt;, for vfio-pci), or none.</summary>
    public BindingPersistence PersistedBy { get; init; }
    /// <summary>Names of the VMs whose persistent definition holds this device (filled when libvirt is consulted).</summary>
    public IReadOnlyList<string> AssignedTo { get; init; } = [];
    /// <summary>What makes passing this function through unsafe or unreliable: no reset, bus reset only, a firmware
    /// framebuffer on a BAR, boot VGA, a chipset function (host-wide caveats are on the <see cref="IommuGroup"/>).</summary>
    public IReadOnlyList<PassthroughCaveat> Caveats { get; init; } = [];
    /// <summary>What is wrong with the device's passthrough state and the command that repairs it (one sentence); null
    /// when nothing is (see <see cref="Pci.PassthroughState"/>).</summary>
    public string? Problem { get; init; }
    /// <summary>The host this device was read on; an object from another host is refused by the commands that change it.</summary>
    public HostId? Host { get; init; }

    /// <summary>Sum of the sizes of the 64-bit prefetchable BARs: the space the guest's 64-bit MMIO window must hold.</summary>
    public ulong Bar64Size => Bars.Where(b => b.Is64BitPrefetchable).Aggregate(0UL, (sum, b) => sum + b.Size);

    /// <summary>Endpoint functions go to vfio-pci; bridges stay on pcieport (REFERENCE §4.5).</summary>
    public bool IsEndpoint => !IsBridge;

    /// <summary>The address, as FileInfo gives its path: PowerShell coerces a piped device to a string this way (binding
    /// -Address), and "$device" in a script names the device unambiguously.</summary>
    public override string ToString() => Address.ToString();

    /// <summary>"0000:01:00.0 VGA compatible controller: NVIDIA Corporation AD102 [GeForce RTX 4090]", as lspci prints it.</summary>
    public string Description => $"{Address} {ClassName}: {VendorName} {DeviceName}".TrimEnd();
}
