namespace Gallium.Pci.Libvirt;

/// <summary>Where the core learns which VMs reference which host PCI functions (DESIGN.md: "assigned" means a
/// <c>&lt;hostdev&gt;</c> in some domain's persistent XML). Disable refuses while any VM, running or stopped, holds a
/// member of the group.</summary>
public interface IAssignmentSource
{
    IReadOnlyList<VmPciAssignment> GetAssignments();
}

/// <summary>Assignments read from libvirt: one domain listing per call, no cache (libvirt is the truth).</summary>
public sealed class LibvirtAssignmentSource(ILibvirt libvirt) : IAssignmentSource
{
    public IReadOnlyList<VmPciAssignment> GetAssignments() => AssignmentIndex.FromDomains(libvirt.ListDomains()).All;
}

/// <summary>Assignments of one listing, looked up by host function or by VM.</summary>
public sealed class AssignmentIndex
{
    private readonly Dictionary<PciAddress, List<VmPciAssignment>> _byAddress = new();
    private readonly Dictionary<string, List<VmPciAssignment>> _byVm = new(StringComparer.Ordinal);

    public AssignmentIndex(IEnumerable<VmPciAssignment> assignments)
    {
        All = assignments.ToList();
        foreach (var a in All)
        {
            Add(_byAddress, a.Address, a);
            Add(_byVm, a.VmName, a);
        }
    }

    /// <summary>Indexes the PCI host devices of every domain of one <see cref="ILibvirt.ListDomains"/> pass.</summary>
    public static AssignmentIndex FromDomains(IEnumerable<LibvirtDomain> domains) =>
        new(domains.SelectMany(DomainXml.ReadAssignments));

    public static AssignmentIndex From(IAssignmentSource source) => new(source.GetAssignments());

    public IReadOnlyList<VmPciAssignment> All { get; }

    /// <summary>Every VM definition that references this host function (a device may be in several stopped VMs).</summary>
    public IReadOnlyList<VmPciAssignment> ForAddress(PciAddress address) =>
        _byAddress.TryGetValue(address, out var list) ? list : [];

    /// <summary>The host functions one VM references (VM names are case-sensitive in libvirt).</summary>
    public IReadOnlyList<VmPciAssignment> ForVm(string vmName) =>
        _byVm.TryGetValue(vmName, out var list) ? list : [];

    /// <summary>The assignments that reference any of these functions (e.g. the members of an IOMMU group).</summary>
    public IReadOnlyList<VmPciAssignment> ForAnyOf(IEnumerable<PciAddress> addresses) =>
        addresses.Distinct().SelectMany(ForAddress).ToList();

    public bool IsAssigned(PciAddress address) => _byAddress.ContainsKey(address);

    /// <summary>Names of the VMs that reference this function, sorted, each once.</summary>
    public IReadOnlyList<string> VmNamesFor(PciAddress address) =>
        ForAddress(address).Select(a => a.VmName).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();

    private static void Add<TKey>(Dictionary<TKey, List<VmPciAssignment>> map, TKey key, VmPciAssignment a) where TKey : notnull
    {
        if (!map.TryGetValue(key, out var list)) map[key] = list = [];
        list.Add(a);
    }
}
