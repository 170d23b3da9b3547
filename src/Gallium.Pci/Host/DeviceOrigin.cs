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
            throw PciDeviceNotOnThisHostException.ForDevice(given, here, $"it was read on host '{given.Host!.Name}' (machine-id {given.Host.MachineId}), and this is '{here.Name}' (machine-id {here.MachineId})");
        var local = inventory.Read(given.Address);
        if (local is null)
            throw PciDeviceNotOnThisHostException.ForDevice(given, here, "this host has no device at that address");
        if (local.VendorId != given.VendorId || local.DeviceId != given.DeviceId)
            throw PciDeviceNotOnThisHostException.ForDevice(given, here,
                $"this host has {Ids(local)} {local.VendorName} {local.DeviceName} there, not {Ids(given)}".TrimEnd());
    }

    /// <summary>An address that came with the host it was read on (a piped object's Host): refused when that is another host.</summary>
    public static void Check(PciAddress address, HostId? source, DeviceInventory inventory)
    {
        ArgumentNullException.ThrowIfNull(inventory);
        var here = inventory.Host;
        if (here.IsOtherThan(source))
            throw new PciDeviceNotOnThisHostException(address, source, here,
                $"The device {address} is not this host's device: it was read on host '{source!.Name}' (machine-id {source.MachineId}), and this is '{here.Name}' (machine-id {here.MachineId})");
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
    /// <param name="message">What was given and why it is not this host's, without the closing "Nothing was changed".</param>
    public PciDeviceNotOnThisHostException(PciAddress address, HostId? source, HostId here, string message)
        : base("PciDeviceNotOnThisHost", ErrorKind.InvalidArgument, message + ". Nothing was changed.", address.ToString())
    {
        ArgumentNullException.ThrowIfNull(here);
        Address = address;
        SourceHost = source;
        RecommendedAction = source is not null && here.IsOtherThan(source)
            ? $"Run the command on '{source.Name}' (Invoke-Command -HostName {source.Name} {{ ... }}), or pass -Address {address} alone to act on this host's device at that address."
            : $"Read the device on this host (Get-GalliumPciDevice -Address {address}), or pass -Address {address} to act on whatever this host has there.";
    }

    internal static PciDeviceNotOnThisHostException ForDevice(PciDevice given, HostId here, string why) => new(given.Address, given.Host, here,
        $"The device object {given.Address} {DeviceOrigin.Ids(given)} {given.VendorName} {given.DeviceName}".TrimEnd() + $" is not this host's device: {why}");

    public PciAddress Address { get; }
    /// <summary>Where the object was read, when it says.</summary>
    public HostId? SourceHost { get; }
}
