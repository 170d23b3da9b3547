using Gallium.Pci.Host;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Numa;

namespace Gallium.Pci.Assignments;

/// <summary>What Add-GalliumVmPciDevice warns about before it adds a group to a VM: every caveat of the group (no reset, bus
/// reset only, firmware framebuffer, …, the host's ACS override and unsafe interrupts) and, per function, NUMA placement
/// against the VM's pinning. Reads only; nothing changes.</summary>
public sealed class VmDeviceCaveats(ILibvirt libvirt, DeviceInventory inventory, HostContext host)
{
    private readonly Lazy<NumaTopology> _numa = new(() => NumaTopology.Read(host.Sysfs));

    /// <summary>The caveats of adding <paramref name="functions"/> (one IOMMU group's endpoints) to <paramref name="vmName"/>.</summary>
    public IReadOnlyList<PassthroughCaveat> ForAdd(string vmName, IReadOnlyCollection<PciAddress> functions)
    {
        ArgumentNullException.ThrowIfNull(functions);
        var devices = functions.Distinct().Order().Select(inventory.Read).OfType<PciDevice>().ToArray();
        var caveats = new List<PassthroughCaveat>();
        foreach (int id in devices.Select(d => d.IommuGroup).OfType<int>().Distinct())
            if (inventory.ReadGroup(id, devices) is { } group) caveats.AddRange(group.Caveats);
        caveats.AddRange(Numa(libvirt.GetDomain(vmName), devices));
        return caveats;
    }

    private IEnumerable<PassthroughCaveat> Numa(LibvirtDomain domain, IEnumerable<PciDevice> devices)
    {
        var vm = VmNumaPlacement.Read(domain.Xml, _numa.Value);
        foreach (var d in devices)
            if (NumaPlacement.Check(domain.Name, vm, d, _numa.Value) is { } caveat) yield return caveat;
    }

    /// <summary>Each assignment with its device's node and its VM's nodes (Get-GalliumVmPciDevice shows them side by side).
    /// A definition whose placement cannot be read keeps its assignments as they are.</summary>
    public static IReadOnlyList<VmPciAssignment> WithNumaNodes(IReadOnlyList<VmPciAssignment> assignments, IReadOnlyList<LibvirtDomain> domains,
        HostContext host)
    {
        ArgumentNullException.ThrowIfNull(assignments);
        ArgumentNullException.ThrowIfNull(domains);
        ArgumentNullException.ThrowIfNull(host);
        if (assignments.Count == 0) return assignments;
        var numa = NumaTopology.Read(host.Sysfs);
        var byVm = new Dictionary<Guid, IReadOnlyList<int>>();
        foreach (var d in domains)
        {
            try { byVm[d.Uuid] = VmNumaPlacement.Read(d.Xml, numa).Nodes; }
            catch (GalliumException) { /* not a readable domain definition: its nodes stay unknown */ }
        }
        var nodes = new Dictionary<PciAddress, int?>();
        int? NodeOf(PciAddress a)
        {
            if (!nodes.TryGetValue(a, out var n)) nodes[a] = n = SysfsFormat.ParseNumaNode(host.Sysfs.ReadText($"bus/pci/devices/{a}/numa_node"));
            return n;
        }
        return assignments.Select(a => a with
        {
            DeviceNumaNode = NodeOf(a.Address),
            VmNumaNodes = byVm.GetValueOrDefault(a.VmUuid) ?? [],
        }).ToArray();
    }
}
