using System.Globalization;

namespace Gallium.Pci.Testing.Internal;

/// <summary>What a PCI function is, as far as grouping, header type and port drivers care.</summary>
internal enum DeviceKind
{
    Endpoint,
    /// <summary>Root-complex function that is not a port (host bridge, LPC, IOMMU).</summary>
    RootComplex,
    RootPort,
    SwitchUpstream,
    SwitchDownstream,
    /// <summary>PCIe-to-PCI bridge: never ACS-isolated, so its subtree shares its group (REFERENCE §4.5 / kernel pci_acs_enabled).</summary>
    PciBridge,
}

internal enum BarType { Mem32, Mem64, Io }

internal sealed class SimBar
{
    public int Index { get; init; }
    public ulong Size { get; init; }
    public BarType Type { get; init; }
    public bool Prefetchable { get; init; }
    public bool Assigned { get; init; } = true;
    public ulong Start { get; set; }

    // REFERENCE §3.4 flag bits: IO 0x100, MEM 0x200, PREFETCH 0x2000, SIZEALIGN 0x40000, MEM_64 0x100000, UNSET 0x20000000.
    public ulong Flags
    {
        get
        {
            ulong f = Type switch
            {
                BarType.Io => 0x40101UL,
                BarType.Mem32 => Prefetchable ? 0x42208UL : 0x40200UL,
                _ => Prefetchable ? 0x14220cUL : 0x140204UL,
            };
            return Assigned ? f : f | 0x20000000UL;
        }
    }
}

internal sealed class SimSriov
{
    public int TotalVfs { get; init; }
    public ushort VfDeviceId { get; init; }
    public string? VfDriver { get; init; }
    public int Offset { get; init; }
    public int Stride { get; init; } = 1;
    public int InitialNumVfs { get; init; }
}

/// <summary>Something a host driver creates below its device while bound (a netdev, a disk, a framebuffer console).</summary>
internal abstract record OwnedChild;
internal sealed record NetChild(string Interface, bool DefaultRoute) : OwnedChild;
internal sealed record DiskChild(string Controller, bool RootFilesystem) : OwnedChild
{
    public int FirstMinor { get; set; }
}
internal sealed record FramebufferChild(string Name) : OwnedChild;

internal sealed class SimDevice
{
    public required PciAddress Address { get; init; }
    public string Bdf => Address.ToString();
    public required DeviceKind Kind { get; init; }
    public ushort Vendor { get; init; }
    public ushort Device { get; init; }
    public ushort SubVendor { get; set; }
    public ushort SubDevice { get; set; }
    public uint ClassCode { get; init; }
    public byte Revision { get; set; }
    /// <summary>For bridges: the bus number of the bus below it.</summary>
    public int SecondaryBus { get; init; } = -1;
    public int SubordinateBus { get; set; } = -1;
    public SimDevice? Parent { get; set; }
    public List<SimBar> Bars { get; } = [];
    public ulong RomSize { get; set; }
    public ulong RomStart { get; set; }
    /// <summary>The device's host driver: bound at boot unless <see cref="BootOnVfio"/>, owner of <see cref="Children"/>,
    /// and in whose id table the device is.</summary>
    public string? HostDriver { get; set; }
    /// <summary>Bound to vfio-pci at boot (override vfio-pci), as after a previous Enable.</summary>
    public bool BootOnVfio { get; set; }
    public string? InitialOverride { get; set; }
    public bool? AcsSetting { get; set; }
    public bool? BootVgaSetting { get; set; }
    public int NumaNode { get; set; } = -1;
    public string? ResetMethods { get; set; }
    /// <summary>A kernel older than 5.15: the reset attribute without reset_method (the methods are not shown).</summary>
    public bool ResetWithoutMethods { get; set; }
    /// <summary>A firmware framebuffer's /proc/iomem name (efifb, vesafb, BOOTFB, ...) holding part of <see cref="FramebufferBar"/>.</summary>
    public string? FirmwareFramebuffer { get; set; }
    public int FramebufferBar { get; set; } = -1;
    public SimSriov? Sriov { get; set; }
    /// <summary>For a PF: start of each VF BAR region (resource lines 7-12), by VF BAR index.</summary>
    public Dictionary<int, ulong> VfBarStarts { get; } = [];
    public SimDevice? PhysFn { get; set; }
    public int VfIndex { get; set; } = -1;
    public bool NoIommuGroup { get; set; }
    public List<OwnedChild> Children { get; } = [];
    public bool MultiFunction { get; set; }
    /// <summary>Directory relative to the sysfs root, e.g. <c>devices/pci0000:00/0000:00:01.0/0000:01:00.0</c>.</summary>
    public string RelDir { get; set; } = "";

