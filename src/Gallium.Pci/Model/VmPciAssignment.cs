namespace Gallium.Pci;

/// <summary>A VM's state, mirroring libvirt's <c>virDomainState</c> values (REFERENCE §5.4).</summary>
public enum VmState
{
    NoState = 0,
    Running = 1,
    Blocked = 2,
    Paused = 3,
    /// <summary>Being shut down (VIR_DOMAIN_SHUTDOWN).</summary>
    ShuttingDown = 4,
    ShutOff = 5,
    Crashed = 6,
    PMSuspended = 7,
}

/// <summary>One host PCI function referenced by one VM's definition: a <c>&lt;hostdev type='pci'&gt;</c> (or an
/// <c>&lt;interface type='hostdev'&gt;</c>) in its persistent XML, or in its live XML when the VM is transient.</summary>
public sealed record VmPciAssignment
{
    public required string VmName { get; init; }
    public required Guid VmUuid { get; init; }
    public required VmState VmState { get; init; }
    /// <summary>False for a transient VM (it has no persistent definition; the assignment ends when it stops).</summary>
    public required bool IsPersistent { get; init; }
    /// <summary>The host function (the hostdev's <c>&lt;source&gt;&lt;address&gt;</c>).</summary>
    public required PciAddress Address { get; init; }
    /// <summary>Where the guest sees it, <c>0000:05:00.0</c>; null when libvirt has not assigned a guest address.</summary>
    public string? GuestAddress { get; init; }
    /// <summary>managed='yes': libvirt moves the device to vfio-pci at VM start itself (REFERENCE §5.1).</summary>
    public bool Managed { get; init; }
    /// <summary>True for an <c>&lt;interface type='hostdev'&gt;</c> (an SR-IOV VF given as a NIC) rather than a <c>&lt;hostdev&gt;</c>.</summary>
    public bool IsNetworkInterface { get; init; }

    /// <summary>Bytes of 64-bit MMIO window the VM's firmware gives it now (OVMF's aperture, REFERENCE §6.1); null when
    /// none of its devices has a 64-bit prefetchable BAR, or the firmware is not OVMF.</summary>
    public ulong? MmioWindowSize { get; init; }
    /// <summary>Bytes of 64-bit MMIO window all the VM's passthrough devices need (REFERENCE §6.4).</summary>
    public ulong? MmioNeededSize { get; init; }
    /// <summary>True when the window is too small for the devices: they will attach but fail to initialise in the guest
    /// (Repair-GalliumVmPciDevice fixes it).</summary>
    public bool MmioFixNeeded { get; init; }
    /// <summary>The host whose libvirt holds the definition; null when it was read from another host's libvirt (-Uri).</summary>
    public HostId? Host { get; init; }

    /// <summary>The host function's NUMA node; null when the kernel does not know it.</summary>
    public int? DeviceNumaNode { get; init; }
    /// <summary>The host NUMA nodes the VM's vCPU pinning and numatune use; empty when the VM is not pinned.</summary>
    public IReadOnlyList<int> VmNumaNodes { get; init; } = [];
    /// <summary>The device's node is not among the VM's pinned nodes (Add-GalliumVmPciDevice warns about it).</summary>
    public bool NumaMismatch => DeviceNumaNode is int n && VmNumaNodes.Count > 0 && !VmNumaNodes.Contains(n);

    public override string ToString() => $"{Address} -> {VmName}{(GuestAddress is null ? "" : " @ " + GuestAddress)}";
}
