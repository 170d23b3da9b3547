namespace Gallium.Pci.Assignments;

/// <summary>Add and Remove need a shut-off VM: "paused" and "running" hold the device open (product guide: the VM must be stopped).</summary>
public sealed class VmNotStoppedException(string vmName, VmState state)
    : GalliumException("VmNotStopped", ErrorKind.InvalidOperation,
        $"VM '{vmName}' is {state.ToString().ToLowerInvariant()}; passthrough devices are added and removed only while it is shut off.", vmName)
{
    public VmState State { get; } = state;
}

/// <summary>A transient domain has no persistent definition to hold a hostdev.</summary>
public sealed class VmNotPersistentException(string vmName)
    : GalliumException("VmNotPersistent", ErrorKind.InvalidOperation,
        $"VM '{vmName}' is transient (not defined): it has no persistent definition to add a device to. Define it first (virsh define).", vmName);

/// <summary>The device (or a sibling endpoint of its IOMMU group) is not Enabled: not on vfio-pci, or on it without the
/// override and records that keep it there across a reboot, or in the middle of an interrupted change.</summary>
public sealed class PciDeviceNotEnabledException : GalliumException
{
    public PciDeviceNotEnabledException(PciAddress address, int group, IReadOnlyList<PciDevice> notEnabled)
        : base("PciDeviceNotEnabled", ErrorKind.NotEnabled,
            $"{address} is not enabled for passthrough: in its IOMMU group {group}, " +
            string.Join("; ", notEnabled.Select(Why)) + ".",
            address.ToString())
    {
        Address = address;
        RecommendedAction = $"Enable-GalliumPciPassthrough -Address {address}";
    }

    public PciAddress Address { get; }

    private static string Why(PciDevice d) => d.Driver != "vfio-pci"
        ? $"{d.Address} is on {d.Driver ?? "no driver"}, not vfio-pci"
        : $"{d.Address} is {d.PassthroughState}" + (d.Problem is { } p ? $" ({p})" : "");
}

/// <summary>A group belongs to one VM at a time (libvirt refuses to start two VMs sharing a VFIO group, REFERENCE §4.1).</summary>
public sealed class PciDeviceAssignedException : GalliumException
{
    public PciDeviceAssignedException(PciAddress address, int group, IReadOnlyList<string> vms)
        : base("PciDeviceAssigned", ErrorKind.ResourceBusy,
            $"{address} (IOMMU group {group}) is already assigned to VM {string.Join(", ", vms.Select(v => $"'{v}'"))}; a group can belong to one VM only.",
            address.ToString())
    {
        Vms = vms;
        RecommendedAction = $"Remove-GalliumVmPciDevice -VmName '{vms[0].Replace("'", "''")}' -Address {address}";
    }

    public IReadOnlyList<string> Vms { get; }
}

/// <summary>Remove was asked for a device the VM's definition does not hold.</summary>
public sealed class PciDeviceNotAssignedException(PciAddress address, string vmName)
    : GalliumException("PciDeviceNotAssigned", ErrorKind.ObjectNotFound,
        $"VM '{vmName}' does not hold {address}: nothing to remove.", address.ToString());

/// <summary>A libvirt step of Add/Remove/Repair failed; what had been done was undone.</summary>
public sealed class VmDeviceChangeFailedException(string vmName, string step, GalliumException cause, bool rolledBack, IReadOnlyList<string> leftovers)
    : GalliumException(rolledBack ? "VmDeviceChangeFailed" : "VmDeviceRollbackFailed", cause.Kind,
        $"Changing VM '{vmName}' failed at: {step}: {cause.Message} " +
        (rolledBack ? "Every earlier step was undone; the definition is as it was."
                    : "Undoing failed too; still changed: " + string.Join("; ", leftovers)), vmName, cause)
{
    public string Step { get; } = step;
    public bool RolledBack { get; } = rolledBack;
    public IReadOnlyList<string> Leftovers { get; } = leftovers;
}

/// <summary>Another tool kept changing the VM's definition while Gallium waited to define its MMIO fix. libvirt has no
/// compare-and-swap define (REFERENCE §8.3): defining then would replace that tool's edits, so Gallium does not.</summary>
public sealed class VmDefinitionBusyException : GalliumException
{
    public VmDefinitionBusyException(string vmName, TimeSpan waited)
        : base("VmDefinitionBusy", ErrorKind.ResourceBusy,
            $"The definition of VM '{vmName}' kept changing for {waited.TotalSeconds:0.#} s (another tool is editing it), so Gallium did not " +
            "redefine it: a define replaces the whole definition and would lose that tool's edits. Nothing was changed.", vmName)
    {
        VmName = vmName;
        RecommendedAction = "Run the command again once the other tool has finished editing the VM.";
    }

    public string VmName { get; }
}

/// <summary>A stop request (Ctrl+C, a pipeline stop, a stream set to Stop) reached Add/Remove/Repair part-way; the VM's
/// edit (hostdevs and MMIO fix together) was rolled back, or, when the stop came after the last step, finished.</summary>
public sealed class VmChangeInterruptedException(string vmName, string action, Exception cause, bool rolledBack, IReadOnlyList<string> leftovers)
    : ChangeInterruptedException("VmChangeInterrupted",
        rolledBack
            ? $"{action} on VM '{vmName}' was stopped; every step already made was undone, so its definition is as it was."
            : leftovers.Count == 0
                ? $"{action} on VM '{vmName}' was stopped after its last step: the change is complete."
                : $"{action} on VM '{vmName}' was stopped, and undoing failed; still changed: {string.Join("; ", leftovers)}",
        vmName, cause, rolledBack)
{
    public IReadOnlyList<string> Leftovers { get; } = leftovers;
}
