namespace Gallium.Pci.Testing.Internal;

/// <summary>IOMMU group assignment after the kernel's pci_device_group() (drivers/iommu/iommu.c), simplified to the
/// rules REFERENCE §4.5 and §1 rely on: a device below a bridge path without ACS joins its upstream bridge's group (so a
/// PCIe-to-PCI bridge's subtree shares the bridge's group, and a root port without ACS shares with its subtree);
/// functions of one slot that are not ACS-isolated share a group; everything else gets a new group.</summary>
internal static class Grouping
{
    /// <summary>Kernel device_add order: every device of a bus, then the buses below its bridges, depth first
    /// (pci_scan_child_bus). Groups are numbered in this order.</summary>
    public static List<SimDevice> ScanOrder(IReadOnlyCollection<SimDevice> devices)
    {
        var byBus = devices.GroupBy(d => (d.Address.Domain, d.Address.Bus)).ToDictionary(g => g.Key, g => g.OrderBy(d => d.Address).ToList());
        var order = new List<SimDevice>(devices.Count);
        var seenBuses = new HashSet<(uint, byte)>();
        void Visit(uint domain, int bus)
        {
            if (bus < 0 || bus > 255 || !seenBuses.Add((domain, (byte)bus))) return;
            if (!byBus.TryGetValue((domain, (byte)bus), out var list)) return;
            order.AddRange(list);
            foreach (var bridge in list.Where(d => d.IsBridge)) Visit(domain, bridge.SecondaryBus);
        }
        foreach (var domain in devices.Select(d => d.Address.Domain).Distinct().Order()) Visit(domain, 0);
        // Anything not reachable from a root bus (a misbuilt topology) still gets listed, in address order.
        order.AddRange(devices.Except(order).OrderBy(d => d.Address));
        return order;
    }

    /// <summary>True when every bridge from <paramref name="bridge"/> up to the root bus isolates (pci_acs_path_enabled).</summary>
    public static bool PathIsolated(SimDevice? bridge)
    {
        for (var b = bridge; b is not null; b = b.Parent)
        {
            if (!b.AcsIsolated) return false;
        }
        return true;
    }

    /// <summary>The group for a device being added, given the groups already assigned.</summary>
    public static int Assign(SimDevice d, Func<SimDevice, int?> groupOf, IEnumerable<SimDevice> sameSlot,
        IEnumerable<SimDevice> sharedWith, Func<int> allocate)
    {
        // Platform quirk (e.g. a chipset without ACS on its integrated functions): forced to share.
        foreach (var other in sharedWith)
        {
            if (groupOf(other) is int shared) return shared;
        }
        if (d.Parent is not null && !PathIsolated(d.Parent) && groupOf(d.Parent) is int upstream) return upstream;
        if (!d.AcsIsolated)
        {
            foreach (var f in sameSlot)
            {
                if (!f.AcsIsolated && groupOf(f) is int alias) return alias;
            }
        }
        return allocate();
    }
}
