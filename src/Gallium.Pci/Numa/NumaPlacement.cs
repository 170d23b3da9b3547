namespace Gallium.Pci.Numa;

/// <summary>Says whether a device sits on the NUMA node its VM runs on: DMA and interrupts that cross nodes cost
/// bandwidth and latency (kubevirt#13926, OpenNebula#7408; Nova's numa_policy). A warning when the device's node is not among
/// the VM's pinned nodes; information when the VM is not pinned at all on a host with several nodes.</summary>
public static class NumaPlacement
{
    /// <summary>The caveat for one function of <paramref name="vmName"/>; null when placement is fine or cannot be judged (the
    /// device's node is unknown, the host has one node, numad places the VM).</summary>
    public static PassthroughCaveat? Check(string vmName, VmNumaPlacement vm, PciDevice device, NumaTopology host)
    {
        ArgumentNullException.ThrowIfNull(vm);
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(host);
        if (device.NumaNode is not int node || !host.IsMultiNode) return null;
        if (vm.IsPinned)
        {
            if (vm.Nodes.Contains(node)) return null;
            string nodes = string.Join(",", vm.Nodes);
            return new NumaMismatchCaveat
            {
                Address = device.Address, VmName = vmName, DeviceNode = node, VmNodes = vm.Nodes,
                Reason = $"It is on NUMA node {node}, but VM '{vmName}' is pinned to node{(vm.Nodes.Count == 1 ? "" : "s")} " +
                         $"{(vm.Nodes.Count == 0 ? "(none the host has)" : nodes)} (<vcpupin>/<numatune>): its DMA and interrupts cross " +
                         "the interconnect, costing bandwidth and latency.",
                Remedy = $"Pin the VM's vCPUs to CPUs of node {node} and set <numatune><memory nodeset='{node}'/></numatune>, or pass " +
                         $"through a device on node{(vm.Nodes.Count == 1 ? "" : "s")} {nodes}.",
            };
        }
        if (vm.IsAutomatic) return null;
        return new NumaUnpinnedCaveat
        {
            Address = device.Address, VmName = vmName, DeviceNode = node, HostNodes = host.Nodes,
            Reason = $"It is on NUMA node {node} of {host.Nodes.Count}, and VM '{vmName}' is not pinned: the scheduler may run it on " +
                     "another node, far from the device.",
            Remedy = $"For steady performance pin the VM's vCPUs to CPUs of node {node} (<cputune><vcpupin>) and its memory to it " +
                     $"(<numatune><memory nodeset='{node}'/>).",
        };
    }
}
