namespace Gallium.Pci;

/// <summary>What makes a passthrough unsafe or unreliable before it bites (DESIGN.md "Caveats").</summary>
public enum PassthroughCaveatKind
{
    /// <summary>The kernel has no way to reset the function (reset_method empty): state leaks from one VM run to the next, and
    /// many devices will not start a second time until the host reboots.</summary>
    NoReset,
    /// <summary>The only reset is a secondary bus reset, which resets every other function on the same bus too.</summary>
    BusResetOnly,
    /// <summary>A firmware framebuffer (efifb, vesafb, simple-framebuffer / BOOTFB) holds one of the device's BARs.</summary>
    FirmwareFramebuffer,
    /// <summary>The firmware's boot display: its ROM was run at boot and the host console may live on it.</summary>
    BootVga,
    /// <summary>A chipset function (host bridge, ISA/LPC bridge, SMBus, other platform functions) the host itself runs on.</summary>
    ChipsetFunction,
    /// <summary>pcie_acs_override= is on the kernel command line: IOMMU groups no longer mean hardware isolation.</summary>
    AcsOverride,
    /// <summary>Interrupt remapping is off: VFIO refuses devices unless allow_unsafe_interrupts is set, and then a guest can
    /// forge interrupts to the host.</summary>
    UnsafeInterrupts,
    /// <summary>The device's NUMA node is not among the nodes the VM's vCPUs and memory are pinned to.</summary>
    NumaMismatch,
    /// <summary>The VM is not pinned to any NUMA node on a host with several (information: placement is left to the scheduler).</summary>
    NumaUnpinned,
}

/// <summary>How loud a caveat is: Enable and Add write warnings for <see cref="Warning"/>, information records for <see cref="Information"/>.</summary>
public enum CaveatSeverity
{
    Information,
    Warning,
}

/// <summary>One caveat of a device or IOMMU group: the kind, a one-line reason, what to do about it, and the facts behind it
/// (in the derived record). Immutable; shown by Get-GalliumIommuGroup and written as a warning by Enable/Add.</summary>
public abstract record PassthroughCaveat
{
    public abstract PassthroughCaveatKind Kind { get; }
    public virtual CaveatSeverity Severity => CaveatSeverity.Warning;
    /// <summary>The function the caveat is about; null for a host-wide caveat (the ACS override, unsafe interrupts).</summary>
    public PciAddress? Address { get; init; }
    /// <summary>One line: what is wrong and what it does to the VM or the host.</summary>
    public required string Reason { get; init; }
    /// <summary>What to do about it.</summary>
    public required string Remedy { get; init; }
    /// <summary>What it means for isolation, in one sentence; null when it is only about reliability.</summary>
    public string? Security { get; init; }

    /// <summary>"0000:01:00.0: reason" (or the reason alone for a host-wide caveat): the text of the warning.</summary>
    public sealed override string ToString() => Address is { } a ? $"{a}: {Reason}" : Reason;
}

public sealed record NoResetCaveat : PassthroughCaveat
{
    public override PassthroughCaveatKind Kind => PassthroughCaveatKind.NoReset;
}

public sealed record BusResetOnlyCaveat : PassthroughCaveat
{
    public override PassthroughCaveatKind Kind => PassthroughCaveatKind.BusResetOnly;
    /// <summary>The other functions on the same bus: a bus reset resets them too.</summary>
    public IReadOnlyList<PciAddress> SharedWith { get; init; } = [];
    /// <summary>Those of <see cref="SharedWith"/> outside the device's IOMMU group: VFIO resets the bus only when one VM holds them all.</summary>
    public IReadOnlyList<PciAddress> OutsideGroup { get; init; } = [];
}

public sealed record FirmwareFramebufferCaveat : PassthroughCaveat
{
    public override PassthroughCaveatKind Kind => PassthroughCaveatKind.FirmwareFramebuffer;
    /// <summary>The /proc/iomem name of the holder: efifb, vesafb, simplefb, simpledrm, simple-framebuffer or BOOTFB.</summary>
    public required string Holder { get; init; }
    public required int BarIndex { get; init; }
    /// <summary>First and last byte (inclusive) the framebuffer holds, as /proc/iomem prints them.</summary>
    public required ulong Start { get; init; }
    public required ulong End { get; init; }
    /// <summary>The kernel parameters that stop the firmware framebuffer (e.g. video=efifb:off, initcall_blacklist=sysfb_init).</summary>
    public IReadOnlyList<string> KernelParameters { get; init; } = [];
}

public sealed record BootVgaCaveat : PassthroughCaveat
{
    public override PassthroughCaveatKind Kind => PassthroughCaveatKind.BootVga;
}

public sealed record ChipsetFunctionCaveat : PassthroughCaveat
{
    public override PassthroughCaveatKind Kind => PassthroughCaveatKind.ChipsetFunction;
    /// <summary>The class code's base and subclass, e.g. 0x0601 (ISA bridge), 0x0c05 (SMBus).</summary>
    public required ushort ClassCode { get; init; }
}

public sealed record AcsOverrideCaveat : PassthroughCaveat
{
    public override PassthroughCaveatKind Kind => PassthroughCaveatKind.AcsOverride;
    /// <summary>The parameter exactly as on the command line, e.g. pcie_acs_override=downstream,multifunction.</summary>
    public required string Parameter { get; init; }
}

public sealed record UnsafeInterruptsCaveat : PassthroughCaveat
{
    public override PassthroughCaveatKind Kind => PassthroughCaveatKind.UnsafeInterrupts;
    /// <summary>vfio_iommu_type1.allow_unsafe_interrupts: true (Y), false (N), null when the module is not loaded and the
    /// command line does not set it.</summary>
    public bool? AllowUnsafeInterrupts { get; init; }
}

public sealed record NumaMismatchCaveat : PassthroughCaveat
{
    public override PassthroughCaveatKind Kind => PassthroughCaveatKind.NumaMismatch;
    public required string VmName { get; init; }
    public required int DeviceNode { get; init; }
    /// <summary>The nodes the VM's vCPU pinning and numatune use.</summary>
    public required IReadOnlyList<int> VmNodes { get; init; }
}

public sealed record NumaUnpinnedCaveat : PassthroughCaveat
{
    public override PassthroughCaveatKind Kind => PassthroughCaveatKind.NumaUnpinned;
    public override CaveatSeverity Severity => CaveatSeverity.Information;
    public required string VmName { get; init; }
    public required int DeviceNode { get; init; }
    /// <summary>The host's NUMA nodes (at least two).</summary>
    public required IReadOnlyList<int> HostNodes { get; init; }
}
