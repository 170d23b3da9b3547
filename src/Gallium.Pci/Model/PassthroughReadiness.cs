namespace Gallium.Pci;

/// <summary>Whose IOMMU the firmware describes: VT-d (ACPI DMAR) or AMD-Vi (ACPI IVRS).</summary>
public enum CpuVendor
{
    Other,
    Intel,
    /// <summary>AMD, and Hygon (same IOMMU, IVRS, amd_iommu driver).</summary>
    Amd,
}

/// <summary>Why the IOMMU is not on, and so where it has to be fixed (REFERENCE §3.5).</summary>
public enum IommuProblem
{
    /// <summary>The IOMMU is on.</summary>
    None,
    /// <summary>The firmware publishes no DMAR/IVRS table: VT-d / AMD-Vi is switched off in the firmware setup.</summary>
    DisabledInFirmware,
    /// <summary>The firmware describes an IOMMU but the kernel command line turns it off (intel_iommu=off, amd_iommu=off, iommu=off).</summary>
    DisabledOnKernelCommandLine,
    /// <summary>The firmware describes an IOMMU, nothing turns it off, and the kernel still did not enable it.</summary>
    NotEnabledByKernel,
    /// <summary>The IOMMU is off and the host does not say why (no ACPI tables to read, an unknown CPU vendor).</summary>
    Unknown,
}

/// <summary>Whether passthrough works here, and whether it is as isolated as it looks.</summary>
public enum ReadinessStatus
{
    /// <summary>Something stands in the way (<see cref="PassthroughReadiness.Problems"/>).</summary>
    NotReady,
    /// <summary>Passthrough works, but isolation is weakened (<see cref="PassthroughReadiness.Risks"/>: unsafe interrupts allowed, the ACS override).</summary>
    ReadyButUnsafe,
    Ready,
}

/// <summary>Can this host pass PCI devices through to VMs, and if not, exactly what to change (Test-GalliumPciPassthrough).</summary>
public sealed record PassthroughReadiness
{
    /// <summary>True when nothing stands in the way: no <see cref="Problems"/> (there may still be <see cref="Risks"/>).</summary>
    public bool IsReady => Problems.Count == 0;
    public ReadinessStatus Status => !IsReady ? ReadinessStatus.NotReady : Risks.Count > 0 ? ReadinessStatus.ReadyButUnsafe : ReadinessStatus.Ready;
    /// <summary>Changing driver bindings needs root.</summary>
    public required bool IsRoot { get; init; }
    public required CpuVendor CpuVendor { get; init; }
    /// <summary>The CPU reports a hypervisor: the IOMMU must then come from the hypervisor (a virtual IOMMU).</summary>
    public bool IsVirtualMachine { get; init; }
    /// <summary>The firmware's ACPI table for the IOMMU is present: DMAR (Intel VT-d) or IVRS (AMD-Vi).</summary>
    public required bool FirmwareIommuTable { get; init; }
    /// <summary>The kernel runs an IOMMU: it has IOMMU groups or IOMMU units.</summary>
    public required bool IommuEnabled { get; init; }
    /// <summary>The kernel's IOMMU units (dmar0…, ivhd0…) from /sys/class/iommu.</summary>
    public IReadOnlyList<string> IommuUnits { get; init; } = [];
    public int IommuGroupCount { get; init; }
    public required IommuProblem IommuProblem { get; init; }
    /// <summary>Exactly what to do about <see cref="IommuProblem"/>; null when there is nothing to do.</summary>
    public string? Remedy { get; init; }
    /// <summary>The running kernel's command line (/proc/cmdline).</summary>
    public string KernelCommandLine { get; init; } = "";
    /// <summary>Interrupt remapping is active ("IR-" interrupt chips); null when the host does not say.</summary>
    public bool? InterruptRemapping { get; init; }
    /// <summary>vfio_iommu_type1.allow_unsafe_interrupts (the loaded module's Y/N, else the command line's); null when neither says.</summary>
    public bool? AllowUnsafeInterrupts { get; init; }
    /// <summary>The pcie_acs_override= parameter as on the kernel command line; null when absent.</summary>
    public string? AcsOverride { get; init; }
    /// <summary>The running kernel has vfio-pci (as a module or built in).</summary>
    public bool VfioPciAvailable { get; init; }
    /// <summary>vfio-pci is loaded now.</summary>
    public bool VfioPciLoaded { get; init; }
    /// <summary>/dev/vfio/vfio exists (the VFIO container device libvirt requires).</summary>
    public bool VfioDeviceNode { get; init; }
    /// <summary>Enable/Disable changes that were interrupted (process killed, power lost) and are not repaired yet; the next
    /// Enable or Disable run as root repairs them first (<see cref="UnfinishedChange.Remedy"/>).</summary>
    public IReadOnlyList<UnfinishedChange> UnfinishedChanges { get; init; } = [];
    /// <summary>Devices whose passthrough state has drifted (NotPersisted, Drifted, Interrupted), each with its
    /// <see cref="PciDevice.Problem"/> naming the command that repairs it.</summary>
    public IReadOnlyList<PciDevice> DriftedDevices { get; init; } = [];
    /// <summary>One sentence per thing that stands in the way.</summary>
    public IReadOnlyList<string> Problems { get; init; } = [];
    /// <summary>What weakens isolation although passthrough works, each with its remedy and what it means for security.</summary>
    public IReadOnlyList<PassthroughCaveat> Risks { get; init; } = [];

    public override string ToString() => Status switch
    {
        ReadinessStatus.Ready => "Ready for PCI passthrough",
        ReadinessStatus.ReadyButUnsafe => $"Ready but unsafe: {string.Join(" ", Risks.Select(r => r.Reason))}",
        _ => $"Not ready: {string.Join(" ", Problems)}",
    };
}
