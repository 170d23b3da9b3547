namespace Gallium.Pci;

/// <summary>Where a device stands, read from the kernel, the module's persisted records and libvirt (DESIGN.md "The one
/// idea"). Only <see cref="Enabled"/> and <see cref="Assigned"/> are passthrough states an admin can rely on across a
/// reboot; <see cref="NotPersisted"/>, <see cref="Drifted"/> and <see cref="Interrupted"/> are the drift the module
/// shows and repairs (<see cref="PciDevice.Problem"/> says what is wrong and which command repairs it).</summary>
public enum PassthroughState
{
    /// <summary>Bound to a host driver other than vfio-pci, with no vfio-pci record or override: the host has it.</summary>
    Host,
    /// <summary>On vfio-pci with driver_override set to vfio-pci and its record and udev rule in place: it stays on vfio-pci
    /// across reboots, and can be added to a VM.</summary>
    Enabled,
    /// <summary>No driver bound, and nothing recorded for it.</summary>
    Unbound,
    /// <summary>Enabled, and referenced by at least one VM definition (AssignedTo names the VMs).</summary>
    Assigned,
    /// <summary>On vfio-pci, but its record or udev rule is missing (bound by hand, by another tool, or the files were
    /// removed): it returns to its host driver at the next reboot. Enable makes it persistent; Disable returns it now.</summary>
    NotPersisted,
    /// <summary>Recorded for vfio-pci (or its driver_override names vfio-pci) but bound to another driver or to none, or on
    /// vfio-pci without the override: the host won a race at boot, someone rebound it by hand, or a record came back from a
    /// backup. Enable repairs it; Disable forgets the record.</summary>
    Drifted,
    /// <summary>Part of an Enable or Disable that was interrupted (the process was killed, the power failed) and not yet
    /// repaired: the next Enable or Disable on this host first returns its group to how it was before that change.</summary>
    Interrupted,
}

/// <summary>Which tool brings a device back to vfio-pci at boot (the about topic's persistence section says who owns what).</summary>
public enum BindingPersistence
{
    /// <summary>No record: the device gets whatever driver the kernel picks at boot.</summary>
    None,
    /// <summary>Gallium's record, udev rule and early boot stages (Enable-GalliumPciPassthrough).</summary>
    Gallium,
    /// <summary>driverctl's record naming vfio-pci (driverctl set-override); Disable-GalliumPciPassthrough removes it.</summary>
    Driverctl,
}
