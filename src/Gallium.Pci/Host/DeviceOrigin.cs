using System.Globalization;

namespace Gallium.Pci.Host;

/// <summary>Whether a device object handed to a command (piped, imported from CliXml, received over remoting) describes the
/// device this host has at its address. An address alone names a slot; the object names a device on a host.</summary>
public static class DeviceOrigin
{
    /// <summary>Throws <see cref="PciDeviceNotOnThisHostException"/> when <paramref name="given"/> was read on another host
    /// (machine ids differ) or this host has another device, or none, at that address (vendor/device ids differ).</summary>
    public static void Check(PciDevice given, DeviceInventory inventory)
    {
        ArgumentNullException.ThrowIfNull(given);
        ArgumentNullException.ThrowIfNull(inventory);
        var here = inventory.Host;
        if (here.IsOtherThan(given.Host))
            throw new PciDeviceNotOnThisHostException(given, here, $"it was read on host '{given.Host!.Name}' (machine-id {given.Host.MachineId}), and this is '{here.Name}' (machine-id {here.MachineId})");
        var local = inventory.Read(given.Address);
        if (local is null)
            throw new PciDeviceNotOnThisHostException(given, here, "this host has no device at that address");
        if (local.VendorId != given.VendorId || local.DeviceId != given.DeviceId)
            throw new PciDeviceNotOnThisHostException(given, here,
                $"this host has {Ids(local)} {local.VendorName} {local.DeviceName} there, not {Ids(given)}".TrimEnd());
    }

    /// <summary>Every member of a group object must be on this host as described.</summary>
    public static void Check(IommuGroup given, DeviceInventory inventory)
    {
        ArgumentNullException.ThrowIfNull(given);
        foreach (var device in given.Devices) Check(device, inventory);
    }

    internal static string Ids(PciDevice d) => string.Create(CultureInfo.InvariantCulture, $"[{d.VendorId:x4}:{d.DeviceId:x4}]");
}

/// <summary>A device or group object from another host (or describing another device than this host has at its address) was
/// given to a command that would change this host: acting on it would change whatever this host has in that slot.</summary>
public sealed class PciDeviceNotOnThisHostException : GalliumException
{
    public PciDeviceNotOnThisHostException(PciDevice given, HostId here, string why)
        : base("PciDeviceNotOnThisHost", ErrorKind.InvalidArgument,
            $"The device object {given.Address} {DeviceOrigin.Ids(given)} {given.VendorName} {given.DeviceName}".TrimEnd()
            + $" is not this host's device: {why}. Nothing was changed.", given.Address.ToString())
    {
        Address = given.Address;
        SourceHost = given.Host;
        RecommendedAction = given.Host is { } source && here.IsOtherThan(source)
            ? $"Run the command on '{source.Name}' (Invoke-Command -HostName {source.Name} {{ ... }}), or pass -Address {given.Address} to act on this host's device at that address."
            : $"Read the device on this host (Get-GalliumPciDevice -Address {given.Address}), or pass -Address {given.Address} to act on whatever this host has there.";
    }

    public PciAddress Address { get; }
    /// <summary>Where the object was read, when it says.</summary>
    public HostId? SourceHost { get; }
}
