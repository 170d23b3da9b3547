namespace Gallium.Pci;

/// <summary>Where a device stands, read from the kernel and libvirt (DESIGN.md "The one idea").</summary>
public enum PassthroughState
{
    /// <summary>Bound to a host driver other than vfio-pci.</summary>
    Host,
    /// <summary>Bound to vfio-pci: available to be added to a VM.</summary>
    Enabled,
    /// <summary>No driver bound.</summary>
    Unbound,
    /// <summary>Referenced by at least one VM definition (normally also on vfio-pci; AssignedTo names the VMs).</summary>
    Assigned,
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
