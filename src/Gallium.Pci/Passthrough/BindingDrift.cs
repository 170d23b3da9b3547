using Gallium.Pci.Host;

namespace Gallium.Pci.Passthrough;

/// <summary>A device that is meant to be on vfio-pci (a record persists it, or its driver_override names vfio-pci) but is
/// on another driver: the host driver won a race at boot, someone rebound it by hand, or a record was restored from a
/// backup. Enable-GalliumPciPassthrough repairs it.</summary>
public static class BindingDrift
{
    /// <summary>Drifted onto another driver (the inventory's Drifted state also covers a device on vfio-pci whose override
    /// was cleared: a VM can still use that one, so Add lets it through).</summary>
    public static bool IsDrifted(PciDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return device.PassthroughState == PassthroughState.Drifted && device.Driver != DriverBinder.VfioPci;
    }

    /// <summary>Refuses (Add-GalliumVmPciDevice) when a member of the device's IOMMU group has drifted.</summary>
    public static void ThrowIfDrifted(DeviceInventory inventory, PciAddress address)
    {
        ArgumentNullException.ThrowIfNull(inventory);
        if (inventory.Read(address) is not { IommuGroup: int id } device) return;  // missing or groupless: the planner says so
        var drifted = (inventory.ReadGroup(id, [device])?.Devices ?? [device]).Where(IsDrifted).ToArray();
        if (drifted.Length > 0) throw new PciDeviceDriftedException(address, id, drifted);
    }
}

/// <summary>A group member persisted for vfio-pci is on a host driver: never "assigned and fine".</summary>
public sealed class PciDeviceDriftedException : GalliumException
{
    public PciDeviceDriftedException(PciAddress address, int group, IReadOnlyList<PciDevice> drifted)
        : base("PciDeviceDrifted", ErrorKind.DeviceError,
            $"{address} is enabled for passthrough but has drifted: in its IOMMU group {group}, " +
            string.Join(", ", drifted.Select(d => $"{d.Address} is on {d.Driver ?? "no driver"}" +
                (d.PersistedBy != BindingPersistence.None ? $" although {d.PersistedBy} persists it for vfio-pci" : " although its driver_override is vfio-pci"))) +
            " (a host driver took it at boot, or it was rebound by hand). A VM given it would fail to start: the group is not viable.",
            address.ToString())
    {
        Address = address;
        Drifted = drifted;
        RecommendedAction = $"Enable-GalliumPciPassthrough -Address {address}   (moves the group back to vfio-pci; add -UpdateInitramfs if it warns that the initramfs is stale)";
    }

    public PciAddress Address { get; }
    public IReadOnlyList<PciDevice> Drifted { get; }
}