    public bool IsBridge => Kind is DeviceKind.RootPort or DeviceKind.SwitchUpstream or DeviceKind.SwitchDownstream or DeviceKind.PciBridge;
    public bool IsPcieBelowRoot => Parent is not null;
    public bool IsVirtualFunction => PhysFn is not null;
    public int HeaderType => IsBridge ? 1 : 0;

    /// <summary>Whether this function isolates what is below it / itself (kernel pci_acs_enabled, simplified; REFERENCE §4.5).</summary>
    public bool AcsIsolated => Kind switch
    {
        DeviceKind.PciBridge => false,
        DeviceKind.RootPort or DeviceKind.SwitchDownstream => AcsSetting ?? true,
        _ => IsVirtualFunction || !MultiFunction || (AcsSetting ?? false),
    };

    public bool IsVga => (ClassCode >> 8) == 0x0300;
    public string ModAlias => string.Create(CultureInfo.InvariantCulture,
        $"pci:v{Vendor:X8}d{Device:X8}sv{SubVendor:X8}sd{SubDevice:X8}bc{ClassCode >> 16:X2}sc{(ClassCode >> 8) & 0xff:X2}i{ClassCode & 0xff:X2}");
}

/// <summary>One id-table entry (kernel struct pci_device_id); <see cref="Any"/> is PCI_ANY_ID.</summary>
internal readonly record struct IdMatch(uint Vendor, uint Device, uint SubVendor, uint SubDevice, uint Class, uint ClassMask)
{
    public const uint Any = 0xffffffff;

    public static IdMatch ForDevice(ushort vendor, ushort device) => new(vendor, device, Any, Any, 0, 0);
    public static IdMatch ForClass(uint classCode, uint mask) => new(Any, Any, Any, Any, classCode, mask);

    public bool Matches(SimDevice d) =>
        (Vendor == Any || Vendor == d.Vendor) && (Device == Any || Device == d.Device) &&
        (SubVendor == Any || SubVendor == d.SubVendor) && (SubDevice == Any || SubDevice == d.SubDevice) &&
        ((Class ^ d.ClassCode) & ClassMask) == 0;

    /// <summary>Parses a builder id: <c>VVVV:DDDD</c> or <c>VVVV:*</c>, optionally <c>@CCCCCC[/MASK]</c> for a class, or
    /// <c>class:CCCCCC[/MASK]</c> alone (mask default ffffff).</summary>
    public static IdMatch Parse(string text)
    {
        static uint Hex(string s) => uint.Parse(s, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        static (uint, uint) Class(string s)
        {
            string[] cm = s.Split('/');
            return (Hex(cm[0]), cm.Length > 1 ? Hex(cm[1]) : 0xffffff);
        }
        if (text.StartsWith("class:", StringComparison.OrdinalIgnoreCase))
        {
            var (cls, mask) = Class(text[6..]);
            return ForClass(cls, mask);
        }
        string[] at = text.Split('@');
        string[] p = at[0].Split(':');
        if (p.Length != 2 || at.Length > 2) throw new ArgumentException($"An id is 'VVVV:DDDD[@CCCCCC[/MASK]]', 'VVVV:*' or 'class:CCCCCC': '{text}'.", nameof(text));
        var (c, m) = at.Length == 2 ? Class(at[1]) : (0u, 0u);
        return new IdMatch(Hex(p[0]), p[1] == "*" ? Any : Hex(p[1]), Any, Any, c, m);
    }
}

internal sealed class SimDriver
{
    public required string Name { get; init; }
    /// <summary>The module that provides it (underscore spelling); null for built-in drivers.</summary>
    public string? Module { get; init; }
    public List<IdMatch> Ids { get; } = [];
    public List<IdMatch> DynIds { get; } = [];
    /// <summary>The id table is PCI_DRIVER_OVERRIDE_DEVICE_VFIO(ANY, ANY) only (REFERENCE §3.3).</summary>
    public bool OverrideOnly { get; init; }
    /// <summary>Has an sriov_configure callback (REFERENCE §3.2 sriov_numvfs: ENOENT without).</summary>
    public bool SriovConfigure { get; init; }
    /// <summary>.driver_managed_dma: does not claim the group's DMA ownership (REFERENCE §4.5).</summary>
    public bool ManagedDma { get; init; }
    public bool Loaded { get; set; }

    public SimDriver Clone() => CopyTo(new SimDriver
    {
        Name = Name, Module = Module, OverrideOnly = OverrideOnly, SriovConfigure = SriovConfigure, ManagedDma = ManagedDma, Loaded = Loaded,
    });

    private SimDriver CopyTo(SimDriver d)
    {
        d.Ids.AddRange(Ids);
        d.DynIds.AddRange(DynIds);
        return d;
    }
}

/// <summary>Drivers a Debian 6.1 host would have for the devices the ready-made hosts use.</summary>
internal static class DriverCatalog
{
    public static List<SimDriver> Create()
    {
        var list = new List<SimDriver>();
        SimDriver Add(string name, string? module, bool sriov = false, bool managed = false, bool overrideOnly = false, params string[] ids)
        {
            var d = new SimDriver { Name = name, Module = module, SriovConfigure = sriov, ManagedDma = managed, OverrideOnly = overrideOnly };
            foreach (var id in ids) d.Ids.Add(IdMatch.Parse(id));
            list.Add(d);
            return d;
        }
        Add("pcieport", null, managed: true, ids: ["class:060400", "class:060401"]);
        Add("nvidia", "nvidia", ids: ["10de:*@030000/ff0000"]);
        Add("snd_hda_intel", "snd_hda_intel", ids: ["8086:a348", "10de:*@040300"]);
        Add("i40e", "i40e", sriov: true, ids: ["8086:1572", "8086:1583", "8086:1584"]);
        Add("iavf", "iavf", ids: ["8086:154c", "8086:1889"]);
        Add("e1000e", "e1000e", ids: ["8086:10d3", "8086:15bc", "8086:15b8"]);
        Add("nvme", "nvme", ids: ["class:010802"]);
        Add("i915", "i915", ids: ["8086:3e92", "8086:3e91"]);
        Add("ast", "ast", ids: ["1a03:2000"]);
        Add("xhci_hcd", "xhci_pci", ids: ["class:0c0330"]);
        Add("i801_smbus", "i2c_i801", ids: ["8086:a323"]);
        Add("piix4_smbus", "i2c_piix4", ids: ["1022:790b"]);
        Add("snd_emu10k1", "snd_emu10k1", ids: ["1102:0002"]);
        Add("8139too", "8139too", ids: ["10ec:8139"]);
        Add("mlx5_core", "mlx5_core", sriov: true, ids: ["15b3:101b", "15b3:101c"]);
        Add("rtsx_pci", "rtsx_pci", ids: ["10ec:522a"]);
        Add("pci-stub", "pci_stub", managed: true);
        Add("vfio-pci", "vfio_pci", managed: true, overrideOnly: true);
        return list;
    }

    /// <summary>Modules that are not PCI drivers but that a passthrough host loads (REFERENCE §1 initramfs order).</summary>
    public static readonly string[] OtherModules = ["irqbypass", "vfio", "vfio_iommu_type1", "vfio_pci_core", "kvm", "kvm_intel", "kvm_amd"];

    /// <summary>What modprobe loads before a module (its depends in modules.dep).</summary>
    public static IReadOnlyList<string> DependenciesOf(string module) => module switch
    {
        "vfio_pci" => ["irqbypass", "vfio", "vfio_iommu_type1", "vfio_pci_core"],
        "vfio_pci_core" => ["irqbypass", "vfio"],
        "vfio_iommu_type1" => ["vfio"],
        "kvm_intel" or "kvm_amd" => ["irqbypass", "kvm"],
        _ => [],
    };
}
