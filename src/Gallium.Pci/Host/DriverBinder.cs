namespace Gallium.Pci.Host;

/// <summary>One method per kernel step of moving a PCI function between drivers (modelled on libvirt's virpci.c,
/// REFERENCE §4.1, §4.4). Every write is one write(2) through <see cref="ISysfs"/>, narrated before it is made, and
/// throws <see cref="KernelWriteException"/> with the kernel's errno when it fails.</summary>
public sealed class DriverBinder
{
    /// <summary>The stub driver passthrough binds to.</summary>
    public const string VfioPci = "vfio-pci";

    private readonly ISysfs _sysfs;
    private readonly TimeSpan _timeout;

    public DriverBinder(HostContext host)
    {
        _sysfs = host.Sysfs;
        _timeout = host.WriteTimeout;
    }

    public static string DevicePath(PciAddress address) => $"bus/pci/devices/{address}";
    public static string DriverPath(string driver) => $"bus/pci/drivers/{driver}";
    public const string DriversProbePath = "bus/pci/drivers_probe";

    public bool DeviceExists(PciAddress address) => _sysfs.Exists(DevicePath(address));

    /// <summary>Whether a driver is registered with the PCI bus (its directory exists; REFERENCE §4.4 step 1).</summary>
    public bool DriverLoaded(string driver) => _sysfs.Exists(DriverPath(driver));

    /// <summary>The bound driver's name (basename of the <c>driver</c> link), or null when unbound (REFERENCE §3.2).</summary>
    public string? CurrentDriver(PciAddress address) => SysfsFormat.LinkName(_sysfs.ReadLink($"{DevicePath(address)}/driver"));

    /// <summary>The per-device override, or null when unset: the kernel prints "(null)"; a future kernel may print "" (REFERENCE §3.3).</summary>
    public string? DriverOverride(PciAddress address) =>
        SysfsFormat.ParseDriverOverride(_sysfs.ReadText($"{DevicePath(address)}/driver_override"));

    /// <summary>Whether the device has the attribute at all (driverctl refuses devices without it, REFERENCE §4.2).</summary>
    public bool SupportsOverride(PciAddress address) => _sysfs.Exists($"{DevicePath(address)}/driver_override");

    /// <summary>Sets the override; it neither unbinds nor loads anything (REFERENCE §3.3).</summary>
    public void SetOverride(PciAddress address, string driver, Action<string> narrate) =>
        Write($"{DevicePath(address)}/driver_override", driver, narrate);

    /// <summary>Clears the override with "\n": a zero-length write would be a no-op (REFERENCE §3.3, Appendix A.1).</summary>
    public void ClearOverride(PciAddress address, Action<string> narrate) =>
        Write($"{DevicePath(address)}/driver_override", "\n", narrate);

    /// <summary>Puts the override back to what it was: a name, or cleared when it was unset.</summary>
    public void RestoreOverride(PciAddress address, string? driver, Action<string> narrate)
    {
        if (driver is null) ClearOverride(address, narrate);
        else SetOverride(address, driver, narrate);
    }

    /// <summary>Detaches the device from <paramref name="driver"/>; ENODEV if it is not bound to it. Can block while a VM
    /// holds a vfio-pci device, hence the timeout (REFERENCE §3.6, §4.6).</summary>
    public void Unbind(PciAddress address, string driver, Action<string> narrate) =>
        Write($"{DriverPath(driver)}/unbind", address.ToString(), narrate);

    /// <summary>Binds to one named driver; the driver must match (id table or override), else ENODEV (REFERENCE §3.6).</summary>
    public void Bind(PciAddress address, string driver, Action<string> narrate) =>
        Write($"{DriverPath(driver)}/bind", address.ToString(), narrate);

    /// <summary>Asks the kernel to attach the driver it picks; a failing probe() still reports success, so the caller
    /// re-reads the driver link (REFERENCE §3.6, Appendix A.2).</summary>
    public void Probe(PciAddress address, Action<string> narrate) =>
        Write(DriversProbePath, address.ToString(), narrate);

    /// <summary>Re-attaches the device to exactly <paramref name="driver"/>, whatever its id table says, and leaves the
    /// override as <paramref name="overrideAfter"/>: a matching override always matches (REFERENCE §3.3), so this can
    /// return a device to a driver it was bound to through new_id or ids= too.</summary>
    public void RebindTo(PciAddress address, string driver, string? overrideAfter, Action<string> narrate)
    {
        SetOverride(address, driver, narrate);
        Bind(address, driver, narrate);
        RestoreOverride(address, overrideAfter, narrate);
    }

    private void Write(string path, string value, Action<string> narrate)
    {
        narrate($"write {Show(value)} > {_sysfs.Root.TrimEnd('/')}/{path}");
        _sysfs.Write(path, value, _timeout);
    }

    private static string Show(string value) => value == "\n" ? "'\\n'" : value;
}
