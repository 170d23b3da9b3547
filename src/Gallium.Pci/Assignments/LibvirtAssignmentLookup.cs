using Gallium.Pci.Libvirt;
using Gallium.Pci.Passthrough;

namespace Gallium.Pci.Assignments;

/// <summary>Disable's assignment source: libvirt's VM definitions, running or stopped. Asked afresh on every call (one
/// ListAllDomains pass) because the runner checks again right before it acts.</summary>
public sealed class LibvirtAssignmentLookup(Func<ILibvirt> open) : IAssignmentLookup
{
    public IReadOnlyList<string> VmsReferencing(IReadOnlyCollection<PciAddress> addresses)
    {
        using var libvirt = open();
        return AssignmentIndex.FromDomains(libvirt.ListDomains()).ForAnyOf(addresses)
            .Select(a => a.VmName).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
    }
}
