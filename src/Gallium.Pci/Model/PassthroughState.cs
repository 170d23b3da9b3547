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
