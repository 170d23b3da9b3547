using System.Globalization;
using System.Xml.Linq;
using Gallium.Pci.Libvirt;

namespace Gallium.Pci.Numa;

/// <summary>Where a VM's vCPUs and memory may run, from its domain XML ([LV] formatdomain.rst "CPU Allocation", "CPU Tuning",
/// "NUMA Node Tuning"): <c>&lt;vcpu cpuset&gt;</c>, <c>&lt;cputune&gt;&lt;vcpupin cpuset&gt;</c> (host CPUs, mapped to nodes)
/// and <c>&lt;numatune&gt;&lt;memory nodeset&gt;</c> / <c>&lt;memnode nodeset&gt;</c>.</summary>
/// <param name="Nodes">The host nodes the pinning and numatune name, ascending; empty when the VM is unpinned.</param>
/// <param name="IsPinned">The definition restricts vCPUs or memory to some host CPUs or nodes.</param>
/// <param name="IsAutomatic">placement='auto': numad picks the nodes when the VM starts, so none are known beforehand.</param>
public sealed record VmNumaPlacement(IReadOnlyList<int> Nodes, bool IsPinned, bool IsAutomatic)
{
    public static VmNumaPlacement Read(string domainXml, NumaTopology host)
    {
        ArgumentNullException.ThrowIfNull(host);
        var root = DomainXml.Parse(domainXml).Root!;
        var nodes = new SortedSet<int>();
        bool pinned = false;

        var vcpu = root.Element("vcpu");
        bool automatic = (string?)vcpu?.Attribute("placement") == "auto";
        var cpusets = root.Element("cputune")?.Elements("vcpupin").Select(p => (string?)p.Attribute("cpuset")).OfType<string>().ToList() ?? [];
        // <vcpu cpuset> applies to every vCPU without its own <vcpupin>; a vcpupin for each vCPU overrides it entirely.
        int vcpus = int.TryParse(vcpu?.Value.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int n) ? n : 1;
        bool someFloat = cpusets.Count > 0 && cpusets.Count < vcpus;
        if ((string?)vcpu?.Attribute("cpuset") is { } all && cpusets.Count < vcpus) { cpusets.Add(all); someFloat = false; }
        foreach (string cpuset in cpusets)
        {
            pinned = true;
            foreach (int cpu in NumaTopology.ParseList(cpuset))
                if (host.NodeOfCpu(cpu) is int node) nodes.Add(node);
        }
        // vCPUs without a vcpupin and without <vcpu cpuset> may run on any host CPU.
        if (someFloat) nodes.UnionWith(host.Nodes);

        var numatune = root.Element("numatune");
        var memory = numatune?.Element("memory");
        if ((string?)memory?.Attribute("placement") == "auto") automatic = true;
        foreach (var e in new[] { memory }.Concat(numatune?.Elements("memnode") ?? []))
        {
            if ((string?)e?.Attribute("nodeset") is not { } nodeset) continue;
            pinned = true;
            nodes.UnionWith(NumaTopology.ParseList(nodeset));
        }
        return new VmNumaPlacement(nodes.ToArray(), pinned, automatic && !pinned);
    }
}
