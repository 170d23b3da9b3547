namespace Gallium.Pci.Passthrough;

/// <summary>Which VMs reference host PCI devices: the second truth (libvirt's persistent domain definitions, DESIGN.md
/// "The one idea"). Disable asks it before returning a group to host drivers.</summary>
public interface IAssignmentLookup
{
    /// <summary>Names of the VMs whose definition holds any of <paramref name="addresses"/> as a hostdev; empty when none.</summary>
    IReadOnlyList<string> VmsReferencing(IReadOnlyCollection<PciAddress> addresses);
}
