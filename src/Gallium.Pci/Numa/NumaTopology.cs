using System.Globalization;
using Gallium.Pci.Host;

namespace Gallium.Pci.Numa;

/// <summary>The host's NUMA nodes and their CPUs, from /sys/devices/system/node (online, nodeN/cpulist; [K]
/// Documentation/ABI/stable/sysfs-devices-node). A host without that directory (a kernel without CONFIG_NUMA) has one node.</summary>
public sealed class NumaTopology
{
    private const string NodeDir = "devices/system/node";

    private readonly Dictionary<int, int> _nodeOfCpu = [];

    private NumaTopology(IReadOnlyDictionary<int, IReadOnlyList<int>> cpusByNode)
    {
        CpusByNode = cpusByNode;
        Nodes = cpusByNode.Keys.Order().ToArray();
        foreach (var (node, cpus) in cpusByNode)
            foreach (int cpu in cpus) _nodeOfCpu.TryAdd(cpu, node);
    }

    /// <summary>Online nodes, ascending.</summary>
    public IReadOnlyList<int> Nodes { get; }
    public IReadOnlyDictionary<int, IReadOnlyList<int>> CpusByNode { get; }
    public bool IsMultiNode => Nodes.Count > 1;

    /// <summary>The node a host CPU belongs to; null for a CPU the host does not list.</summary>
    public int? NodeOfCpu(int cpu) => _nodeOfCpu.TryGetValue(cpu, out int n) ? n : null;

    public static NumaTopology FromNodes(IReadOnlyDictionary<int, IReadOnlyList<int>> cpusByNode) =>
        new(cpusByNode ?? throw new ArgumentNullException(nameof(cpusByNode)));

    public static NumaTopology Read(ISysfs sysfs)
    {
        ArgumentNullException.ThrowIfNull(sysfs);
        var online = ParseList(sysfs.ReadText($"{NodeDir}/online"));
        var nodes = new Dictionary<int, IReadOnlyList<int>>();
        foreach (int node in online)
            nodes[node] = ParseList(sysfs.ReadText(string.Create(CultureInfo.InvariantCulture, $"{NodeDir}/node{node}/cpulist")));
        return new NumaTopology(nodes.Count > 0 ? nodes : new Dictionary<int, IReadOnlyList<int>> { [0] = [] });
    }

    /// <summary>A CPU or node list: the kernel's cpulist format ("0-3,8-11", [K] lib/bitmap.c bitmap_parselist) and libvirt's
    /// cpuset/nodeset syntax, which adds exclusions ("0-7,^3"). Anything unreadable yields an empty list.</summary>
    public static IReadOnlyList<int> ParseList(string? text)
    {
        var included = new SortedSet<int>();
        var excluded = new HashSet<int>();
        if (string.IsNullOrWhiteSpace(text)) return [];
        foreach (string raw in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            bool exclude = raw.StartsWith('^');
            string part = exclude ? raw[1..] : raw;
            int dash = part.IndexOf('-');
            if (!int.TryParse(dash < 0 ? part : part[..dash], NumberStyles.None, CultureInfo.InvariantCulture, out int first)) return [];
            int last = first;
            if (dash >= 0 && !int.TryParse(part[(dash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out last)) return [];
            if (last < first || last - first > 65536) return [];
            for (int i = first; i <= last; i++) (exclude ? (ICollection<int>)excluded : included).Add(i);
        }
        return included.Where(i => !excluded.Contains(i)).ToArray();
    }
}
