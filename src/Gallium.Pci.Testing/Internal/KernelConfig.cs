namespace Gallium.Pci.Testing.Internal;

/// <summary>Host-wide facts the builder fixes before the tree is written.</summary>
internal sealed class KernelConfig
{
    public bool Amd { get; set; }
    /// <summary>The firmware publishes the ACPI DMAR (Intel) / IVRS (AMD) table (REFERENCE §3.5: else "IOMMU disabled in BIOS").</summary>
    public bool FirmwareIommu { get; set; } = true;
    /// <summary>The kernel enabled the IOMMU (not intel_iommu=off / amd_iommu=off).</summary>
    public bool KernelIommu { get; set; } = true;
    public int PhysicalAddressBits { get; set; } = 46;
    public int VirtualAddressBits { get; set; } = 57;
    public string Release { get; set; } = "6.1.0-27-amd64";
    public string? CommandLine { get; set; }
    public string? ExtraCommandLine { get; set; }
    /// <summary>Default domain type of the groups (REFERENCE §3.5: DMA-FQ; identity with iommu=pt).</summary>
    public string DefaultDomainType { get; set; } = "DMA-FQ";
    public bool VfioLoaded { get; set; } = true;
    public Dictionary<string, string> LoadFailures { get; } = new(StringComparer.Ordinal);
    public HashSet<string> UnavailableModules { get; } = new(StringComparer.Ordinal);
    public List<PciAddress[]> SharedGroups { get; } = [];
    /// <summary>Interrupt remapping active when the IOMMU is on ("IR-" chips in /proc/interrupts); false = the firmware left it off.</summary>
    public bool InterruptRemapping { get; set; } = true;
    /// <summary>vfio_iommu_type1's allow_unsafe_interrupts, reported as Y/N once the module is loaded (REFERENCE §8.4).</summary>
    public bool AllowUnsafeInterrupts { get; set; }
    /// <summary>Each NUMA node's CPU list ("0-7"); one node with CPUs 0-1 by default.</summary>
    public List<string> NumaNodes { get; } = [];

    public IReadOnlyList<string> EffectiveNumaNodes => NumaNodes.Count > 0 ? NumaNodes : ["0-1"];

    public bool IommuOn => FirmwareIommu && KernelIommu;
    public string IommuUnit => Amd ? "ivhd0" : "dmar0";
    public string FirmwareTable => Amd ? "IVRS" : "DMAR";

    public string EffectiveCommandLine()
    {
        if (CommandLine is not null) return CommandLine;
        string iommu = KernelIommu ? (Amd ? "" : " intel_iommu=on") : (Amd ? " amd_iommu=off" : " intel_iommu=off");
        string extra = string.IsNullOrWhiteSpace(ExtraCommandLine) ? "" : " " + ExtraCommandLine.Trim();
        return $"BOOT_IMAGE=/boot/vmlinuz-{Release} root=UUID=5f3c2a8e-9b1d-4c6e-8f2a-1d3b5c7e9f01 ro quiet{iommu}{extra}";
    }

    public static string Normalize(string module) => module.Trim().Replace('-', '_');
}
